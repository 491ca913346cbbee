"""The ``webhook`` notifier: one JSON POST per notification.

The body is the notification itself plus ``notifier`` (its name): see the README's
"Webhook payload". Any 2xx accepts it. ``429`` and 5xx are temporary (``Retry-After``
honoured), as is a connection that fails; any other answer is permanent (retried at the
slowest pace, see :mod:`sentinel.notifiers.delivery`).

Secrets: the URL (from ``url_env``: all of it; from ``url``: its userinfo and query) and the
``${VAR}`` values of the headers are known to :mod:`sentinel.redact` from the moment the
sender is built, and scrubbed from every error; a URL is shown as ``scheme://host/path``.
Only http and https are spoken (``file://`` from a variable is refused), a user and password
in the URL go as HTTP basic authentication (never in the request line), and redirects are
not followed: a 3xx is a failure, so the headers never travel to another address. An unset
``${VAR}`` or ``url_env``, or a value with a line break inside, is an error naming the
notifier and the variable, never the value.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from sentinel import __version__, redact
from sentinel.errors import SentinelError, TemporaryError
from sentinel.policy.model import WebhookNotifier

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
REDACTED = redact.REDACTED


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx is an answer, not a detour: urllib would resend the headers (a secret among
    them) to the ``Location``, as a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def header_variables(config: WebhookNotifier) -> list[str]:
    """The environment variables the headers read (``${NAME}``), in order."""
    return [m.group(1) for value in config.headers.values() for m in _ENV_REF.finditer(value)]


def _clean(value: str) -> bool:
    """No line break, space or control character inside (surrounding ones are stripped)."""
    return all(c.isprintable() and not c.isspace() for c in value)


class WebhookSender:
    def __init__(
        self, name: str, config: WebhookNotifier, *, environ: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.config = config
        self.environ = environ if environ is not None else os.environ
        secret_vars = header_variables(config)
        if config.url_env is not None:
            secret_vars.append(config.url_env)
        redact.remember_env(secret_vars, self.environ)
        if config.url is not None and redact.url(config.url) != config.url:
            redact.remember(config.url)  # its userinfo or query

    @property
    def _where(self) -> str:
        """The webhook as errors show it: never the URL from a variable, the configured one
        without userinfo nor query."""
        if self.config.url_env is not None:
            return f"the webhook (${self.config.url_env})"
        assert self.config.url is not None
        return redact.url(self.config.url)

    def _url(self) -> tuple[str, str | None]:
        """The URL to POST to, and the basic authorization its userinfo gives (or None)."""
        if self.config.url is not None:
            raw, source = self.config.url, "url"
        else:
            assert self.config.url_env is not None
            raw = self.environ.get(self.config.url_env, "")
            source = f"environment variable {self.config.url_env}"
            redact.remember(raw)
            if not raw.strip():
                raise SentinelError(f"notifier {self.name}: {source} is not set (or empty)")
        url = raw.strip()
        bad = f"notifier {self.name}: {source} is not an http:// or https:// URL"
        if not _clean(url):
            raise SentinelError(f"{bad} (it has a space, line break or control character)")
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 (raises ValueError on a bad port)
        except ValueError:
            raise SentinelError(bad) from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise SentinelError(bad)
        if "@" not in parts.netloc:
            return url, None
        userinfo, _, hostport = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        redact.remember(auth.split()[1])
        return urllib.parse.urlunsplit(parts._replace(netloc=hostport)), auth

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"sentinel/{__version__}",
        }
        for key, value in self.config.headers.items():

            def lookup(m: re.Match[str], key: str = key) -> str:
                var = m.group(1)
                found = self.environ.get(var, "")
                redact.remember(found)
                found = found.strip()
                if not found:
                    raise SentinelError(
                        f"notifier {self.name}: header {key}: environment variable {var} "
                        "is not set (or empty)"
                    )
                if not all(c.isprintable() for c in found):
                    raise SentinelError(
                        f"notifier {self.name}: header {key}: environment variable {var} "
                        "has a line break or control character inside"
                    )
                return found

            headers[key] = _ENV_REF.sub(lookup, value)
        return headers

    def send(self, notification: Mapping[str, Any]) -> None:
        url, auth = self._url()
        headers = self._headers()
        if auth is not None and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = auth
        body = json.dumps({"notifier": self.name, **notification}, default=str).encode()
        where = self._where
        try:
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with _OPENER.open(request, timeout=float(self.config.timeout)) as response:
                response.read()
        except urllib.error.HTTPError as e:
            raise self._answered(e, url, where) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e
            raise TemporaryError(
                redact.scrub(f"notifier {self.name}: cannot reach {where}: {reason}"), delay=5.0
            ) from None
        except ValueError as e:  # a request urllib cannot make
            raise SentinelError(
                redact.scrub(f"notifier {self.name}: cannot post to {where}: {e}")
            ) from None

    def _answered(self, e: urllib.error.HTTPError, url: str, where: str) -> SentinelError:
        status = e.code
        try:
            detail = e.read()[:200].decode(errors="replace")
        except (OSError, http.client.HTTPException):
            detail = ""
        headers = e.headers
        retry_after = headers.get("Retry-After") if headers else None
        location = headers.get("Location") if headers else None
        e.close()
        if 300 <= status < 400:
            to = f" to {redact.url(urllib.parse.urljoin(url, location))}" if location else ""
            return SentinelError(
                redact.scrub(
                    f"notifier {self.name}: {where} answered HTTP {status}, a redirect{to}: "
                    "not followed (it would carry the headers elsewhere); give the final URL"
                )
            )
        what = redact.scrub(f"notifier {self.name}: {where} answered HTTP {status}: {detail}")
        if status == 429 or status >= 500:
            try:
                delay = float(retry_after) if retry_after is not None else 5.0
            except ValueError:
                delay = 5.0
            if not 0 <= delay <= 3600:  # nan, inf, negative, absurd
                delay = 5.0
            return TemporaryError(what, delay=delay)
        return SentinelError(what)
