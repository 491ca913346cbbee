"""sentinel.clients.docker against a real Docker daemon."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_fixtures import RunContainer
from sentinel.clients.docker import ContainerGone, DockerClient, DockerEvent, container_info
from sentinel.errors import TemporaryError


@pytest.fixture
def client(docker_daemon: str) -> Iterator[DockerClient]:
    with DockerClient() as c:
        yield c


def test_inspect_gives_identity_and_init_pid(
    leaker_image: str, run_container: RunContainer, client: DockerClient
) -> None:
    c = run_container(
        leaker_image,
        "--rate",
        "0",
        memory="32m",
        options=["--label", "team=data", "--label", "com.docker.compose.service=sched"],
    )
    info = client.inspect(c.id)
    assert (info.id, info.name, info.image) == (c.id, c.name, leaker_image)
    assert info.labels["team"] == "data"
    assert info.compose_service == "sched"
    assert info.running
    assert info.pid == c.state()["Pid"] > 0
    assert info.memory_limit_bytes == 32 << 20
    assert info.started_at is not None
    assert abs(info.started_at - time.time()) < 120
    assert c.id in {x.id for x in client.containers()}


def test_graceful_restart_and_events(
    leaker_image: str, run_container: RunContainer, client: DockerClient
) -> None:
    c = run_container(leaker_image, "--rate", "0", memory="32m")
    before = client.inspect(c.id)
    seen: list[DockerEvent] = []

    since = time.time() - 1  # dockerd replays what happened since: no race with the restart

    def watch() -> None:
        with DockerClient() as events_client:
            for event in events_client.events(since=since):
                if event.container_id != c.id:
                    continue
                seen.append(event)
                if event.action == "start" and any(e.action == "die" for e in seen):
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    client.restart(c.id, grace_seconds=10)
    watcher.join(timeout=30)
    after = client.inspect(c.id)
    assert after.running
    assert after.pid != before.pid
    assert after.started_at is not None
    assert before.started_at is not None
    assert after.started_at > before.started_at
    actions = [e.action for e in seen]
    assert "die" in actions
    assert actions[-1] == "start"
    die = next(e for e in seen if e.action == "die")
    assert die.attributes.get("exitCode") == "0"  # SIGTERM was honoured: no SIGKILL
    assert die.name == c.name


def test_missing_container_is_gone(docker_daemon: str) -> None:
    with DockerClient() as c, pytest.raises(ContainerGone):
        c.inspect("0" * 64)


def test_unreachable_daemon_is_temporary() -> None:
    with pytest.raises(TemporaryError, match="not reachable"):
        DockerClient("unix:///nonexistent/docker.sock").ping()


def test_container_info_parses_nanosecond_times() -> None:
    info = container_info(
        {
            "Id": "abc",
            "Name": "/web",
            "Config": {"Image": "nginx:1", "Labels": None},
            "State": {"Status": "exited", "Pid": 0, "StartedAt": "2024-01-02T03:04:05.123456789Z"},
            "HostConfig": {"Memory": 0},
        }
    )
    assert (info.name, info.labels, info.memory_limit_bytes, info.running) == (
        "web",
        {},
        None,
        False,
    )
    assert info.started_at == pytest.approx(1704164645.123456)


def test_refused_connection_is_temporary() -> None:
    # A short directory: a socket path has at most 107 bytes, and pytest's tmp_path under a
    # long TMPDIR (the markers test's) can be longer.
    short = Path(tempfile.mkdtemp(prefix="sentinel-", dir="/tmp"))
    path = short / "docker.sock"
    with contextlib.ExitStack() as cleanup, socket.socket(socket.AF_UNIX) as s:
        cleanup.callback(shutil.rmtree, short, ignore_errors=True)
        s.bind(str(path))  # bound, never listening: connect() is refused
        with pytest.raises(TemporaryError, match="not reachable"):
            DockerClient(f"unix://{path}").ping()
