"""Actions against a real Docker daemon and the FROM-scratch leaker image: graceful restart,
dry run, oom_score_adj on every process of a container (and again after a restart),
SIGUSR2, and containers that are gone. The leakers here leak nothing (``--rate 0``) and
every container has a 64 MiB limit."""

from __future__ import annotations

import json
import os
import re
import signal as signal_module
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_fixtures import Container, RunContainer, docker
from sentinel.actions import Clients, execute, oom_score_adj, restart, signal
from sentinel.clients.docker import DockerClient
from sentinel.model import Target
from sentinel.policy import Decision
from sentinel.policy.model import RestartAction

IDLE = ("--rate", "0")


@pytest.fixture
def client(docker_daemon: str) -> Iterator[DockerClient]:
    with DockerClient() as c:
        yield c


def target_of(client: DockerClient, container: Container) -> Target:
    info = client.inspect(container.id)
    return Target(
        id=info.id,
        name=info.name,
        runtime="docker",
        image=info.image,
        labels=info.labels,
        started_at=info.started_at,
        pid=info.pid,
    )


def eventually(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within}s: {what}")
        time.sleep(0.05)


def usr2_counts(container: Container) -> list[int]:
    """The SIGUSR2 counts the leaker reported, in order."""
    return [int(n) for n in re.findall(r"SIGUSR2 count=(\d+)", container.logs())]


def adj(pid: int) -> int:
    return int(Path(f"/proc/{pid}/oom_score_adj").read_text())


def die_events(container: Container, since: float) -> list[dict[str, str]]:
    out = docker(
        "events",
        "--since",
        f"{since:.3f}",
        "--until",
        f"{time.time():.3f}",
        "--filter",
        f"container={container.id}",
        "--filter",
        "event=die",
        "--format",
        "{{json .Actor.Attributes}}",
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_restart_container_gracefully(
    client: DockerClient, leaker_image: str, run_container: RunContainer
) -> None:
    container = run_container(leaker_image, *IDLE)
    before = target_of(client, container)
    t0 = time.time() - 1
    decision = Decision(
        rule="restart-leaking-scheduler",
        target=before,
        action=RestartAction.model_validate({"restart": {"grace_period": "10s"}}),
        at=t0,
        reason="test",
        evidence={},
        dry_run=False,
    )
    result = execute(
        decision, before, clients=Clients(docker=client), dry_run=False, recheck=lambda: True
    )
    assert result.ok, result
    assert result.detail["took_s"] < 10  # the leaker left on SIGTERM: no SIGKILL
    state = container.state()
    assert state["Status"] == "running"
    assert state["Pid"] not in (0, before.pid)
    after = target_of(client, container)
    assert after.started_at is not None
    assert before.started_at is not None
    assert after.started_at > before.started_at
    assert result.detail["pid_after"] == after.pid
    dies = die_events(container, t0)
    assert [d["exitCode"] for d in dies] == ["0"]
    assert "signal 15, exiting" in container.logs()


def test_restart_dry_run_changes_nothing(
    client: DockerClient, leaker_image: str, run_container: RunContainer
) -> None:
    container = run_container(leaker_image, *IDLE)
    before = container.state()
    result = restart.restart(target_of(client, container), 10.0, dry_run=True, docker=client)
    assert result.outcome == "dry_run"
    assert result.detail["pid_before"] == before["Pid"]
    after = container.state()
    assert (after["Pid"], after["StartedAt"]) == (before["Pid"], before["StartedAt"])


def _pids_in_cgroup(pid: int) -> list[int]:
    """The container's processes, straight from its memory cgroup (test's own reading)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hid, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            procs = Path("/sys/fs/cgroup/memory") / path.strip("/") / "cgroup.procs"
            break
        if hid == "0":
            procs = Path("/sys/fs/cgroup") / path.strip("/") / "cgroup.procs"
    return sorted(int(p) for p in procs.read_text().split())


def test_oom_score_adj_every_process_and_after_restart(
    client: DockerClient, leaker_image: str, run_container: RunContainer
) -> None:
    container = run_container(leaker_image, *IDLE, "--fork", "2")
    target = target_of(client, container)
    assert target.pid is not None
    eventually(lambda: len(_pids_in_cgroup(target.pid or 0)) == 3, "the leaker's 2 children")
    pids = _pids_in_cgroup(target.pid)

    result = oom_score_adj.apply(target, 900, dry_run=False, docker=client)
    assert result.ok, result
    assert sorted(p["pid"] for p in result.detail["processes"]) == pids
    assert all(p["after"] == 900 for p in result.detail["processes"])
    assert [adj(p) for p in pids] == [900, 900, 900]
    assert result.detail["cgroup"].endswith(container.id)

    assert oom_score_adj.reapply(target, 900, docker=client).detail["changed"] == []

    docker("restart", "--time", "5", container.id)
    new_pid = container.state()["Pid"]
    eventually(lambda: len(_pids_in_cgroup(new_pid)) == 3, "the restarted leaker's children")
    new_pids = _pids_in_cgroup(new_pid)
    assert set(new_pids).isdisjoint(pids)
    assert all(adj(p) == 0 for p in new_pids)  # Docker does not keep it: sentinel must

    again = oom_score_adj.reapply(target, 900, docker=client)  # stale target.pid: re-read
    assert again.ok, again
    assert sorted(again.detail["changed"]) == new_pids
    assert [adj(p) for p in new_pids] == [900, 900, 900]


def has_cap_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 24))
    return False


def test_oom_score_adj_negative_needs_cap_sys_resource(
    client: DockerClient, leaker_image: str, run_container: RunContainer
) -> None:
    """-900 (protect a database) needs CAP_SYS_RESOURCE; without it the result says so."""
    container = run_container(leaker_image, *IDLE)
    target = target_of(client, container)
    assert target.pid is not None
    result = oom_score_adj.apply(target, -900, dry_run=False, docker=client)
    if has_cap_sys_resource():
        assert result.ok, result
        assert adj(target.pid) == -900
    else:
        assert not result.ok
        assert "CAP_SYS_RESOURCE" in (result.error or "")
        assert adj(target.pid) == 0


def test_signal_usr2_reaches_the_leaker(
    client: DockerClient, leaker_image: str, run_container: RunContainer
) -> None:
    container = run_container(leaker_image, *IDLE, "--step-ms", "20")
    eventually(lambda: "baseline done" in container.logs(), "the leaker started")
    result = signal.send(target_of(client, container), "SIGUSR2", dry_run=False, docker=client)
    assert result.ok, result
    assert result.detail["via"] == "pidfd"  # not Docker's kill API: see the next test
    eventually(lambda: "SIGUSR2 count=1" in container.logs(), "the leaker reports SIGUSR2")
    assert container.state()["Status"] == "running"

    dry = signal.send(target_of(client, container), "SIGUSR2", dry_run=True, docker=client)
    assert dry.outcome == "dry_run"
    # A real one after the dry run is the second the leaker counts: the dry run sent none
    # (had it sent one, the count would pass 2, or jump to 3 when reported together).
    real = signal.send(target_of(client, container), "SIGUSR2", dry_run=False, docker=client)
    assert real.ok, real
    eventually(lambda: max(usr2_counts(container), default=0) >= 2, "the leaker counts the second")
    assert usr2_counts(container) == [1, 2]


def test_a_signal_keeps_the_containers_restart_policy(
    client: DockerClient, leaker_image: str, run_container: RunContainer
) -> None:
    """Docker's kill API marks a signalled container "manually stopped" (moby#11065), after
    which ``--restart always`` no longer brings it back; sentinel signals the process."""
    container = run_container(
        leaker_image, *IDLE, "--step-ms", "20", options=["--restart", "always"]
    )
    eventually(lambda: "baseline done" in container.logs(), "the leaker started")
    result = signal.send(target_of(client, container), "SIGUSR2", dry_run=False, docker=client)
    assert result.ok, result
    eventually(lambda: "SIGUSR2 count=1" in container.logs(), "the leaker reports SIGUSR2")
    os.kill(container.state()["Pid"], signal_module.SIGTERM)  # the app exits on its own
    eventually(lambda: container.inspect()["RestartCount"] == 1, "Docker restarts it", 20)
    eventually(lambda: container.state()["Running"], "it runs again", 20)


def test_container_gone_is_a_result(
    client: DockerClient, leaker_image: str, run_container: RunContainer
) -> None:
    container = run_container(leaker_image, *IDLE)
    target = target_of(client, container)
    docker("rm", "--force", container.id)
    results = [
        restart.restart(target, 1.0, dry_run=False, docker=client),
        signal.send(target, "SIGUSR2", dry_run=False, docker=client),
        oom_score_adj.apply(target, 100, dry_run=False, docker=client),
        oom_score_adj.reapply(target, 100, docker=client),
    ]
    for result in results:
        assert not result.ok, result
        assert result.outcome == "failed"
        assert "container gone" in (result.error or ""), result


def test_stopped_container_is_a_result(
    client: DockerClient, leaker_image: str, run_container: RunContainer
) -> None:
    container = run_container(leaker_image, *IDLE)
    target = target_of(client, container)
    docker("stop", "--time", "5", container.id)
    for result in (
        signal.send(target, "SIGUSR2", dry_run=False, docker=client),
        oom_score_adj.reapply(target, 100, docker=client),
    ):
        assert not result.ok, result
        assert "exited" in (result.error or ""), result
