"""The ``webhook`` notifier: one JSON POST per notification.

The body is the notification itself plus ``notifier`` (its name): see the README's
"Webhook payload". Any 2xx accepts it. ``429`` and 5xx are temporary (``Retry-After``
honoured), as is a connection that fails; any other answer is permanent (retried at the
slowest pace, see :mod:`sentinel.notifiers.delivery`). The URL, which may carry a secret,
and header values read from the environment are redacted from every error.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from sentinel import __version__
from sentinel.errors import SentinelError, TemporaryError
from sentinel.policy.model import WebhookNotifier

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
REDACTED = "[redacted]"


class WebhookSender:
    def __init__(
        self, name: str, config: WebhookNotifier, *, environ: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.config = config
        self.environ = environ if environ is not None else os.environ

    def _url(self) -> str:
        if self.config.url is not None:
            return self.config.url
        assert self.config.url_env is not None
        url = self.environ.get(self.config.url_env, "").strip()
        if not url:
            raise SentinelError(
                f"notifier {self.name}: environment variable {self.config.url_env} is not set"
            )
        return url

    def _headers(self) -> tuple[dict[str, str], list[str]]:
        secrets: list[str] = []
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"sentinel/{__version__}",
        }
        for key, value in self.config.headers.items():

            def lookup(m: re.Match[str]) -> str:
                found = self.environ.get(m.group(1), "")
                secrets.append(found)
                return found

            headers[key] = _ENV_REF.sub(lookup, value)
        return headers, [s for s in secrets if s]

    def send(self, notification: Mapping[str, Any]) -> None:
        url = self._url()
        headers, secrets = self._headers()
        if self.config.url_env is not None:
            secrets.append(url)
        body = json.dumps({"notifier": self.name, **notification}, default=str).encode()
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")

        def clean(text: str) -> str:
            for s in secrets:
                text = text.replace(s, REDACTED)
            return text

        where = "the webhook" if self.config.url_env is not None else url
        try:
            with urllib.request.urlopen(request, timeout=float(self.config.timeout)) as response:
                response.read()
        except urllib.error.HTTPError as e:
            status = e.code
            detail = e.read()[:200].decode(errors="replace")
            retry_after = e.headers.get("Retry-After") if e.headers else None
            e.close()
            what = clean(f"notifier {self.name}: {where} answered HTTP {status}: {detail}")
            if status == 429 or status >= 500:
                try:
                    delay = float(retry_after) if retry_after is not None else 5.0
                except ValueError:
                    delay = 5.0
                raise TemporaryError(what, delay=delay) from None
            raise SentinelError(what) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise TemporaryError(
                clean(f"notifier {self.name}: cannot reach {where}: {reason}"), delay=5.0
            ) from None
