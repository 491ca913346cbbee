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
message this module raises (:mod:`sentinel.redact`), and slack_sdk's own logger, which
writes request headers at debug level, is silenced. slack_sdk's built-in retries are off:
the outbox retries, with backoff, across restarts. Redirects are not followed: urllib would
send the bearer token on to wherever a ``Location`` points (turning the POST into a GET);
a 3xx is a :class:`SlackRejected`.
"""

from __future__ import annotations

import http.client
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError, SlackRequestError
from slack_sdk.web import WebClient
from slack_sdk.webhook import WebhookClient
from slack_sdk.webhook.webhook_response import WebhookResponse

from sentinel import redact as _redact
from sentinel.errors import SentinelError, TemporaryError

RATE_LIMIT_DELAY = 30.0
"""Seconds to wait after a 429 that carries no Retry-After."""
SERVER_ERROR_DELAY = 5.0
_TEMPORARY = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
REDACTED = _redact.REDACTED

# slack_sdk logs every request with its headers (the bearer token) at debug level: its
# clients get this logger, which is a dead end (no handlers, no parent, nothing enabled).
_QUIET = logging.Logger("sentinel.clients.slack.quiet", level=logging.CRITICAL + 1)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx is an answer (an error), not a detour: urllib's default handler would resend
    the request's headers, the bearer token among them, to the ``Location``."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _open(request: urllib.request.Request, *, ssl: Any, proxy: Any, timeout: float) -> Any:
    """slack_sdk's own request, through an opener that follows no redirect."""
    handlers: list[urllib.request.BaseHandler] = [
        _NoRedirect(),
        urllib.request.HTTPSHandler(context=ssl),
    ]
    if isinstance(proxy, str):
        handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    return urllib.request.build_opener(*handlers).open(request, timeout=timeout)


def _http_only(url: str) -> None:
    if not url.lower().startswith(("http://", "https://")):
        raise SlackRequestError("not an http:// or https:// URL")


class _WebClient(WebClient):
    """``WebClient`` whose requests follow no redirect (slack_sdk's hook for the transport
    is this internal method; ``tests/test_secrets.py`` fails should it change)."""

    def _perform_urllib_http_request_internal(
        self, url: str, req: urllib.request.Request
    ) -> dict[str, Any]:
        _http_only(url)
        with _open(req, ssl=self.ssl, proxy=self.proxy, timeout=self.timeout) as resp:
            charset = resp.headers.get_content_charset() or "utf-8"
            body: str = resp.read().decode(charset, "replace")
            return {"status": resp.code, "headers": resp.headers, "body": body}


class _WebhookClient(WebhookClient):
    """``WebhookClient`` whose requests follow no redirect (as :class:`_WebClient`)."""

    def _perform_http_request_internal(
        self, url: str, req: urllib.request.Request
    ) -> WebhookResponse:
        _http_only(url)
        with _open(req, ssl=self.ssl, proxy=self.proxy, timeout=self.timeout) as resp:
            charset = resp.headers.get_content_charset() or "utf-8"
            body = resp.read().decode(charset, "replace")
            return WebhookResponse(
                url=url, status_code=resp.status, body=body, headers=resp.headers
            )


class SlackRejected(SentinelError):
    """Slack refused the request for good (bad token, unknown channel, invalid blocks)."""

    def __init__(self, message: str, *, error: str) -> None:
        super().__init__(message)
        self.error = error


def redact(text: str, *secrets: str | None) -> str:
    """``text`` without the given secrets, nor any secret the process knows, nor anything
    shaped like a Slack token or a webhook URL (:func:`sentinel.redact.scrub`)."""
    return _redact.scrub(text, *secrets)


def problem(kind: str, value: str) -> str | None:
    """Why ``value`` cannot be a Slack ``token`` or ``webhook_url`` (never quoting it), or
    None when it can."""
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        return "is empty or has spaces, line breaks or control characters inside"
    if kind == "webhook_url":
        shown = _redact.url(value)
        if not value.lower().startswith(("http://", "https://")) or shown == REDACTED:
            return "is not an http:// or https:// URL"
        if "@" in value.split("://", 1)[1].split("/", 1)[0]:
            return "has a user or password in it (Slack's webhook URLs have none)"
    return None


_TRANSPORT = (
    SlackClientError,
    urllib.error.URLError,
    OSError,
    ValueError,  # urllib: a header value with a line break, a URL it cannot parse
    http.client.HTTPException,  # a broken answer (BadStatusLine ...)
)


def _redirected(method: str, status: int) -> str:
    return (
        f"Slack {method}: HTTP {status}, a redirect: not followed (it would carry the "
        "secret elsewhere); give the final URL"
    )


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
        kind, secret = ("token", token) if token is not None else ("webhook_url", webhook_url)
        assert secret is not None
        _redact.remember(secret)
        why = problem(kind, secret)
        if why is not None:
            raise SentinelError(f"Slack {kind.replace('_', ' ')} {why}")
        self._token = token
        self._webhook_url = webhook_url
        self._web: WebClient | None = None
        self._hook: WebhookClient | None = None
        seconds = max(1, round(timeout))
        if token is not None:
            self._web = _WebClient(
                token=token,
                base_url=api_url if api_url.endswith("/") else api_url + "/",
                timeout=seconds,
                logger=_QUIET,
                retry_handlers=[],
            )
        else:
            assert webhook_url is not None
            self._hook = _WebhookClient(
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
        # parse=none, link_names off: Slack formats only what the message spells out (the
        # policy's own `mention`), never a bare @channel or URL found in outside text.
        args: dict[str, Any] = {
            "channel": channel,
            "text": text,
            "blocks": list(blocks),
            "parse": "none",
            "link_names": False,
        }
        if thread_ts is not None:
            args["thread_ts"] = thread_ts
            if reply_broadcast:
                args["reply_broadcast"] = True
        try:
            response = self._web.chat_postMessage(**args)
        except SlackApiError as e:
            raise self._api_error("chat.postMessage", e) from None
        except _TRANSPORT as e:
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
        except _TRANSPORT as e:
            raise self._transport_error("auth.test", e) from None
        return {k: response.get(k) for k in ("team", "user", "bot_id", "url")}

    def _send_webhook(self, text: str, blocks: Sequence[Mapping[str, Any]]) -> None:
        assert self._hook is not None
        try:
            response = self._hook.send_dict(
                {"text": text, "blocks": list(blocks), "parse": "none", "link_names": False}
            )
        except _TRANSPORT as e:
            raise self._transport_error("incoming webhook", e) from None
        status = response.status_code
        body = (response.body or "").strip()
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise SlackRejected(_redirected("incoming webhook", status), error=f"http_{status}")
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
        if 300 <= status < 400:
            return SlackRejected(_redirected(method, status), error=f"http_{status}")
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
        if isinstance(e, (SlackRequestError, ValueError)):  # a request that cannot be made
            return SentinelError(self._redact(f"Slack {method}: {e}"))
        reason = getattr(e, "reason", None) or e
        return TemporaryError(
            self._redact(f"Slack {method}: cannot reach Slack: {reason}"), delay=SERVER_ERROR_DELAY
        )

    def _redact(self, text: str) -> str:
        return redact(text, self._token, self._webhook_url)

    def __repr__(self) -> str:  # never the secret
        return f"SlackClient({'token' if self._web is not None else 'webhook'}={REDACTED})"
