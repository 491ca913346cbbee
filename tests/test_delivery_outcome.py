"""A notify decision says whether it was told: ``queued`` until every notifier accepted
its notification, then ``sent``; ``failed`` when a notifier refused it for good. A real
state file, the daemon's own evaluation and a real webhook receiver on 127.0.0.1."""

from __future__ import annotations

import io
import json
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sentinel.model import MemorySample, Target
from sentinel.notifiers.delivery import BACKOFF_MAX, STORM_QUIET, deliver
from sentinel.notifiers.log import LogSender
from sentinel.notifiers.webhook import WebhookSender
from sentinel.policy import load_policy
from sentinel.policy.model import WebhookNotifier
from sentinel.runtime.daemon import Daemon, Options, Snapshot
from sentinel.runtime.monitor import Watched
from sentinel.store import Store, decision_key, decision_of

NOW = 1_800_000_000.0


class Receiver:
    """A webhook receiver: answers each POST with the next status given (200 when none
    is), and keeps every body it got."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses: queue.SimpleQueue[int] = queue.SimpleQueue()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.bodies.append(json.loads(body))
                try:
                    status = receiver.statuses.get_nowait()
                except queue.Empty:
                    status = 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def hook(receiver: Receiver, name: str = "hook") -> WebhookSender:
    return WebhookSender(name, WebhookNotifier.model_validate({"type": "webhook",
                                                               "url": receiver.url}))  # fmt: skip


def notify_decision(store: Store, *, action: str = "notify", outcome: str = "queued") -> int:
    return store.add_decision(
        at=NOW, rule="tell", target_id="c1", action=action, dry_run=False, outcome=outcome,
        evidence={},
    )  # fmt: skip


def outcome(store: Store, decision_id: int) -> str:
    (d,) = [d for d in store.decisions() if d.id == decision_id]
    return d.outcome


# -- through the daemon -----------------------------------------------------------------------


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def daemon(tmp_path: Path, receiver: Receiver) -> Iterator[Daemon]:
    """The daemon, not started (no thread runs): the test drives its evaluation and its
    delivery, with a rule that notifies the webhook of every target."""
    policy = load_policy(
        f"""
version: 1
notifiers:
  hook: {{type: webhook, url: "{receiver.url}"}}
rules:
  - name: tell
    do:
      - notify: hook
""",
        "policy.yaml",
    )
    empty = tmp_path / "cgroup"  # not the host's tree: this test needs no cgroup (nor root)
    (empty / "memory").mkdir(parents=True)  # a v1 memory hierarchy with nothing in it
    (empty / "memory" / "memory.usage_in_bytes").write_text("0\n")
    options = Options(
        mode="sidecar", state=str(tmp_path / "state.db"), listen="", cgroup_root=empty
    )
    d = Daemon(policy, options)
    d.clock = Clock(NOW)
    app = Target(id="pid:4242", name="app", runtime="process", started_at=NOW - 3600)
    sample = MemorySample(
        t=NOW, cgroup="/app", usage_bytes=100 << 20, working_set_bytes=100 << 20,
        anon_bytes=None, cache_bytes=None, limit_bytes=None, effective_limit_bytes=None,
        effective_limit_cgroup=None, limit_hits=None, oom=None, oom_kill=None,
    )  # fmt: skip
    watched = Watched(
        target=app, sample=sample, forecast=None, constraint="host", constraint_cgroup=None,
        limit_bytes=None, headroom_bytes=None, own_forecast=None,
    )  # fmt: skip
    d.snapshot = Snapshot(watched={app.id: watched})
    try:
        yield d
    finally:
        d.monitor.close()
        d.store.close()


def test_the_daemons_notify_decision_is_sent_once_the_webhook_accepted_it(
    daemon: Daemon, receiver: Receiver
) -> None:
    daemon.evaluate_now()
    (d,) = daemon.store.decisions()
    assert (d.rule, d.action, d.outcome) == ("tell", "notify", "queued")
    assert receiver.bodies == []
    daemon.deliver()
    (body,) = receiver.bodies
    assert (body["notifier"], body["rule"], body["target"]["name"]) == ("hook", "tell", "app")
    (d,) = daemon.store.decisions()
    assert d.outcome == "sent"
    assert daemon.store.pending_count() == 0


def test_the_daemons_decision_stays_queued_while_the_webhook_is_down(
    daemon: Daemon, receiver: Receiver
) -> None:
    receiver.statuses.put(503)
    daemon.evaluate_now()
    daemon.deliver()
    assert len(receiver.bodies) == 1
    assert [d.outcome for d in daemon.store.decisions()] == ["queued"]
    assert isinstance(daemon.clock, Clock)
    daemon.clock.t = NOW + 60  # after the backoff: tried again, accepted
    daemon.deliver()
    assert len(receiver.bodies) == 2
    assert [d.outcome for d in daemon.store.decisions()] == ["sent"]


def test_a_refused_notification_fails_its_decision_until_it_is_delivered(
    daemon: Daemon, receiver: Receiver
) -> None:
    receiver.statuses.put(403)
    daemon.evaluate_now()
    daemon.deliver()
    assert [d.outcome for d in daemon.store.decisions()] == ["failed"]
    (item,) = daemon.store.due(NOW + BACKOFF_MAX)  # kept, retried at the slowest pace
    assert (item.attempts, item.dedupe_key) == (1, decision_key(1, "hook"))
    assert "HTTP 403" in (item.last_error or "")
    assert isinstance(daemon.clock, Clock)
    daemon.clock.t = NOW + BACKOFF_MAX  # the receiver was fixed meanwhile
    daemon.deliver()
    assert len(receiver.bodies) == 2
    assert [d.outcome for d in daemon.store.decisions()] == ["sent"]


# -- the store's part ---------------------------------------------------------------------------


def test_a_decision_told_to_two_notifiers_is_sent_when_both_accepted(
    tmp_path: Path, receiver: Receiver
) -> None:
    store = Store(tmp_path / "state.db")
    did = notify_decision(store, action="escalate")
    for name in ("hook", "log"):
        store.enqueue(dedupe_key=decision_key(did, name), notifier=name, payload={"x": 1}, now=NOW)
    out = io.StringIO()
    senders = {"hook": hook(receiver), "log": LogSender("log", out)}
    receiver.statuses.put(500)
    assert deliver(store, senders, NOW) == (1, 1)
    assert json.loads(out.getvalue())["notifier"] == "log"
    assert outcome(store, did) == "queued"  # one of two accepted
    assert deliver(store, senders, NOW + 60) == (1, 0)
    assert outcome(store, did) == "sent"


def test_delivery_settles_only_its_own_decision(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    ids = [notify_decision(store) for _ in range(12)]
    one, twelve = ids[0], ids[11]
    assert (one, twelve) == (1, 12)  # keys "decision:1:..." and "decision:12:..."
    store.enqueue(dedupe_key=decision_key(one, "log"), notifier="log", payload={}, now=NOW)
    store.enqueue(dedupe_key=decision_key(one, "other"), notifier="other", payload={}, now=NOW)
    store.enqueue(dedupe_key=decision_key(twelve, "log"), notifier="log", payload={}, now=NOW)
    restart = notify_decision(store, action="restart", outcome="interrupted")
    store.enqueue(dedupe_key=decision_key(restart, "log"), notifier="log", payload={}, now=NOW)
    store.enqueue(dedupe_key="kill:7", notifier="log", payload={}, now=NOW)
    senders = {"log": LogSender("log", io.StringIO())}  # "other" is not configured

    assert deliver(store, senders, NOW) == (4, 1)

    assert outcome(store, twelve) == "sent"
    assert outcome(store, one) == "failed"  # its "other" notification has no notifier
    assert outcome(store, restart) == "interrupted"  # a restart's outcome is its own
    assert {outcome(store, i) for i in ids[1:11]} == {"queued"}  # nothing was sent for these


def test_a_storm_settles_every_decision_it_carries(tmp_path: Path) -> None:
    class Grouping(LogSender):
        storm_window = 60.0

    store = Store(tmp_path / "state.db")
    ids = [notify_decision(store) for _ in range(3)]
    for did in ids:
        store.enqueue(dedupe_key=decision_key(did, "team"), notifier="team",
                      payload={"kind": "kill", "did": did}, now=NOW)  # fmt: skip
    out = io.StringIO()
    senders = {"team": Grouping("team", out)}
    assert deliver(store, senders, NOW) == (0, 0)  # held: a storm gathers
    assert {outcome(store, i) for i in ids} == {"queued"}
    assert deliver(store, senders, NOW + STORM_QUIET) == (3, 0)
    storm = json.loads(out.getvalue())
    assert (storm["kind"], len(storm["kills"])) == ("storm", 3)
    assert {outcome(store, i) for i in ids} == {"sent"}


def test_a_dry_run_or_finished_decision_is_left_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    dry = notify_decision(store, outcome="dry_run")
    store.enqueue(dedupe_key=decision_key(dry, "log"), notifier="log", payload={}, now=NOW)
    deliver(store, {"log": LogSender("log", io.StringIO())}, NOW)
    assert outcome(store, dry) == "dry_run"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("decision:12:hook", 12),
        ("decision:7:a.b-c_d", 7),
        ("kill:12:hook", None),
        ("decision:x:hook", None),
        ("decision:12", None),
        ("decision:\u00b2:hook", None),
    ],
)
def test_decision_of_reads_the_daemons_keys(key: str, expected: int | None) -> None:
    assert decision_of(key) == expected
    if expected is not None:
        assert decision_key(expected, key.split(":", 2)[2]) == key
