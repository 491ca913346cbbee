"""End to end: sentinel as a Docker sidecar (the README's commands), against real dockerd.

The app is the leaker image with ``--restart always`` and a 192 MiB limit; sentinel shares
its PID namespace (``--pid container:APP``), has no network and no view of the host's
cgroups, so it reads the app's memory from ``/proc`` against ``SENTINEL_APP_MEMORY_LIMIT``.
The leaker waits for SIGUSR1 (sent straight to its host pid: ``docker kill -s`` would mark
the app manually stopped, moby#11065) before it leaks, and waits again after each restart.

- The app's PID 1 handles SIGTERM: sentinel stops it before the projected kill; the kernel
  then ends the whole namespace, sentinel included; Docker brings both back, and sentinel
  settles its interrupted restart (counted, notified once) and keeps the restart budget.
- The app's PID 1 has no SIGTERM handler: the self-test and the restart's result say why it
  cannot be stopped; with ``docker run --init`` the same app is restarted.
- The pause pattern: app and sentinel both join a pause container's namespace, so the app is
  not PID 1 and sentinel outlives its restart.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from container_sentinel import DockerRun, SentinelContainer, exits, inspect
from daemon_process import kernel_kills, wait_for

pytestmark = pytest.mark.kernel

POLICY = """\
version: 1
settings:
  sample_interval: 1s
notifiers:
  ops-log:
    type: log
rules:
  - name: restart-app
    match: {runtime: process}
    when: {projected_oom_within: 30s}
    do:
      - restart: {grace_period: 2s}
      - notify: ops-log
    cooldown: 5s
    max_restarts: {count: 1, per: 1h}
"""
LEAK = ("--wait-usr1", "--rate", "4", "--baseline", "8")


def app_command(name: str, image: str, *extra: str, options: tuple[str, ...] = ()) -> list[str]:
    """The README's app: ``docker run -d --name app --restart always --memory 192m IMAGE``
    (and no network)."""
    return [
        "run",
        "-d",
        "--name",
        name,
        "--restart",
        "always",
        "--memory",
        "192m",
        "--network",
        "none",
        *options,
        image,
        *LEAK,
        *extra,
    ]


def sidecar_command(name: str, pid_of: str, volume: str, policy_file: Path) -> list[str]:
    """The README's sidecar command, with the test's names."""
    return [
        "run",
        "-d",
        "--name",
        name,
        "--pid",
        f"container:{pid_of}",
        "--network",
        "none",
        "--restart",
        "always",
        "-e",
        "SENTINEL_APP_MEMORY_LIMIT=192Mi",
        "-v",
        f"{volume}:/var/lib/sentinel",
        "-v",
        f"{policy_file}:/etc/sentinel/policy.yaml:ro",
        "sentinel:local",
        "run",
        "--mode",
        "sidecar",
        "-c",
        "/etc/sentinel/policy.yaml",
    ]


def go(container: str) -> None:
    """SIGUSR1 to the app's leaker: start leaking."""
    state = inspect(container)["State"]
    assert state["Running"], state
    pid = int(state["Pid"])
    # With --init, Docker's Pid is the init: the leaker is its child.
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    os.kill(int(children[0]) if children else pid, signal.SIGUSR1)


def restarts(name: str) -> int:
    return int(inspect(name)["RestartCount"])


def start_sidecar(
    docker_run: DockerRun, tmp_path: Path, pid_of: str
) -> tuple[SentinelContainer, dict[str, Any]]:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    name, volume = docker_run.name("app-sentinel"), docker_run.name("app-sentinel-state")
    docker_run(sidecar_command(name, pid_of, volume, policy_file))
    s = SentinelContainer(name, volume)
    wait_for(lambda: s.logs("selftest"), f"the sidecar's self-test\n{s.describe()}", 60)
    wait_for(lambda: s.logs("listening"), f"the sidecar listening\n{s.describe()}", 30)
    return s, s.logs("selftest")[0]


@pytest.mark.timeout(300)
def test_sidecar_stops_the_app_before_the_kill_and_comes_back_with_it(
    tmp_path: Path, docker_run: DockerRun, leaker_image: str, sentinel_image: str
) -> None:
    app = docker_run.name("app")
    docker_run(app_command(app, leaker_image))
    s, selftest = start_sidecar(docker_run, tmp_path, app)
    assert selftest["mode"] == "sidecar"
    assert selftest["app_memory"] == "proc"  # the host's cgroups are not visible
    assert selftest["app_can_be_stopped"] is True
    app_id = inspect(app)["Id"]
    started = inspect(app)["State"]["StartedAt"]

    go(app)
    wait_for(lambda: restarts(app) == 1, f"Docker to restart the app\n{s.describe()}", 120)
    wait_for(lambda: inspect(app)["State"]["Running"], "the app to run again", 30)
    assert exits(app, started) == [("die", 0)]  # SIGTERM, handled: not the kernel's kill
    assert kernel_kills(app_id) == [], "the kernel killed the app"
    # The leak again, at once (the forecast sees young leaks only as a straight line from
    # the start): the budget (1 restart an hour) is on the state volume, so it escalates.
    go(app)
    # The namespace ended with the app, sentinel included; it is back beside the new app.
    wait_for(lambda: restarts(s.name) == 1, f"the sidecar to come back\n{s.describe()}", 60)
    note = wait_for(
        lambda: s.notifications(rule="restart-app"), f"the restart's notification\n{s.describe()}"
    )
    assert len(note) == 1, note
    assert note[0]["kind"] == "action"
    assert note[0]["target"]["name"] == "leaker"
    assert note[0]["after"]["interrupted"] is True
    assert note[0]["after"]["running"] is True
    assert note[0]["evidence"]["condition"] == "projected_oom_within"
    assert note[0]["evidence"]["limit_bytes"] == 192 << 20  # SENTINEL_APP_MEMORY_LIMIT
    decisions = [e for e in s.events(sentinel_image) if e["event"] == "decision"]
    assert [(d["action"], d["outcome"]) for d in decisions if d["action"] == "restart"] == [
        ("restart", "interrupted")
    ]
    app_pid_ns = os.readlink(f"/proc/{inspect(app)['State']['Pid']}/ns/pid")
    assert os.readlink(f"/proc/{inspect(s.name)['State']['Pid']}/ns/pid") == app_pid_ns

    escalation = wait_for(
        lambda: s.logs("decision", action="escalate"), f"an escalation\n{s.describe()}", 60
    )
    assert escalation[0]["rule"] == "restart-app"
    assert restarts(app) == 1, s.describe()
    told = s.notifications(rule="restart-app", kind="action")
    assert len([n for n in told if "after" in n]) == 1, told  # the restart, told once
    assert "restart skipped" in " ".join(told[-1]["evidence"]["notes"])  # the budget


@pytest.mark.timeout(300)
@pytest.mark.parametrize("init", [False, True], ids=["pid1-no-handler", "docker-run-init"])
def test_an_app_pid1_without_a_sigterm_handler(
    tmp_path: Path, docker_run: DockerRun, leaker_image: str, sentinel_image: str, init: bool
) -> None:
    app = docker_run.name("app")
    docker_run(
        app_command(app, leaker_image, "--no-term-handler", options=("--init",) if init else ())
    )
    s, selftest = start_sidecar(docker_run, tmp_path, app)
    assert selftest["app_can_be_stopped"] is init
    started = inspect(app)["State"]["StartedAt"]
    go(app)
    if init:
        # docker-init is PID 1: it has a handler and forwards SIGTERM to the leaker, whose
        # default action ends it.
        wait_for(lambda: restarts(app) == 1, f"Docker to restart the app\n{s.describe()}", 120)
        assert exits(app, started) == [("die", 143)]  # the leaker's SIGTERM, through tini
        # sentinel comes back after the app (Docker's restart backoff for a container
        # that could not join the app's namespace yet doubles, up to a minute): 150 s.
        try:
            wait_for(lambda: s.notifications(rule="restart-app"), "the restart's notification", 150)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{s.describe()}") from None
        assert s.notifications(rule="restart-app")[0]["target"]["name"] == "leaker"
        return
    problems = " ".join(selftest["problems"])
    assert "no SIGTERM handler" in problems
    assert "--init" in problems
    failed = wait_for(
        lambda: s.logs("action", action="restart"), f"the restart's result\n{s.describe()}", 90
    )
    assert failed[0]["outcome"] == "failed"
    assert failed[0]["detail"]["init_without_sigterm_handler"] is True
    assert "no SIGTERM handler" in failed[0]["error"]
    assert restarts(app) == 0
    assert inspect(app)["State"]["Running"]
    assert inspect(s.name)["State"]["Running"]


@pytest.mark.timeout(300)
def test_pause_pattern_sentinel_outlives_the_apps_restart(
    tmp_path: Path, docker_run: DockerRun, leaker_image: str, sentinel_image: str
) -> None:
    pause, app = docker_run.name("pause"), docker_run.name("app")
    docker_run(
        [
            "run",
            "-d",
            "--name",
            pause,
            "--network",
            "none",
            "--memory",
            "16m",
            "--entrypoint",
            "/pause",
            leaker_image,
        ]
    )
    docker_run(app_command(app, leaker_image, options=("--pid", f"container:{pause}")))
    s, selftest = start_sidecar(docker_run, tmp_path, pause)
    assert selftest["app_can_be_stopped"] is True  # PID 1 is pause, which handles SIGTERM
    started = inspect(app)["State"]["StartedAt"]
    go(app)
    wait_for(lambda: restarts(app) == 1, f"Docker to restart the app\n{s.describe()}", 120)
    note = wait_for(lambda: s.notifications(rule="restart-app"), "the restart's notification", 30)
    assert note[0]["after"]["running"] is True
    assert "interrupted" not in note[0]["after"]
    done = s.logs("action", action="restart", outcome="done")
    assert len(done) == 1
    assert done[0]["detail"]["pid"] != 1
    assert exits(app, started) == [("die", 0)]
    assert restarts(s.name) == 0  # sentinel was never in danger
    assert inspect(s.name)["State"]["Running"]
