"""``/healthz``, ``/readyz`` and Prometheus ``/metrics`` on ``settings.listen``."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sentinel.errors import SentinelError


class Metrics:
    """Counters and gauges, rendered in the Prometheus text format (no client library)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._help: dict[str, tuple[str, str]] = {}

    def describe(self, name: str, kind: str, text: str) -> None:
        self._help[name] = (kind, text)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._gauges[key] = value

    def clear(self, name: str) -> None:
        with self._lock:
            for key in [k for k in self._gauges if k[0] == name]:
                del self._gauges[key]

    def get(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            return self._counters.get(key, self._gauges.get(key, 0.0))

    def render(self) -> str:
        with self._lock:
            items = sorted({**self._counters, **self._gauges}.items())
        lines: list[str] = []
        seen: set[str] = set()
        for (name, labels), value in items:
            if name not in seen:
                seen.add(name)
                kind, text = self._help.get(name, ("untyped", ""))
                if text:
                    lines.append(f"# HELP {name} {text}")
                lines.append(f"# TYPE {name} {kind}")
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}} {value:g}" if labels else f"{name} {value:g}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class HealthServer:
    """A small threaded HTTP server; ``ready`` and ``healthy`` are asked on each request."""

    def __init__(
        self,
        listen: str,
        metrics: Metrics,
        *,
        healthy: Callable[[], bool],
        ready: Callable[[], bool],
    ) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        handler = _handler(metrics, healthy, ready)
        # ":9310" is every address (as documented); "[::1]:9310" an IPv6 one.
        server_class = _ThreadingHTTPServer6 if ":" in host else ThreadingHTTPServer
        try:
            self.server = server_class((host or "0.0.0.0", int(port)), handler)
        except OSError as e:
            raise SentinelError(f"cannot listen on {listen}: {e.strerror or e}") from e
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="http", kwargs={"poll_interval": 0.2}
        )

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        host = str(host)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _ThreadingHTTPServer6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler(
    metrics: Metrics, healthy: Callable[[], bool], ready: Callable[[], bool]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                ok = healthy()
                self._send(200 if ok else 503, "ok\n" if ok else "unhealthy\n")
            elif path == "/readyz":
                ok = ready()
                self._send(200 if ok else 503, "ready\n" if ok else "not ready\n")
            elif path == "/metrics":
                self._send(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
            else:
                self._send(404, "not found\n")

        def _send(self, code: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return  # health probes every few seconds are not news

    return Handler
