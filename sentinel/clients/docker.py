"""The only module that talks to Docker (through the ``docker`` SDK).

It hands out sentinel's own values (:class:`ContainerInfo`, :class:`DockerEvent`) and
sentinel's own errors: a daemon that is away or answers 5xx is a
:class:`~sentinel.errors.TemporaryError` (retry with backoff); a container that no
longer exists is :class:`ContainerGone`; anything else is a
:class:`~sentinel.errors.SentinelError` naming what was asked.

Memory is never read from here: Docker's stats API costs 1-1.7 s a call, a cgroup file
about 60 us. Docker gives names, images, labels, state and the container's init pid,
from which the cgroup path is read in ``/proc``.
"""

from __future__ import annotations

import gc
import logging
import socket
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

from sentinel.errors import SentinelError, TemporaryError

log = logging.getLogger(__name__)

T = TypeVar("T")
WATCHED_EVENTS = ("start", "die", "oom", "destroy", "restart", "stop", "kill")


class ContainerGone(SentinelError):
    """The container was removed (or never existed)."""


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    id: str
    name: str
    image: str
    labels: Mapping[str, str] = field(default_factory=dict)
    state: str = "unknown"
    pid: int = 0
    """The container's init process on this host (0 when not running)."""
    started_at: float | None = None
    restart_count: int = 0
    memory_limit_bytes: int | None = None
    oom_killed: bool = False
    exit_code: int | None = None

    @property
    def compose_project(self) -> str | None:
        return self.labels.get("com.docker.compose.project")

    @property
    def compose_service(self) -> str | None:
        return self.labels.get("com.docker.compose.service")

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True, slots=True)
class DockerEvent:
    action: str
    container_id: str
    name: str | None
    time: float
    attributes: Mapping[str, str] = field(default_factory=dict)


def _parse_time(text: str | None) -> float | None:
    if not text or text.startswith("0001-"):
        return None
    # Docker prints nanoseconds; Python's fromisoformat takes at most microseconds.
    head, _, frac = text.rstrip("Z").partition(".")
    frac = (frac + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{frac}+00:00").timestamp()


def container_info(attrs: Mapping[str, Any]) -> ContainerInfo:
    """Pure: a ``docker inspect`` document to a :class:`ContainerInfo`."""
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    host = attrs.get("HostConfig") or {}
    limit = host.get("Memory") or None
    return ContainerInfo(
        id=str(attrs.get("Id", "")),
        name=str(attrs.get("Name", "")).lstrip("/"),
        image=str(config.get("Image") or attrs.get("Image") or ""),
        labels=dict(config.get("Labels") or {}),
        state=str(state.get("Status", "unknown")),
        pid=int(state.get("Pid") or 0),
        started_at=_parse_time(state.get("StartedAt")),
        restart_count=int(attrs.get("RestartCount") or 0),
        memory_limit_bytes=int(limit) if limit else None,
        oom_killed=bool(state.get("OOMKilled")),
        exit_code=state.get("ExitCode"),
    )


def _drop_tracebacks(error: BaseException) -> None:
    """Clear the tracebacks of an error and of every error it wraps (also in its args)."""
    todo: list[BaseException] = [error]
    seen: set[int] = set()
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = None
        linked = [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
        todo.extend(x for x in linked if isinstance(x, BaseException))


def _collect_leaked_sockets() -> None:
    """The SDK leaves the socket of a failed unix connect open; close it now, quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


class DockerClient:
    """A thin, typed face of the Docker Engine API."""

    def __init__(self, base_url: str | None = None, *, timeout: float = 30) -> None:
        self.base_url = base_url or "unix:///var/run/docker.sock"
        self.timeout = timeout
        self._client: Any = None

    def _api(self) -> Any:
        if self._client is None:
            if self.base_url.startswith("unix://"):
                self._probe_unix_socket(self.base_url[len("unix://") :])
            try:
                self._client = docker.DockerClient(base_url=self.base_url, timeout=self.timeout)
            except docker.errors.DockerException as e:
                _collect_leaked_sockets()
                raise TemporaryError(f"Docker at {self.base_url} is not reachable: {e}") from e
        return self._client

    def _probe_unix_socket(self, path: str) -> None:
        """Fail fast, and without the SDK's socket leak, when nothing listens there."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(self.timeout)
            try:
                probe.connect(path)
            except OSError as e:
                raise TemporaryError(
                    f"Docker at {self.base_url} is not reachable: {e.strerror or e}"
                    " (is dockerd running?)"
                ) from None

    def _translate(self, what: str, e: Exception) -> SentinelError:
        if isinstance(e, docker.errors.NotFound):
            return ContainerGone(f"{what}: no such container")
        if isinstance(e, docker.errors.APIError) and e.status_code is not None:
            if e.status_code >= 500:
                return TemporaryError(f"{what}: Docker answered {e.status_code}: {e.explanation}")
            return SentinelError(f"{what}: Docker refused ({e.status_code}): {e.explanation}")
        if isinstance(e, requests.exceptions.RequestException | docker.errors.DockerException):
            self.close()  # reconnect next time
            return TemporaryError(f"{what}: Docker at {self.base_url} is not reachable ({e})")
        return SentinelError(f"{what}: {e}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> DockerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(api)``, translating every failure into sentinel's vocabulary."""
        try:
            return fn(self._api().api)
        except SentinelError:
            raise
        except Exception as e:
            error = self._translate(what, e)
            if not isinstance(error, TemporaryError):
                raise error from e
            _drop_tracebacks(e)  # they hold the socket the SDK did not close
        _collect_leaked_sockets()
        raise error

    def ping(self) -> None:
        self._call("ping", lambda api: api.ping())

    def containers(self, *, all: bool = False) -> list[ContainerInfo]:
        found = self._call("list containers", lambda api: api.containers(all=all, quiet=True))
        infos = []
        for c in found:
            try:
                infos.append(self.inspect(c["Id"]))
            except ContainerGone:
                continue  # removed between list and inspect
        return infos

    def inspect(self, container_id: str) -> ContainerInfo:
        return container_info(
            self._call(
                f"inspect {container_id[:12]}", lambda api: api.inspect_container(container_id)
            )
        )

    def restart(self, container_id: str, *, grace_seconds: float) -> None:
        """Graceful restart: SIGTERM (the image's stop signal), wait, SIGKILL, then start."""

        def do(api: Any) -> None:
            api.stop(container_id, timeout=max(0, round(grace_seconds)))
            api.start(container_id)

        self._call(f"restart {container_id[:12]}", do)

    def kill(self, container_id: str, signal: str) -> None:
        """Send ``signal`` (a name such as ``SIGUSR2``, or a number) to the container's main
        process. Docker refuses (409, a :class:`~sentinel.errors.SentinelError`) when the
        container is not running."""
        self._call(
            f"kill -s {signal} {container_id[:12]}",
            lambda api: api.kill(container_id, signal=signal),
        )

    def events(self, *, since: float | None = None) -> Iterator[DockerEvent]:
        """Container lifecycle events, as they happen (blocks; ends when Docker goes away)."""
        stream = self._call(
            "subscribe to events",
            lambda api: api.events(
                since=int(since) if since is not None else None,
                filters={"type": "container", "event": list(WATCHED_EVENTS)},
                decode=True,
            ),
        )
        try:
            for raw in stream:
                actor = raw.get("Actor") or {}
                attributes = dict(actor.get("Attributes") or {})
                action = str(raw.get("Action") or raw.get("status") or "").split(":")[0]
                nanos = raw.get("timeNano")
                yield DockerEvent(
                    action=action,
                    container_id=str(actor.get("ID") or raw.get("id") or ""),
                    name=attributes.get("name"),
                    time=nanos / 1e9 if nanos else float(raw.get("time") or 0),
                    attributes=attributes,
                )
        except Exception as e:
            raise self._translate("event stream", e) from e
        finally:
            stream.close()
        raise TemporaryError("event stream: Docker closed it")
