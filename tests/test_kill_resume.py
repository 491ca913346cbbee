"""A crash between storing a kill and deciding on it loses no notification.

The kill is stored first (with the kmsg position, in one transaction); the rules decide
on it after. A kill stays ``unhandled`` in the state until the evaluation has carried out
what it decided (notifications queued); a daemon that starts on a state with unhandled
kills decides on them then. Real SQLite state, a real daemon (built, its evaluation and
start driven by the test; no thread is needed for the check), no root.
"""

from __future__ import annotations

from pathlib import Path

from sentinel.model import KillRecord, Target
from sentinel.policy.load import load_policy
from sentinel.runtime.daemon import Daemon, Options
from sentinel.store import Store

POLICY = """
version: 1
notifiers:
  ops: {type: log}
rules:
  - name: report-kills
    when: {oom_killed: true}
    do:
      - notify: ops
"""
NOW = 1_760_000_000.0


def daemon(tmp_path: Path, policy: str = POLICY) -> Daemon:
    empty = tmp_path / "cgroup"  # not the host's tree
    (empty / "memory").mkdir(parents=True, exist_ok=True)
    (empty / "memory" / "memory.usage_in_bytes").write_text("0\n")
    options = Options(
        mode="sidecar", state=str(tmp_path / "state.db"), listen="", cgroup_root=empty
    )
    return Daemon(load_policy(policy, "policy.yaml"), options)


def record(pid: int) -> KillRecord:
    return KillRecord(
        pid=pid, comm="scheduler", anon_rss_kb=900_000, global_=True,
        constraint="CONSTRAINT_NONE", task_memcg="/docker/abc", kmsg_seq=pid,
    )  # fmt: skip


def outbox(path: Path) -> list[int]:
    store = Store.open_read_only(path)
    try:
        return [int(item.payload["record"]["pid"]) for item in store.due(float("inf"))]
    finally:
        store.close()


def test_a_kill_stored_before_a_crash_is_decided_on_at_the_next_start(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    # The run that crashed: the kill was stored (unhandled), the rules never ran.
    crashed = Store(state)
    target = Target(id="abc", name="scheduler-1", runtime="docker", image="acme/s:1")
    kill_id = crashed.add_kill(
        record(4242), now=NOW, boot_id="b", target_id=target.id, target_name=target.name,
        target=target.to_dict(), source="kmsg", handled=False,
    )  # fmt: skip
    assert kill_id is not None
    # A kill the same run did decide on is not repeated.
    crashed.add_kill(record(4343), now=NOW, boot_id="b", target=target.to_dict(), handled=True)
    crashed.close()
    assert outbox(state) == []

    d = daemon(tmp_path)
    try:
        d._resume_kills()
        d.evaluate_now()
        assert outbox(state) == [4242]
        assert d.store.unhandled_kills() == []
        (note,) = d.store.due(float("inf"))
        assert note.payload["target"]["name"] == "scheduler-1"
        assert note.payload["rule"] == "report-kills"
    finally:
        d.store.close()

    # And once handled, a start after that repeats nothing.
    again = daemon(tmp_path)
    try:
        again._resume_kills()
        again.evaluate_now()
        assert outbox(state) == [4242]
    finally:
        again.store.close()


def test_a_live_kill_stays_unhandled_until_the_rules_decided(tmp_path: Path) -> None:
    d = daemon(tmp_path)
    try:
        d.on_kill(record(5151))
        (pending,) = d.store.unhandled_kills()
        assert pending.record.pid == 5151
        d.evaluate_now()
        assert d.store.unhandled_kills() == []
        assert outbox(tmp_path / "state.db") == [5151]
    finally:
        d.store.close()


RESTART_POLICY = """
version: 1
notifiers:
  ops: {type: log}
rules:
  - name: restart-app
    when: {memory_above: {bytes: 1Mi, for: 1s}}
    do:
      - restart: {grace_period: 5s}
      - notify: ops
"""


def test_a_restart_done_just_before_sentinel_died_is_still_told(tmp_path: Path) -> None:
    # In sidecar mode the app's exit ends sentinel too: sometimes after the restart's
    # outcome is written but before the firing's notification is queued.
    state = tmp_path / "state.db"
    store = Store(state)
    app = Target(id="pid:7", name="app", runtime="process", pid=7, started_at=NOW - 60)
    evidence = {"target": app.to_dict(), "reason": "memory above 1 MiB for 1s", "evidence": {}}
    unreported = store.add_decision(
        at=NOW, rule="restart-app", target_id=app.id, target_name=app.name, action="restart",
        dry_run=False, outcome="done", evidence=evidence,
    )  # fmt: skip
    # an earlier restart whose notification was queued: not told again
    store.add_decision(
        at=NOW - 600, rule="restart-app", target_id=app.id, target_name=app.name,
        action="restart", dry_run=False, outcome="done", evidence=evidence,
    )  # fmt: skip
    store.add_decision(
        at=NOW - 600, rule="restart-app", target_id=app.id, target_name=app.name,
        action="notify", dry_run=False, outcome="sent", evidence=evidence,
    )  # fmt: skip
    store.close()
    for _ in range(2):  # a second start repeats nothing
        d = daemon(tmp_path, RESTART_POLICY)
        try:
            d.clock = lambda: NOW + 30
            d._resume_interrupted([])
            items = d.store.due(float("inf"))
        finally:
            d.store.close()
        assert [i.dedupe_key for i in items] == [f"decision:{unreported}:ops"]
        (item,) = items
        assert item.payload["after"]["interrupted"] is False
        assert "right after restarting" in item.payload["after"]["note"]
        assert item.payload["target"]["name"] == "app"
