"""Retention and bounded history on a real state file: what pruning removes and keeps, the
settings (YAML, the policy reference), and the truth that matters: cooldowns and restart
budgets read only their windows, yet see every action inside them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from policy_helpers import NOW, leaking, policy, target
from sentinel.model import KillRecord
from sentinel.policy import State, evaluate
from sentinel.policy.docs import readme_block
from sentinel.policy.errors import PolicyError
from sentinel.policy.state import lookback
from sentinel.runtime import retention
from sentinel.runtime.daemon import COUNTED_OUTCOMES
from sentinel.store import Store

DAY = 86400.0
REPO = Path(__file__).resolve().parents[1]

POLICY = """
version: 1
settings:
  retention:
    decisions: 30d
    notifications: 2d
    gone_targets: 1d
    kills: 60d
    every: 10m
notifiers:
  ops: {type: log}
rules:
  - name: tell
    when: {oom_killed: true}
    do:
      - notify: ops
"""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.db")


def decision(store: Store, at: float, *, rule: str = "tell", action: str = "notify",
             target_id: str = "c1", outcome: str = "done") -> int:  # fmt: skip
    return store.add_decision(
        at=at, rule=rule, target_id=target_id, action=action, dry_run=False, outcome=outcome,
        evidence={"at": at},
    )  # fmt: skip


def sent(store: Store, key: str, created: float, sent_at: float | None) -> int:
    item = store.enqueue(dedupe_key=key, notifier="ops", payload={"k": key}, now=created)
    assert item is not None
    if sent_at is not None:
        store.mark_sent(item, sent_at)
    return item


def kill(store: Store, pid: int, at: float) -> None:
    store.add_kill(KillRecord(pid=pid, comm="java", kmsg_seq=pid), now=at, boot_id="b")


# -- the settings -------------------------------------------------------------------------------


def test_retention_is_configurable_from_yaml() -> None:
    keep = policy(POLICY).settings.retention
    assert (keep.decisions, keep.notifications, keep.gone_targets, keep.kills, keep.every) == (
        30 * DAY, 2 * DAY, 1 * DAY, 60 * DAY, 600.0,
    )  # fmt: skip


def test_retention_defaults() -> None:
    keep = policy("version: 1\nrules: []\n").settings.retention
    assert (keep.decisions, keep.notifications, keep.gone_targets, keep.kills, keep.every) == (
        90 * DAY, 7 * DAY, 7 * DAY, 365 * DAY, 3600.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("setting", "problem"),
    [("decisions: 0s", "decisions"), ("kills: -1d", "kills"), ("forever: 1d", "forever")],
)
def test_a_bad_retention_setting_names_its_key(setting: str, problem: str) -> None:
    text = f"version: 1\nsettings:\n  retention:\n    {setting}\nrules: []\n"
    with pytest.raises(PolicyError) as e:
        policy(text)
    assert "test.yaml:4" in str(e.value)
    assert f"settings.retention.{problem}" in str(e.value)


def test_the_retention_settings_are_in_the_policy_reference() -> None:
    block = readme_block()
    readme = (REPO / "README.md").read_text()
    for key in ("decisions", "notifications", "gone_targets", "kills", "every"):
        row = f"| `settings.retention.{key}` | duration |"
        assert row in block
        assert row in readme


# -- what pruning removes ----------------------------------------------------------------------


def test_prune_removes_what_is_past_each_window_and_keeps_the_rest(store: Store) -> None:
    p = policy(POLICY)
    now = NOW
    # decisions: 30d
    old_decision = decision(store, now - 31 * DAY)
    kept_decision = decision(store, now - 29 * DAY)
    # notifications: 2d after they were accepted; never unsent ones
    sent(store, "accepted-3d-ago", now - 4 * DAY, now - 3 * DAY)
    sent(store, "accepted-1d-ago", now - 4 * DAY, now - 1 * DAY)
    sent(store, "never-accepted", now - 40 * DAY, None)
    # kills: 60d
    kill(store, 1, now - 61 * DAY)
    kill(store, 2, now - 59 * DAY)
    # samples: of targets not sampled for 1d; a watched target keeps even old samples
    store.add_samples([("gone", now - 2 * DAY - i, 100, 200) for i in range(5)])
    store.add_samples([("alive", now - 30 * DAY, 100, 200), ("alive", now - 60, 120, 200)])
    store.set_thread("slack", "C1", "gone", "1.1", now - 3 * DAY)
    store.set_thread("slack", "C1", "alive", "2.2", now - 3 * DAY)
    decision(store, now, rule="newest")  # the newest decision is always kept anyway

    pruned = retention.prune(store, p, now)

    assert (pruned.decisions, pruned.notifications, pruned.kills) == (1, 1, 1)
    assert (pruned.samples, pruned.threads) == (5, 1)
    assert [d.id for d in store.decisions()][:1] == [kept_decision]
    assert old_decision not in {d.id for d in store.decisions()}
    keys = {i.dedupe_key for i in store.sent_since("ops", 0.0)}
    assert keys == {"accepted-1d-ago"}
    assert [i.dedupe_key for i in store.due(now)] == ["never-accepted"]
    assert [k.record.pid for k in store.kills()] == [2]
    assert store.samples("gone") == []
    assert len(store.samples("alive")) == 2
    assert store.thread("slack", "C1", "gone") is None
    assert store.thread("slack", "C1", "alive") == "2.2"
    # and a second prune finds nothing more
    assert retention.prune(store, p, now).total == 0


def test_an_unsent_notification_is_never_pruned_however_old(store: Store) -> None:
    item = sent(store, "stuck", NOW - 400 * DAY, None)
    store.mark_failed(item, error="HTTP 403", retry_at=NOW + 300)
    assert retention.prune(store, policy(POLICY), NOW).notifications == 0
    (left,) = store.due(NOW + 300)
    assert (left.dedupe_key, left.attempts) == ("stuck", 1)


def test_the_last_hour_of_accepted_notifications_is_kept(store: Store) -> None:
    short = POLICY.replace("notifications: 2d", "notifications: 1m")
    sent(store, "storm-reads-these", NOW - 120, NOW - 120)
    sent(store, "two-hours-ago", NOW - 7200, NOW - 7200)
    assert retention.prune(store, policy(short), NOW).notifications == 1
    assert [i.dedupe_key for i in store.sent_since("ops", 0.0)] == ["storm-reads-these"]


def test_decisions_within_a_budget_window_outlive_a_shorter_retention(store: Store) -> None:
    text = BUDGET_POLICY.replace("retention: {}", "retention: {decisions: 7d}")
    p = policy(text)
    assert lookback(p).longest == 14 * DAY
    eight = decision(store, NOW - 8 * DAY, rule="restart-leak", action="restart")
    decision(store, NOW - 15 * DAY, rule="restart-leak", action="restart")
    decision(store, NOW, rule="other")
    assert retention.prune(store, p, NOW).decisions == 1
    assert eight in {d.id for d in store.decisions()}


def test_prune_works_in_small_batches(store: Store) -> None:
    for i in range(25):
        decision(store, NOW - 100 * DAY + i)
    decision(store, NOW)
    pruned = store.prune(
        decisions_before=NOW - DAY, sent_before=0.0, kills_before=0.0, gone_before=0.0, batch=4
    )
    assert pruned.decisions == 25
    assert store.counts()["decisions"] == 1


def test_the_retention_job_logs_a_failure_and_keeps_going(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    run = retention.job(store, policy(POLICY), lambda: NOW)
    decision(store, NOW - 100 * DAY)
    decision(store, NOW)
    run()
    assert store.counts()["decisions"] == 1
    store.close()
    with caplog.at_level(logging.WARNING, logger="sentinel.retention"):
        run()  # a closed state: one warning, no exception
    assert any("pruning the state failed" in r.getMessage() for r in caplog.records)


# -- the bounded history tells the truth --------------------------------------------------------

BUDGET_POLICY = """
version: 1
settings:
  retention: {}
notifiers:
  ops: {type: log}
rules:
  - name: restart-leak
    when: {projected_oom_within: 15m}
    do:
      - restart: {grace_period: 5s}
    cooldown: 10m
    max_restarts: {count: 1, per: 14d}
"""


def decide(store: Store, text: str) -> list[tuple[str, str]]:
    """The daemon's evaluation: the state's bounded history, then the pure decision."""
    p = policy(text)
    history = store.history(lookback(p), NOW, outcomes=COUNTED_OUTCOMES)
    app = target("app")
    state = State(targets=(leaking(app, 60.0),), history=history)
    return [(d.rule, d.kind) for d in evaluate(p, state, [], NOW)]


@pytest.mark.parametrize("outcome", ["done", "interrupted", "failed", "pending"])
def test_a_restart_8_days_ago_still_counts_in_a_14_day_budget(store: Store, outcome: str) -> None:
    decision(store, NOW - 8 * DAY, rule="restart-leak", action="restart",
             target_id=target("app").id, outcome=outcome)  # fmt: skip
    decided = decide(store, BUDGET_POLICY)
    assert ("restart-leak", "restart") not in decided
    assert decided == [("restart-leak", "escalate")]  # the budget is used up: escalate once


def test_a_restart_15_days_ago_is_out_of_a_14_day_budget(store: Store) -> None:
    decision(store, NOW - 15 * DAY, rule="restart-leak", action="restart",
             target_id=target("app").id)  # fmt: skip
    assert decide(store, BUDGET_POLICY) == [("restart-leak", "restart")]


def test_a_dropped_restart_does_not_count(store: Store) -> None:
    decision(store, NOW - DAY, rule="restart-leak", action="restart",
             target_id=target("app").id, outcome="dropped")  # fmt: skip
    assert decide(store, BUDGET_POLICY) == [("restart-leak", "restart")]


def test_the_history_query_reads_only_the_longest_window(store: Store) -> None:
    app = target("app").id
    for days in (400, 200, 30, 15, 14.5):
        decision(store, NOW - days * DAY, rule="restart-leak", action="restart", target_id=app)
    eight = NOW - 8 * DAY
    decision(store, eight, rule="restart-leak", action="restart", target_id=app)
    decision(store, NOW - 5 * 60, rule="restart-leak", action="notify", target_id=app)
    decision(store, NOW - 20 * 60, rule="restart-leak", action="notify", target_id=app)
    p = policy(BUDGET_POLICY)
    window = lookback(p)
    assert window.longest == 14 * DAY
    records = store.history(window, NOW, outcomes=COUNTED_OUTCOMES).records
    # the restart within 14 days (budget) and the notify within 10 minutes (cooldown)
    assert sorted((r.action, r.at) for r in records) == [
        ("notify", NOW - 5 * 60),
        ("restart", eight),
    ]
    assert min(r.at for r in records) >= NOW - window.longest


def test_a_cooldown_is_answered_from_the_state(store: Store) -> None:
    decision(store, NOW - 5 * 60, rule="restart-leak", action="restart",
             target_id=target("app").id)  # fmt: skip
    text = BUDGET_POLICY.replace("count: 1", "count: 5")
    assert decide(store, text) == []  # within the 10 minute cooldown
    store.set_outcome(store.decisions()[-1].id, "dropped")
    assert decide(store, text) == [("restart-leak", "restart")]
