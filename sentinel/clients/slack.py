"""The only module that talks to Slack (through ``slack_sdk``).

Two ways in: the Web API's ``chat.postMessage`` with a bot token (``WebClient``, whose
``base_url`` is the policy's ``api_url``), or an incoming webhook (``WebhookClient``). Both
hand back sentinel's own errors:

- :class:`~sentinel.errors.TemporaryError` for what may work later: ``429`` (its
  ``delay`` is the ``Retry-After``), a 5xx, Slack's ``internal_error``/``fatal_error``,
  a refused or timed-out connection;
- :class:`SlackRejected` (a :class:`~sentinel.errors.SentinelError`) for what will not
  work until the configuration changes: ``invalid_auth``, ``channel_not_found``,
  ``not_in_channel``, ``invalid_blocks`` ...

The secret (a token, or a webhook URL, which is a secret itself) is redacted from every
message this module raises, and slack_sdk's own logger, which writes request headers at
debug level, is silenced. slack_sdk's built-in retries are off: the outbox retries, with
backoff, across restarts.
"""

from __future__ import annotations

import logging
import re
import urllib.error
from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError, SlackRequestError
from slack_sdk.web import WebClient
from slack_sdk.webhook import WebhookClient

from sentinel.errors import SentinelError, TemporaryError

RATE_LIMIT_DELAY = 30.0
"""Seconds to wait after a 429 that carries no Retry-After."""
SERVER_ERROR_DELAY = 5.0
_TEMPORARY = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
_TOKEN = re.compile(r"xox[a-z]-[A-Za-z0-9-]+")
_HOOK = re.compile(r"https?://[^\s\"']*/services/[^\s\"']+")
REDACTED = "[redacted]"

# slack_sdk logs every request with its headers (the bearer token) at debug level: its
# clients get this logger, which is a dead end (no handlers, no parent, nothing enabled).
_QUIET = logging.Logger("sentinel.clients.slack.quiet", level=logging.CRITICAL + 1)


class SlackRejected(SentinelError):
    """Slack refused the request for good (bad token, unknown channel, invalid blocks)."""

    def __init__(self, message: str, *, error: str) -> None:
        super().__init__(message)
        self.error = error


def redact(text: str, *secrets: str | None) -> str:
    """``text`` without the given secrets, nor anything shaped like a Slack token or a
    webhook URL."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _HOOK.sub(REDACTED, _TOKEN.sub(REDACTED, text))


def _retry_after(headers: Mapping[str, Any] | None, default: float) -> float:
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            text = value[0] if isinstance(value, list) and value else value
            try:
                return max(0.0, float(text))
            except (TypeError, ValueError):
                return default
    return default


class SlackClient:
    """Posts messages with a bot token or to an incoming webhook; give exactly one."""

    def __init__(
        self,
        *,
        token: str | None = None,
        webhook_url: str | None = None,
        api_url: str = "https://slack.com/api/",
        timeout: float = 10.0,
    ) -> None:
        if (token is None) == (webhook_url is None):
            raise ValueError("SlackClient needs a token or a webhook URL (one of them)")
        self._token = token
        self._webhook_url = webhook_url
        self._web: WebClient | None = None
        self._hook: WebhookClient | None = None
        seconds = max(1, round(timeout))
        if token is not None:
            self._web = WebClient(
                token=token,
                base_url=api_url if api_url.endswith("/") else api_url + "/",
                timeout=seconds,
                logger=_QUIET,
                retry_handlers=[],
            )
        else:
            assert webhook_url is not None
            self._hook = WebhookClient(
                webhook_url, timeout=seconds, logger=_QUIET, retry_handlers=[]
            )

    @property
    def threads(self) -> bool:
        """Whether replies in a thread are possible (a token, not a webhook)."""
        return self._web is not None

    def post_message(
        self,
        *,
        channel: str | None,
        text: str,
        blocks: Sequence[Mapping[str, Any]],
        thread_ts: str | None = None,
        reply_broadcast: bool = False,
    ) -> str | None:
        """Post one message; its ``ts`` (the id replies thread on), None through a webhook."""
        if self._hook is not None:
            self._send_webhook(text, blocks)
            return None
        assert self._web is not None
        args: dict[str, Any] = {"channel": channel, "text": text, "blocks": list(blocks)}
        if thread_ts is not None:
            args["thread_ts"] = thread_ts
            if reply_broadcast:
                args["reply_broadcast"] = True
        try:
            response = self._web.chat_postMessage(**args)
        except SlackApiError as e:
            raise self._api_error("chat.postMessage", e) from None
        except (SlackClientError, urllib.error.URLError, OSError) as e:
            raise self._transport_error("chat.postMessage", e) from None
        ts = response.get("ts")
        return str(ts) if ts is not None else None

    def auth_test(self) -> Mapping[str, Any]:
        """Who the token belongs to (``team``, ``user``, ``bot_id``); webhooks: empty."""
        if self._web is None:
            return {}
        try:
            response = self._web.auth_test()
        except SlackApiError as e:
            raise self._api_error("auth.test", e) from None
        except (SlackClientError, urllib.error.URLError, OSError) as e:
            raise self._transport_error("auth.test", e) from None
        return {k: response.get(k) for k in ("team", "user", "bot_id", "url")}

    def _send_webhook(self, text: str, blocks: Sequence[Mapping[str, Any]]) -> None:
        assert self._hook is not None
        try:
            response = self._hook.send_dict({"text": text, "blocks": list(blocks)})
        except (SlackClientError, urllib.error.URLError, OSError) as e:
            raise self._transport_error("incoming webhook", e) from None
        status = response.status_code
        body = (response.body or "").strip()
        if 200 <= status < 300:
            return
        what = self._redact(f"Slack incoming webhook: HTTP {status}: {body[:200]}")
        if status == 429:
            delay = _retry_after(response.headers, RATE_LIMIT_DELAY)
            raise TemporaryError(f"{what} (rate limited)", delay=delay)
        if status >= 500:
            raise TemporaryError(what, delay=_retry_after(response.headers, SERVER_ERROR_DELAY))
        raise SlackRejected(what, error=body or f"http_{status}")

    def _api_error(self, method: str, e: SlackApiError) -> SentinelError:
        response = e.response
        status = int(getattr(response, "status_code", 0) or 0)
        data = getattr(response, "data", None)
        error = str(data.get("error", "")) if isinstance(data, dict) else ""
        detail = error or f"HTTP {status}"
        if isinstance(data, dict) and data.get("response_metadata"):
            messages = data["response_metadata"].get("messages") or []
            if messages:
                detail += " (" + "; ".join(str(m) for m in messages[:3]) + ")"
        what = self._redact(f"Slack {method}: {detail}"[:500])
        headers = getattr(response, "headers", None)
        if status == 429 or error == "ratelimited":
            return TemporaryError(
                f"{what} (rate limited)", delay=_retry_after(headers, RATE_LIMIT_DELAY)
            )
        if status >= 500 or error in _TEMPORARY:
            return TemporaryError(what, delay=_retry_after(headers, SERVER_ERROR_DELAY))
        return SlackRejected(what, error=error or f"http_{status}")

    def _transport_error(self, method: str, e: BaseException) -> SentinelError:
        if isinstance(e, SlackRequestError):
            return SentinelError(self._redact(f"Slack {method}: {e}"))
        reason = getattr(e, "reason", None) or e
        return TemporaryError(
            self._redact(f"Slack {method}: cannot reach Slack: {reason}"), delay=SERVER_ERROR_DELAY
        )

    def _redact(self, text: str) -> str:
        return redact(text, self._token, self._webhook_url)

    def __repr__(self) -> str:  # never the secret
        return f"SlackClient({'token' if self._web is not None else 'webhook'}={REDACTED})"
