"""The outbox through the Slack sender to a local Slack-compatible server: nothing lost,
nothing twice, storms grouped, 429 honoured, threads per target, the token nowhere.

Time is injected (``now``): no sleeping for backoffs.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentinel.notifiers.delivery import STORM_QUIET, deliver
from sentinel.notifiers.slack import SlackSender
from sentinel.policy.model import SlackNotifier
from sentinel.store import Store
from slack_server import CHANNEL, TOKEN, SlackServer, slack_server

SENTINEL = Path(sys.executable).parent / "sentinel"
ENV = {"SLACK_BOT_TOKEN": TOKEN}


@pytest.fixture
def server() -> Iterator[SlackServer]:
    with slack_server() as s:
        yield s


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


def sender(server: SlackServer, store: Store, **config: Any) -> SlackSender:
    notifier = SlackNotifier(
        type="slack",
        channel=CHANNEL,
        token_env="SLACK_BOT_TOKEN",
        api_url=server.api_url,
        **config,
    )
    return SlackSender("team", notifier, store, environ=ENV, clock=lambda: 0.0)


def kill(i: int, target: str = "c") -> dict[str, Any]:
    return {
        "kind": "kill",
        "rule": "report",
        "target": {"id": f"{target}{i}", "name": f"{target}{i}", "runtime": "docker"},
        "reason": "killed",
        "evidence": {"condition": "oom_killed", "killed_at": 1000.0 + i},
        "host": "node",
        "at": 1000.0 + i,
        "record": {"pid": 100 + i, "comm": "leaker", "global": False, "anon_rss_kb": 60000},
    }


def test_a_kill_is_sent_once(server: SlackServer, store: Store) -> None:
    senders = {"team": sender(server, store)}
    store.enqueue(dedupe_key="k1", notifier="team", payload=kill(1), now=1000.0)
    assert deliver(store, senders, 1000.0) == (1, 0)
    assert deliver(store, senders, 1001.0) == (0, 0)
    (message,) = server.messages
    assert "c1" in message.text
    assert store.pending_count() == 0


def test_outage_keeps_the_notification_until_slack_is_back(
    server: SlackServer, tmp_path: Path
) -> None:
    store = Store(tmp_path / "state.db")
    store.enqueue(dedupe_key="k1", notifier="team", payload=kill(1), now=1000.0)
    server.down()
    assert deliver(store, {"team": sender(server, store)}, 1000.0) == (0, 1)
    store.close()  # sentinel restarts during the outage
    store = Store(tmp_path / "state.db")
    assert store.pending_count() == 1
    server.up()
    senders = {"team": sender(server, store)}
    assert deliver(store, senders, 1000.5) == (0, 0)  # backoff: not due yet
    assert deliver(store, senders, 1010.0) == (1, 0)
    assert deliver(store, senders, 2000.0) == (0, 0)
    assert len(server.messages) == 1
    store.close()


def test_429_is_honoured(server: SlackServer, store: Store) -> None:
    senders = {"team": sender(server, store)}
    store.enqueue(dedupe_key="k1", notifier="team", payload=kill(1), now=1000.0)
    server.fail_next(429, retry_after=30)
    assert deliver(store, senders, 1000.0) == (0, 1)
    assert deliver(store, senders, 1029.0) == (0, 0)  # Retry-After not over
    assert len(server.requests) == 1
    assert deliver(store, senders, 1030.0) == (1, 0)
    assert len(server.messages) == 1


def test_a_storm_is_one_grouped_message_after_the_first_kill(
    server: SlackServer, store: Store
) -> None:
    senders = {"team": sender(server, store)}
    store.enqueue(dedupe_key="k0", notifier="team", payload=kill(0), now=1000.0)
    assert deliver(store, senders, 1000.0) == (1, 0)  # the first: at once, alone
    t = 1000.0
    for i in range(1, 10):
        t += 0.4
        store.enqueue(dedupe_key=f"k{i}", notifier="team", payload=kill(i), now=t)
        assert deliver(store, senders, t) == (0, 0)  # held while the storm goes on
    assert deliver(store, senders, t + STORM_QUIET) == (9, 0)
    first, storm = server.wait_messages(2)
    assert "c0" in first.text
    assert storm.text.startswith("OOM kill storm on node: 10 kills")
    body = str(storm.blocks)
    assert all(f"c{i}" in body for i in range(10))
    assert deliver(store, senders, t + 100) == (0, 0)
    assert len(server.messages) == 2


def test_kills_held_in_an_outage_go_out_as_one_storm(server: SlackServer, store: Store) -> None:
    senders = {"team": sender(server, store)}
    for i in range(5):
        store.enqueue(dedupe_key=f"k{i}", notifier="team", payload=kill(i), now=1000.0 + i)
    assert deliver(store, senders, 1100.0) == (5, 0)
    (message,) = server.messages
    assert "5 kills" in message.text


def test_a_failed_storm_is_retried_whole(server: SlackServer, store: Store) -> None:
    senders = {"team": sender(server, store)}
    for i in range(3):
        store.enqueue(dedupe_key=f"k{i}", notifier="team", payload=kill(i), now=1000.0)
    server.fail_next(503)
    assert deliver(store, senders, 1010.0) == (0, 3)
    assert deliver(store, senders, 1030.0) == (3, 0)
    (message,) = server.messages
    assert "3 kills" in message.text


def test_thread_per_target(server: SlackServer, store: Store) -> None:
    senders = {"team": sender(server, store, thread_per_target=True)}
    action = {**kill(1), "kind": "action", "reason": "projected OOM kill in 5m"}
    store.enqueue(dedupe_key="a", notifier="team", payload=action, now=1000.0)
    deliver(store, senders, 1000.0)
    store.enqueue(dedupe_key="b", notifier="team", payload=kill(1), now=1100.0)
    deliver(store, senders, 1100.0)
    store.enqueue(dedupe_key="c", notifier="team", payload=kill(2), now=1300.0)
    deliver(store, senders, 1300.0)
    first, reply, other = server.wait_messages(3)
    assert first.thread_ts is None
    assert reply.thread_ts == first.ts
    assert reply.reply_broadcast
    assert other.thread_ts is None
    assert store.thread("team", CHANNEL, "c1") == first.ts


def test_a_bad_token_keeps_the_item_and_never_shows_the_token(
    server: SlackServer, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.token = "xoxb-another-token"
    senders = {"team": sender(server, store)}
    store.enqueue(dedupe_key="k1", notifier="team", payload=kill(1), now=1000.0)
    assert deliver(store, senders, 1000.0) == (0, 1)
    assert store.pending_count() == 1
    assert "invalid_auth" in caplog.text
    assert TOKEN not in caplog.text
    store.close()
    for path in store.path.parent.glob("state.db*"):
        assert TOKEN.encode() not in path.read_bytes()


def test_missing_token_is_reported_by_name(server: SlackServer, store: Store) -> None:
    s = sender(server, store)
    s.environ = {}
    store.enqueue(dedupe_key="k1", notifier="team", payload=kill(1), now=1000.0)
    assert deliver(store, {"team": s}, 1000.0) == (0, 1)
    assert "SLACK_BOT_TOKEN is not set" in (store.due(10_000.0)[0].last_error or "")


def test_sentinel_notify_test(server: SlackServer, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "notifiers:\n"
        "  team:\n"
        "    type: slack\n"
        f"    channel: {CHANNEL}\n"
        "    token_env: SLACK_BOT_TOKEN\n"
        f"    api_url: {server.api_url}\n"
    )
    env = {"PATH": "/usr/bin:/bin", "SLACK_BOT_TOKEN": TOKEN}
    ok = subprocess.run(
        [str(SENTINEL), "notify", "--test", "team", "-c", str(policy)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "test message" in server.messages[-1].text
    bad = subprocess.run(
        [str(SENTINEL), "notify", "--test", "team", "-c", str(policy)],
        capture_output=True,
        text=True,
        env={**env, "SLACK_BOT_TOKEN": "xoxb-1-2-wrong"},
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "invalid_auth" in bad.stderr
    assert "xoxb-1-2-wrong" not in bad.stderr
    missing = subprocess.run(
        [str(SENTINEL), "notify", "--test", "nope", "-c", str(policy)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2
    assert "no notifier named 'nope'" in missing.stderr
