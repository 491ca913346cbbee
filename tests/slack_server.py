"""A Slack-compatible HTTP server on 127.0.0.1, for tests: the real ``slack_sdk`` talks to it.

It speaks Slack's wire format (``{"ok": true, "ts": ...}`` / ``{"ok": false, "error":
"..."}``) for ``chat.postMessage`` and ``auth.test`` under ``/api/``, and takes incoming
webhook POSTs under ``/services/...`` (``ok`` / ``invalid_blocks`` ...). It checks what
Slack checks: the bearer token (``invalid_auth``), the channel (``channel_not_found``),
and every limit sentinel promises to respect (:func:`message_problem`: at most 50 blocks,
3000 characters per section or context text, 10 fields of 2000, 150 per header, a fallback
``text``) with Slack's errors ``invalid_blocks``, ``msg_too_long``, ``no_text``.

On demand it answers ``429`` with ``Retry-After`` or a 5xx (:meth:`SlackServer.fail_next`),
or goes away altogether and comes back on the same port (:meth:`down`, :meth:`up`).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "xoxb-0000000000-1111111111-TESTtokenTESTtokenTEST42"
CHANNEL = "C0SENTINEL"
WEBHOOK_PATH = "/services/T000/B000/WEBHOOKsecretWEBHOOKsecret"


def message_problem(body: Mapping[str, Any]) -> str | None:
    """Slack's error for a message that breaks a limit, or None when it is fine."""
    text = body.get("text")
    blocks = body.get("blocks")
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError:
            return "invalid_blocks_format"
    if not isinstance(text, str) or not text.strip():
        return "no_text"
    if len(text) > 40000:
        return "msg_too_long"
    if blocks is None:
        return None
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        if not isinstance(block, dict):
            return "invalid_blocks"
        kind = block.get("type")
        if kind == "header":
            t = block.get("text") or {}
            if t.get("type") != "plain_text" or not 0 < len(t.get("text", "")) <= 150:
                return "invalid_blocks"
        elif kind == "section":
            t = block.get("text")
            fields = block.get("fields") or []
            if t is None and not fields:
                return "invalid_blocks"
            if t is not None and not 0 < len(t.get("text", "")) <= 3000:
                return "invalid_blocks"
            if len(fields) > 10 or any(not 0 < len(f.get("text", "")) <= 2000 for f in fields):
                return "invalid_blocks"
        elif kind == "context":
            elements = block.get("elements") or []
            if not 0 < len(elements) <= 10:
                return "invalid_blocks"
            if any(not 0 < len(e.get("text", "")) <= 3000 for e in elements):
                return "invalid_blocks"
        elif kind != "divider":
            return "invalid_blocks"
    return None


@dataclass
class Message:
    channel: str | None
    text: str
    blocks: list[dict[str, Any]]
    ts: str
    thread_ts: str | None
    reply_broadcast: bool
    accepted_at: float
    via: str
    parse: Any = None
    """``parse`` as sent (``"none"``: Slack auto-links nothing)."""
    link_names: Any = None


@dataclass
class _Failure:
    status: int
    count: int
    retry_after: float | None


@dataclass
class SlackServer:
    token: str = TOKEN
    channels: tuple[str, ...] = (CHANNEL,)
    messages: list[Message] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Every request: ``{"path", "status", "error", "at", "authorization"}``."""
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _failures: list[_Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: int = 0

    # -- lifecycle --------------------------------------------------------------------------

    def up(self) -> None:
        handler = _handler(self)
        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (429: with Retry-After)."""
        with self._lock:
            self._failures.append(_Failure(status, count, retry_after))

    def wait_messages(self, n: int, timeout: float = 30) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"want {n} Slack messages, got {len(self.messages)}")
            time.sleep(0.05)
        return list(self.messages)

    # -- handling ---------------------------------------------------------------------------

    def _next_failure(self) -> _Failure | None:
        with self._lock:
            while self._failures and self._failures[0].count <= 0:
                self._failures.pop(0)
            if not self._failures:
                return None
            self._failures[0].count -= 1
            return self._failures[0]

    def _accept(self, body: Mapping[str, Any], via: str) -> Message:
        with self._lock:
            self._seq += 1
            ts = f"{1700000000 + self._seq}.{self._seq:06d}"
            blocks = body.get("blocks") or []
            if isinstance(blocks, str):
                blocks = json.loads(blocks)
            message = Message(
                channel=body.get("channel"),
                text=str(body.get("text")),
                blocks=blocks,
                ts=ts,
                thread_ts=body.get("thread_ts"),
                reply_broadcast=bool(body.get("reply_broadcast")),
                accepted_at=time.time(),
                via=via,
                parse=body.get("parse"),
                link_names=body.get("link_names"),
            )
            self.messages.append(message)
            return message


def _handler(server: SlackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _reply(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
            data = (json.dumps(body) if not isinstance(body, str) else body).encode()
            self.send_response(status)
            ctype = "application/json" if not isinstance(body, str) else "text/plain"
            self.send_header("Content-Type", f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            if "json" in (self.headers.get("Content-Type") or ""):
                value = json.loads(raw or "{}")
                return value if isinstance(value, dict) else {}
            return {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}

        def do_POST(self) -> None:
            body = self._body()
            record: dict[str, Any] = {
                "path": self.path,
                "at": time.time(),
                "authorization": self.headers.get("Authorization"),
            }
            server.requests.append(record)
            failure = server._next_failure()
            webhook = self.path.startswith("/services/")
            if failure is not None:
                record["status"] = failure.status
                headers = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = f"{failure.retry_after:g}"
                if failure.status == 429:
                    self._reply(
                        429,
                        "rate_limited" if webhook else {"ok": False, "error": "ratelimited"},
                        headers,
                    )
                else:
                    self._reply(failure.status, "<html>upstream error</html>", headers)
                return
            if webhook:
                self._webhook(body, record)
            elif self.path == "/api/chat.postMessage":
                self._post_message(body, record)
            elif self.path == "/api/auth.test":
                if not self._authorized(record):
                    return
                record["status"] = 200
                self._reply(
                    200, {"ok": True, "team": "sentinel-test", "user": "sentinel", "bot_id": "B0"}
                )
            else:
                record["status"] = 404
                self._reply(404, {"ok": False, "error": "unknown_method"})

        def _authorized(self, record: dict[str, Any]) -> bool:
            if self.headers.get("Authorization") != f"Bearer {server.token}":
                record.update(status=200, error="invalid_auth")
                self._reply(200, {"ok": False, "error": "invalid_auth"})
                return False
            return True

        def _post_message(self, body: dict[str, Any], record: dict[str, Any]) -> None:
            if not self._authorized(record):
                return
            if body.get("channel") not in server.channels:
                record.update(status=200, error="channel_not_found")
                self._reply(200, {"ok": False, "error": "channel_not_found"})
                return
            problem = message_problem(body)
            if problem is not None:
                record.update(status=200, error=problem)
                self._reply(200, {"ok": False, "error": problem})
                return
            message = server._accept(body, "api")
            record["status"] = 200
            self._reply(200, {"ok": True, "channel": message.channel, "ts": message.ts})

        def _webhook(self, body: dict[str, Any], record: dict[str, Any]) -> None:
            if self.path != WEBHOOK_PATH:
                record.update(status=404, error="no_service")
                self._reply(404, "no_service")
                return
            problem = message_problem(body)
            if problem is not None:
                record.update(status=400, error=problem)
                self._reply(400, problem)
                return
            server._accept(body, "webhook")
            record["status"] = 200
            self._reply(200, "ok")

    return Handler


@contextmanager
def slack_server(**kwargs: Any) -> Iterator[SlackServer]:
    server = SlackServer(**kwargs)
    server.up()
    try:
        yield server
    finally:
        server.down()
