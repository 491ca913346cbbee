"""End to end: real containers OOM-killed by the kernel while ``sentinel run`` watches, with
a ``slack`` notifier pointed at the local Slack-compatible server.

Needs root, Docker and /dev/kmsg. Each test labels its containers with its own id and the
policy matches only that label, so kills of other tests (or old ones in the kernel
buffer) never reach its server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon_process import SentinelProcess, wait_for
from docker_fixtures import Container, RunContainer
from slack_server import CHANNEL, TOKEN, Message, SlackServer, slack_server

pytestmark = pytest.mark.kernel


def slack_daemon(workdir: Path, policy: str, state: Path) -> SentinelProcess:
    """``sentinel run`` with the Slack token in its environment (and nowhere else)."""
    return SentinelProcess.start(policy, workdir, state=state, env={"SLACK_BOT_TOKEN": TOKEN})


@pytest.fixture
def server() -> Iterator[SlackServer]:
    with slack_server() as s:
        yield s


@pytest.fixture
def daemons() -> Iterator[list[SentinelProcess]]:
    started: list[SentinelProcess] = []
    yield started
    for d in started:
        d.stop()


def policy(server: SlackServer, label: str) -> str:
    return (
        "settings: {sample_interval: 1s}\n"
        "notifiers:\n"
        "  team:\n"
        "    type: slack\n"
        f"    channel: {CHANNEL}\n"
        "    token_env: SLACK_BOT_TOKEN\n"
        f"    api_url: {server.api_url}\n"
        "rules:\n"
        "  - name: report-kills\n"
        f"    match: {{labels: {{sentinel.slack-test: '{label}'}}}}\n"
        "    when: {oom_killed: true}\n"
        "    do: [{notify: team}]\n"
    )


def leaker(run_container: RunContainer, image: str, label: str) -> Container:
    return run_container(
        image,
        "--wait-usr1",
        "--rate",
        "256",
        "--step-ms",
        "20",
        memory="64m",
        options=["--label", f"sentinel.slack-test={label}"],
    )


def watching(daemon: SentinelProcess, container: Container) -> None:
    """Until sentinel samples ``container``: it knows its name and labels."""
    daemon.wait_for(
        lambda: daemon.metric("sentinel_memory_usage_bytes", target=container.name) is not None,
        f"sentinel to watch {container.name}",
        30,
    )


def about(messages: list[Message], container: Container) -> list[Message]:
    return [m for m in messages if container.name in m.text or container.name in str(m.blocks)]


def assert_no_token(tmp_path: Path, daemons: list[SentinelProcess]) -> None:
    for d in daemons:
        assert TOKEN not in d.stderr()
        assert TOKEN not in d.stdout_path.read_text(errors="replace")
    for path in tmp_path.glob("state.db*"):
        assert TOKEN.encode() not in path.read_bytes(), path


@pytest.mark.timeout(240)
def test_a_real_oom_kill_is_one_slack_message(
    tmp_path: Path,
    server: SlackServer,
    daemons: list[SentinelProcess],
    run_container: RunContainer,
    leaker_image: str,
) -> None:
    label = uuid.uuid4().hex
    daemon = slack_daemon(tmp_path, policy(server, label), tmp_path / "state.db")
    daemons.append(daemon)
    daemon.wait_ready()
    container = leaker(run_container, leaker_image, label)
    watching(daemon, container)  # sentinel knows it (names, labels) before it dies
    container.signal("USR1")
    assert container.wait(timeout=120) == 137
    (message,) = wait_for(lambda: about(server.messages, container), "the Slack message", 30)
    daemon.settle()  # read past the kill, ticked, outbox empty: a second message would be in
    assert about(server.messages, container) == [message]
    assert message.channel == CHANNEL
    assert f"in container {container.name}" in message.text
    assert "it reached its own 64 MiB limit" in message.text
    assert "RSS at the kill" in message.text
    assert "sentinel-test/leaker" in message.text
    daemon.stop()
    assert_no_token(tmp_path, daemons)


@pytest.mark.timeout(240)
def test_outage_and_restart_lose_nothing_and_send_once(
    tmp_path: Path,
    server: SlackServer,
    daemons: list[SentinelProcess],
    run_container: RunContainer,
    leaker_image: str,
) -> None:
    label = uuid.uuid4().hex
    text = policy(server, label)
    state = tmp_path / "state.db"
    server.down()
    first = slack_daemon(tmp_path, text, state)
    daemons.append(first)
    first.wait_ready()
    container = leaker(run_container, leaker_image, label)
    watching(first, container)
    container.signal("USR1")
    assert container.wait(timeout=120) == 137
    wait_for(
        lambda: [
            d for d in first.logs("decision") if d.get("target", {}).get("name") == container.name
        ],
        "the decision to notify",
        30,
    )
    first.wait_for(
        lambda: (first.metric("sentinel_notification_failures_total") or 0) >= 1,
        "a delivery attempt to fail against the closed port",
        30,
    )
    assert first.stop() == 0
    assert not server.messages
    second = slack_daemon(tmp_path, text, state)
    daemons.append(second)
    second.wait_ready()
    second.wait_for(  # it found the message owed in the state, while Slack is still down
        lambda: second.metric("sentinel_notifications_pending") == 1, "the owed message", 30
    )
    server.up()
    (message,) = wait_for(
        lambda: about(server.messages, container), "the message after the outage", 60
    )
    second.settle()
    assert about(server.messages, container) == [message]
    assert "it reached its own 64 MiB limit" in message.text
    second.stop()
    assert_no_token(tmp_path, daemons)


@pytest.mark.timeout(300)
def test_a_storm_of_ten_kills_is_one_grouped_message(
    tmp_path: Path,
    server: SlackServer,
    daemons: list[SentinelProcess],
    run_container: RunContainer,
    leaker_image: str,
) -> None:
    label = uuid.uuid4().hex
    daemon = slack_daemon(tmp_path, policy(server, label), tmp_path / "state.db")
    daemons.append(daemon)
    daemon.wait_ready()
    containers = [leaker(run_container, leaker_image, label) for _ in range(10)]
    for c in containers:
        watching(daemon, c)
    for c in containers:
        c.signal("USR1")
    for c in containers:
        assert c.wait(timeout=120) == 137

    def storm() -> list[Message]:
        return [m for m in server.messages if m.text.startswith("OOM kill storm")]

    (grouped,) = wait_for(storm, "the grouped storm message", 60)
    daemon.settle()  # every kill read, ticked, nothing held or owed: all is said
    assert storm() == [grouped]
    assert "10 kills" in grouped.text
    for c in containers:
        assert c.name in str(grouped.blocks)
    # at most the first kill was told on its own before the storm was seen
    assert len(server.messages) <= 2
    daemon.stop()
    assert_no_token(tmp_path, daemons)
