"""End to end: sentinel as a host container (the README's command), against real dockerd and
the real kernel.

The image is ``sentinel:local`` (``scripts/image``). sentinel runs with the host's PID
namespace, network, kernel log, cgroup tree and Docker socket, its state on a named volume,
and posts to a Slack-compatible server on 127.0.0.1 (reachable: ``--network host``). Every
rule matches only this test's label. The test checks:

- a leaking container is restarted gracefully before the kernel kills it (one Slack message);
- a real kernel OOM kill of another container is recorded and notified once;
- ``docker restart`` of sentinel in between loses and repeats nothing, and a kill that
  happens while sentinel is stopped is read from the kernel log when it is back, and notified
  once: the kmsg position, decisions and outbox live on the state volume.
"""

from __future__ import annotations

import os
import signal
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from container_sentinel import DockerRun, SentinelContainer, inspect
from daemon_process import kernel_kills, wait_for
from docker_fixtures import Container, RunContainer, docker
from slack_server import CHANNEL, TOKEN, Message, SlackServer, slack_server

pytestmark = pytest.mark.kernel

CAP_SYS_RESOURCE = 24


@pytest.fixture
def server() -> Iterator[SlackServer]:
    with slack_server() as s:
        yield s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def can_grant_sys_resource() -> bool:
    """Whether Docker can give a container CAP_SYS_RESOURCE here (it must be in the bounding
    set of dockerd; some sandboxes, this machine's among them, drop it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


def policy(server: SlackServer, tag: str, port: int) -> str:
    return f"""\
version: 1
settings:
  sample_interval: 1s
  listen: 127.0.0.1:{port}
notifiers:
  team:
    type: slack
    channel: {CHANNEL}
    token_env: SLACK_BOT_TOKEN
    api_url: {server.api_url}
rules:
  - name: restart-leaker
    match: {{labels: {{sentinel.e2e: "{tag}", role: leaker}}}}
    when: {{projected_oom_within: 30s}}
    do:
      - restart: {{grace_period: 2s}}
      - notify: team
    cooldown: 10m
    max_restarts: {{count: 1, per: 1h}}
  - name: report-kills
    match: {{labels: {{sentinel.e2e: "{tag}"}}}}
    when: {{oom_killed: true}}
    do:
      - notify: team
"""


def host_command(name: str, volume: str, policy_file: Path, *, sys_resource: bool) -> list[str]:
    """The README's host-container command (with the test's names), plus ``-e
    SLACK_BOT_TOKEN`` (taken from the docker CLI's environment: not on its command line)."""
    cmd = ["run", "-d", "--name", name, "--pid", "host", "--network", "host"]
    cmd += ["--cap-add", "SYSLOG"]
    if sys_resource:
        cmd += ["--cap-add", "SYS_RESOURCE"]
    cmd += ["--device", "/dev/kmsg"]
    cmd += ["-v", "/var/run/docker.sock:/var/run/docker.sock"]
    cmd += ["-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro"]
    cmd += ["-v", f"{volume}:/var/lib/sentinel"]
    cmd += ["-v", f"{policy_file}:/etc/sentinel/policy.yaml:ro"]
    cmd += ["-e", "SLACK_BOT_TOKEN"]
    cmd += ["sentinel:local", "run", "-c", "/etc/sentinel/policy.yaml"]
    return cmd


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def about(messages: list[Message], container: Container) -> list[Message]:
    return [m for m in messages if container.name in m.text or container.name in str(m.blocks)]


def go(container: Container) -> None:
    """SIGUSR1 to the leaker (start leaking), straight to its host pid: ``docker kill -s``
    would mark the container manually stopped (moby#11065)."""
    os.kill(int(container.state()["Pid"]), signal.SIGUSR1)


@pytest.mark.timeout(420)
def test_host_container_restarts_before_the_kill_and_records_kills_across_restarts(  # noqa: PLR0917 (fixtures)
    tmp_path: Path,
    server: SlackServer,
    docker_run: DockerRun,
    run_container: RunContainer,
    leaker_image: str,
    sentinel_image: str,
) -> None:
    tag = docker_run.run_id
    port = free_port()
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy(server, tag, port))
    name, volume = docker_run.name("sentinel"), docker_run.name("state")
    env = {**os.environ, "SLACK_BOT_TOKEN": TOKEN}
    sys_resource = can_grant_sys_resource()
    if not sys_resource:
        # The exact command, here: Docker cannot grant what dockerd does not have.
        refused = docker_run(
            host_command(name, volume, policy_file, sys_resource=True), env=env, check=False
        )
        assert refused.returncode != 0
        assert "unable to apply caps" in refused.stderr, refused.stderr
        docker("rm", "--force", name, check=False)
    docker_run(host_command(name, volume, policy_file, sys_resource=sys_resource), env=env)
    s = SentinelContainer(name, volume)
    wait_for(lambda: ready(port), f"sentinel ready on 127.0.0.1:{port}\n{s.describe()}", 60)
    selftest = s.logs("selftest")[0]
    assert selftest["mode"] == "host"
    assert selftest["kmsg"] is True
    assert selftest["docker"] is True
    assert selftest["host_pid"] is True
    assert selftest["cgroups"] is True
    assert selftest["self_container"] == inspect(name)["Id"]
    assert selftest["negative_oom_score_adj"] is sys_resource

    # 1. A leak: restarted gracefully before the kernel kills it.
    labels = ["--label", f"sentinel.e2e={tag}"]
    leaker = run_container(
        leaker_image,
        "--wait-usr1",
        "--rate",
        "4",
        "--baseline",
        "8",
        memory="192m",
        options=[*labels, "--label", "role=leaker"],
    )
    first_start = leaker.state()["StartedAt"]
    go(leaker)
    wait_for(
        lambda: about(server.messages, leaker),
        f"the restart's Slack message\n{s.describe()}",
        120,
    )
    state = leaker.state()
    assert state["StartedAt"] != first_start, "not restarted"
    assert state["Running"]
    assert not state["OOMKilled"]
    assert kernel_kills(leaker.id) == [], "the kernel killed the leaker"
    restarts = [
        e for e in s.events(sentinel_image) if e["event"] == "decision" and e["action"] == "restart"
    ]
    assert [(r["target"], r["outcome"]) for r in restarts] == [(leaker.name, "done")]

    # 2. sentinel restarts; then a kernel kill.
    docker("restart", "--time", "10", name)
    wait_for(lambda: ready(port), f"sentinel ready again\n{s.describe()}", 60)
    victim = run_container(
        leaker_image,
        "--wait-usr1",
        "--rate",
        "64",
        "--step-ms",
        "20",
        memory="48m",
        options=[*labels, "--label", "role=victim"],
    )
    go(victim)
    assert victim.wait(timeout=60) == 137
    assert victim.state()["OOMKilled"] is True
    wait_for(lambda: about(server.messages, victim), f"the kill's message\n{s.describe()}", 30)

    # 3. A kill while sentinel is stopped: read from the kernel log when it is back.
    docker("stop", "--time", "10", name)
    assert s.state()["ExitCode"] == 0, s.describe()
    late = run_container(
        leaker_image,
        "--wait-usr1",
        "--rate",
        "64",
        "--step-ms",
        "20",
        memory="48m",
        options=[*labels, "--label", "role=victim"],
    )
    go(late)
    assert late.wait(timeout=60) == 137
    docker("start", name)
    wait_for(lambda: about(server.messages, late), f"the late kill's message\n{s.describe()}", 60)

    # Nothing lost, nothing twice: the late kill's message came last, after anything the
    # outbox or the kernel log could have repeated.
    messages = list(server.messages)
    assert len(about(messages, leaker)) == 1, [m.text for m in messages]
    assert len(about(messages, victim)) == 1, [m.text for m in messages]
    assert len(about(messages, late)) == 1, [m.text for m in messages]
    assert "killed" in about(messages, victim)[0].text
    assert all(m.channel == CHANNEL for m in messages)
    events = s.events(sentinel_image)
    kills = [e for e in events if e["event"] == "kill" and e["target"] in (victim.name, late.name)]
    assert sorted(k["target"] for k in kills) == sorted([victim.name, late.name])
    assert all(k["scope"] == "cgroup" for k in kills)
    assert len([e for e in events if e["event"] == "decision" and e["action"] == "restart"]) == 1
    assert len(s.logs("kmsg-backlog")) == 1, "only the first start treats the kernel log as old"
    # The image's HEALTHCHECK (sentinel health) finds the daemon through the state volume.
    wait_for(
        lambda: inspect(name)["State"].get("Health", {}).get("Status") == "healthy",
        "Docker's healthcheck to pass",
        90,
    )
    logs = docker("logs", name).stdout + docker("logs", name).stderr
    assert TOKEN not in logs
