"""evaluate(): the pure decision, with time injected (no sleeps, no I/O)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

from policy_helpers import NOW, MiB, kill, kinds, leaking, memory, policy, run, target
from sentinel.policy import Escalation, History, TargetState, still_holds
from sentinel.policy.model import RestartAction

EXAMPLE = policy((Path(__file__).parent / "data" / "policies" / "example.yaml").read_text())
MIN = 60.0
HOUR = 3600.0


# --- the example policy, as its comments say ---------------------------------------------


def test_example_restarts_the_leaking_scheduler_and_notifies() -> None:
    decisions = run(EXAMPLE, [leaking(target("scheduler-1"), 10 * MIN)])
    assert kinds(decisions) == [
        ("restart-leaking-scheduler", "scheduler-1", "restart"),
        ("restart-leaking-scheduler", "scheduler-1", "notify"),
    ]
    restart, notify = decisions
    assert isinstance(restart.action, RestartAction)
    assert restart.action.restart.grace_period == 30
    assert restart.disruptive
    assert not notify.disruptive
    assert restart.dry_run is False
    assert restart.at == NOW
    assert restart.evidence["projected_oom_in_s"] == 600
    assert restart.evidence["constraint"] == "cgroup"
    assert "kills it in 10m" in restart.reason


def test_example_leaves_alone_what_it_does_not_select_or_is_not_urgent() -> None:
    targets = [
        leaking(target("scheduler-2"), 20 * MIN),  # not within 15m
        leaking(target("scheduler-3"), None),  # no kill projected
        leaking(target("web-1"), 60.0),  # name does not match
        leaking(target("scheduler-4", labels={"team": "web"}), 60.0),  # label differs
        leaking(target("scheduler-5", labels={}), 60.0),  # label missing
    ]
    assert run(EXAMPLE, targets) == []


def test_example_protects_postgres_once_per_start() -> None:
    pg = target("db", image="postgres:16", labels={})
    decisions = run(EXAMPLE, [TargetState(pg)])
    assert kinds(decisions) == [("protect-database", "db", "oom_score_adj")]
    assert decisions[0].params() == {"value": -900}
    history = History().with_decisions(decisions)
    # applied: nothing new a minute later
    assert run(EXAMPLE, [TargetState(pg)], now=NOW + MIN, history=history) == []
    # the container restarted: applied again at once
    restarted = target("db", image="postgres:16", labels={}, started_at=NOW + 30)
    again = run(EXAMPLE, [TargetState(restarted)], now=NOW + MIN, history=history)
    assert kinds(again) == [("protect-database", "db", "oom_score_adj")]
    # other images are not protected
    assert run(EXAMPLE, [TargetState(target("cache", image="redis:7"))]) == []


def test_example_reports_every_kill() -> None:
    web = target("web-1", labels={})
    events = [kill(web, at=NOW - 3), kill(web, at=NOW - 2, scope="host")]
    decisions = run(EXAMPLE, [], events)
    assert kinds(decisions) == [
        ("report-every-kill", "web-1", "notify"),
        ("report-every-kill", "web-1", "notify"),
    ]
    assert [d.evidence["scope"] for d in decisions] == ["cgroup", "host"]
    assert decisions[0].evidence["comm"] == "java"
    history = History().with_decisions(decisions)
    later = run(EXAMPLE, [], [kill(web, at=NOW + 1)], now=NOW + 2, history=history)
    assert kinds(later) == [("report-every-kill", "web-1", "notify")]


def test_example_cooldown_30m() -> None:
    s = target("scheduler-1")
    first = run(EXAMPLE, [leaking(s, 10 * MIN)])
    history = History().with_decisions(first)
    at = NOW + 10 * MIN
    assert run(EXAMPLE, [leaking(s, 5 * MIN, at=at)], now=at, history=history) == []
    at = NOW + 31 * MIN
    assert kinds(run(EXAMPLE, [leaking(s, 5 * MIN, at=at)], now=at, history=history)) == [
        ("restart-leaking-scheduler", "scheduler-1", "restart"),
        ("restart-leaking-scheduler", "scheduler-1", "notify"),
    ]


def test_example_max_restarts_then_escalate_once_and_stop_restarting() -> None:
    s = target("scheduler-1")
    history = History()
    seen: list[tuple[float, str]] = []
    at = NOW
    while at < NOW + 30 * HOUR:
        decisions = run(EXAMPLE, [leaking(s, 5 * MIN, at=at)], now=at, history=history)
        history = history.with_decisions(decisions)
        seen += [(d.at - NOW, d.kind) for d in decisions if d.kind != "notify"]
        at += 31 * MIN
    restarts = [t for t, kind in seen if kind == "restart"]
    escalations = [t for t, kind in seen if kind == "escalate"]
    # three restarts, 31 minutes apart (the cooldown), then one escalation
    assert restarts[:3] == [0, 31 * MIN, 62 * MIN]
    assert escalations[0] == 93 * MIN
    # nothing restarted within 24h of the escalation, and it escalates once in that window
    assert [t for t in restarts if t <= escalations[0] + 24 * HOUR] == restarts[:3]
    assert [t for t in escalations if t < escalations[0] + 24 * HOUR] == [93 * MIN]
    # after a full window it may restart again
    assert any(t > escalations[0] + 24 * HOUR for t in restarts)


def test_escalation_says_restarts_are_not_helping() -> None:
    s = target("scheduler-1")
    history = History()
    for t in (3 * HOUR, 2 * HOUR, HOUR):
        history = history.with_decisions(
            run(EXAMPLE, [leaking(s, 60, at=NOW - t)], now=NOW - t, history=history)
        )
    decisions = run(EXAMPLE, [leaking(s, 60)], history=history)
    assert kinds(decisions) == [
        ("restart-leaking-scheduler", "scheduler-1", "escalate"),
        ("restart-leaking-scheduler", "scheduler-1", "notify"),
    ]
    escalation = decisions[0]
    assert isinstance(escalation.action, Escalation)
    assert escalation.action.message == "restarts are not helping: likely leak"
    assert escalation.action.restarts == 3
    assert escalation.action.notifiers == ("ops-log",)
    assert escalation.reason.startswith("restarts are not helping: likely leak")
    assert escalation.evidence["restarts_at"] == [NOW - 3 * HOUR, NOW - 2 * HOUR, NOW - HOUR]
    assert "max_restarts used up" in decisions[1].evidence["notes"][0]
    history = history.with_decisions(decisions)
    after = run(EXAMPLE, [leaking(s, 60, at=NOW + HOUR)], now=NOW + HOUR, history=history)
    assert kinds(after) == [("restart-leaking-scheduler", "scheduler-1", "notify")]


# --- conditions --------------------------------------------------------------------------

LEAK = """\
notifiers: {ops: {type: log}}
rules:
  - name: leak
    when: {projected_oom_within: 15m}
    do: [{restart: {}}, {notify: ops}]
"""


def test_projected_oom_within_fires_and_does_not() -> None:
    p = policy(LEAK)
    assert kinds(run(p, [leaking(target("a"), 15 * MIN)])) == [
        ("leak", "a", "restart"),
        ("leak", "a", "notify"),
    ]
    assert run(p, [leaking(target("a"), 15 * MIN + 1)]) == []
    assert run(p, [leaking(target("a"), None)]) == []
    assert run(p, [TargetState(target("a"))]) == []


def test_projected_oom_counts_from_the_forecast_time_and_ignores_stale_forecasts() -> None:
    p = policy(LEAK)
    # made 10 s ago with 15m10s to go: 15m from now
    assert run(p, [leaking(target("a"), 15 * MIN + 10, at=NOW - 10)]) != []
    # made 20 s ago with 15m15s to go: 14m55s from now, but 20 s old is still fresh
    assert run(p, [leaking(target("a"), 15 * MIN + 5, at=NOW - 20)]) != []
    # older than 3 sample intervals (and 30 s): not used
    assert run(p, [leaking(target("a"), 60, at=NOW - 31)]) == []
    # made before the target's current start: not used
    young = target("a", started_at=NOW - 5)
    assert run(p, [leaking(young, 60, at=NOW - 10)]) == []


MEM = """\
notifiers: {ops: {type: log}}
rules:
  - name: hot
    when: {memory_above: {percent: 90, for: 5m}}
    do: [{notify: ops}]
  - name: big
    when: {memory_above: {bytes: 950Mi}}
    do: [{notify: ops}]
"""


def test_memory_above_percent_for_a_duration() -> None:
    p = policy(MEM)
    a = target("a")
    high = 910 * MiB  # 91% of 1000Mi, below 950Mi
    steady = [(NOW - 330 + 30 * i, high) for i in range(12)]  # 5m30s of readings, all above
    assert kinds(run(p, [memory(a, steady)])) == [("hot", "a", "notify")]
    short = [(NOW - 240 + 30 * i, high) for i in range(9)]  # only 4 minutes of history
    assert run(p, [memory(a, short)]) == []
    dip = [*steady[:8], (steady[8][0], 800 * MiB), *steady[9:]]  # a dip 90 s ago
    assert run(p, [memory(a, dip)]) == []
    exactly = [(t, 900 * MiB) for t, _ in steady]  # at the threshold is not above it
    assert run(p, [memory(a, exactly)]) == []
    unlimited = memory(a, steady, limit=None)
    assert run(p, [unlimited]) == []
    stale = [(t - 60, u) for t, u in steady]  # latest reading a minute old
    assert run(p, [memory(a, stale)]) == []


def test_memory_above_bytes_latest_reading_decides_without_for() -> None:
    p = policy(MEM)
    decisions = run(p, [memory(target("a"), [(NOW - 5, 100 * MiB), (NOW, 960 * MiB)])])
    assert kinds(decisions) == [("big", "a", "notify")]
    assert decisions[0].evidence["threshold_bytes"] == 950 * MiB
    assert decisions[0].evidence["usage_bytes"] == 960 * MiB


SCOPES = """\
notifiers: {ops: {type: log}}
rules:
  - {name: any, when: {oom_killed: true}, do: [{notify: ops}]}
  - {name: host, when: {oom_killed: {scope: host}}, do: [{notify: ops}]}
  - {name: cgroup, when: {oom_killed: {scope: cgroup}}, do: [{notify: ops}]}
"""


def test_oom_killed_scopes() -> None:
    p = policy(SCOPES)
    a = target("a")
    assert [d.rule for d in run(p, [], [kill(a, scope="host")])] == ["any", "host"]
    assert [d.rule for d in run(p, [], [kill(a, scope="cgroup")])] == ["any", "cgroup"]
    assert [d.rule for d in run(p, [], [kill(a, scope=None)])] == ["any"]


def test_oom_killed_reaches_kills_outside_any_container() -> None:
    victim = target("python", id="pid:4242", runtime="process", image=None, labels={})
    assert kinds(run(EXAMPLE, [], [kill(victim, scope="host")])) == [
        ("report-every-kill", "python", "notify")
    ]


def test_oom_killed_with_a_state_condition_needs_both() -> None:
    p = policy(
        "notifiers: {ops: {type: log}}\n"
        "rules:\n"
        "  - name: both\n"
        "    when: {oom_killed: true, memory_above: {bytes: 500Mi}}\n"
        "    do: [{notify: ops}]\n"
    )
    a = target("a")
    assert run(p, [memory(a, [(NOW, 600 * MiB)])], [kill(a)]) != []
    assert run(p, [memory(a, [(NOW, 400 * MiB)])], [kill(a)]) == []
    assert run(p, [], [kill(a)]) == []  # nothing known of its memory
    assert run(p, [memory(a, [(NOW, 600 * MiB)])]) == []  # no kill


# --- safety rails ------------------------------------------------------------------------


def test_cooldown_per_rule_and_target() -> None:
    p = policy(LEAK.replace("do:", "cooldown: 10m\n    do:"))
    a, b = target("a"), target("b")
    history = History().with_decisions(run(p, [leaking(a, 60)]))
    later = NOW + 5 * MIN
    decisions = run(
        p, [leaking(a, 60, at=later), leaking(b, 60, at=later)], now=later, history=history
    )
    assert {d.target.name for d in decisions} == {"b"}


def test_dry_run_global_marks_every_decision_not_executed() -> None:
    p = policy(LEAK + "settings: {dry_run: true}\n")
    decisions = run(p, [leaking(target("a"), 60)])
    assert [d.kind for d in decisions] == ["restart", "notify"]
    assert all(d.dry_run for d in decisions)
    assert all(d.to_dict()["dry_run"] is True for d in decisions)


def test_dry_run_per_rule_and_it_cannot_undo_the_global_one() -> None:
    text = (
        "notifiers: {ops: {type: log}}\n"
        "rules:\n"
        "  - {name: trial, when: {projected_oom_within: 15m}, do: [{restart: {}}], dry_run: true}\n"
        "  - {name: live, when: {projected_oom_within: 15m}, do: [{signal: USR2}],"
        " dry_run: false}\n"
    )
    decisions = run(policy(text), [leaking(target("a"), 60)])
    assert [(d.rule, d.dry_run) for d in decisions] == [("trial", True), ("live", False)]
    globally = policy(text + "settings: {dry_run: true}\n")
    assert all(d.dry_run for d in run(globally, [leaking(target("a"), 60)]))


def test_dry_run_decisions_still_advance_cooldowns_and_budgets() -> None:
    p = policy(
        LEAK.replace("do:", "cooldown: 0s\n    max_restarts: {count: 1, per: 1h}\n    do:")
        + "settings: {dry_run: true}\n"
    )
    a = target("a")
    history = History().with_decisions(run(p, [leaking(a, 60)]))
    second = run(p, [leaking(a, 60, at=NOW + 1)], now=NOW + 1, history=history)
    assert [d.kind for d in second] == ["escalate", "notify"]
    assert all(d.dry_run for d in second)


def test_min_uptime() -> None:
    p = policy(LEAK.replace("do:", "min_uptime: 10m\n    do:"))
    assert run(p, [leaking(target("young", started_at=NOW - 9 * MIN), 60)]) == []
    assert run(p, [leaking(target("unknown", started_at=None), 60)]) == []
    assert run(p, [leaking(target("old", started_at=NOW - 11 * MIN), 60)]) != []


def test_max_actions_per_minute_across_rules_and_targets() -> None:
    p = policy(LEAK + "settings: {max_actions_per_minute: 2}\n")
    targets = [leaking(target(f"t{i}"), 60 * (i + 1)) for i in range(4)]
    decisions = run(p, targets)
    # the two most urgent are restarted (with their notifications); the rest wait, whole
    assert kinds(decisions) == [
        ("leak", "t0", "restart"),
        ("leak", "t0", "notify"),
        ("leak", "t1", "restart"),
        ("leak", "t1", "notify"),
    ]
    history = History().with_decisions(decisions)
    at = NOW + 30
    assert run(p, [leaking(target("t2"), 60, at=at)], now=at, history=history) == []
    at = NOW + 61
    assert kinds(run(p, [leaking(target("t2"), 60, at=at)], now=at, history=history)) == [
        ("leak", "t2", "restart"),
        ("leak", "t2", "notify"),
    ]


def test_notifications_and_oom_score_adj_are_not_rate_limited() -> None:
    p = policy(
        "settings: {max_actions_per_minute: 1}\n"
        "notifiers: {ops: {type: log}}\n"
        "rules:\n"
        "  - {name: tell, when: {projected_oom_within: 15m}, do: [{notify: ops}]}\n"
        "  - {name: adj, do: [{oom_score_adj: 500}]}\n"
    )
    decisions = run(p, [leaking(target(f"t{i}"), 60) for i in range(5)])
    assert len(decisions) == 10


def test_exclude_removes_targets() -> None:
    p = policy(
        "notifiers: {ops: {type: log}}\n"
        "rules:\n"
        "  - name: all-but\n"
        "    match:\n"
        "      name: 'app-*'\n"
        "      exclude: [{name: 'app-canary*'}, {labels: {pinned: 'true'}}]\n"
        "    when: {projected_oom_within: 15m}\n"
        "    do: [{notify: ops}]\n"
    )
    targets = [
        leaking(target("app-1"), 60),
        leaking(target("app-canary-2"), 60),
        leaking(target("app-3", labels={"pinned": "true"}), 60),
        leaking(target("app-4", labels={"pinned": "false"}), 60),
    ]
    assert [d.target.name for d in run(p, targets)] == ["app-1", "app-4"]


def test_labels_all_must_match() -> None:
    p = policy(
        "notifiers: {ops: {type: log}}\n"
        "rules:\n"
        "  - {name: l, match: {labels: {team: data, env: prod}},"
        " when: {projected_oom_within: 15m}, do: [{notify: ops}]}\n"
    )
    targets = [
        leaking(target("both", labels={"team": "data", "env": "prod", "x": "y"}), 60),
        leaking(target("one", labels={"team": "data"}), 60),
        leaking(target("wrong", labels={"team": "data", "env": "dev"}), 60),
    ]
    assert [d.target.name for d in run(p, targets)] == ["both"]


def test_image_and_runtime_match() -> None:
    p = policy(
        "notifiers: {ops: {type: log}}\n"
        "rules:\n"
        "  - {name: pg, match: {image: 'postgres:*', runtime: docker}, do: [{notify: ops}]}\n"
    )
    images = {
        "postgres:16": True,
        "docker.io/library/postgres:15": True,
        "postgres": True,  # implicit :latest
        "ghcr.io/acme/postgres:16": False,
        "mypostgres:16": False,
    }
    for image, selected in images.items():
        t = TargetState(target("db", image=image))
        assert bool(run(p, [t])) is selected, image
    process = TargetState(target("db", image="postgres:16", runtime="process"))
    assert run(p, [process]) == []


def test_self_is_never_selected() -> None:
    me = target("sentinel", is_self=True, labels={})
    # a rule selecting everything, a kill of sentinel itself, a leak of sentinel itself
    assert run(EXAMPLE, [leaking(me, 60)], [kill(me)]) == []
    p = policy(
        "notifiers: {ops: {type: log}}\n"
        "rules:\n"
        "  - {name: all, do: [{oom_score_adj: 1000}]}\n"
        "  - {name: any-leak, when: {projected_oom_within: 1h}, do: [{restart: {}}]}\n"
    )
    assert run(p, [leaking(me, 60)], [kill(me)]) == []


def test_one_restart_per_target_per_evaluation() -> None:
    p = policy(
        "rules:\n"
        "  - {name: first, when: {projected_oom_within: 15m}, do: [{restart: {}}]}\n"
        "  - {name: second, when: {projected_oom_within: 15m},"
        " do: [{restart: {}}, {signal: USR1}]}\n"
    )
    decisions = run(p, [leaking(target("a"), 60)])
    assert kinds(decisions) == [("first", "a", "restart"), ("second", "a", "signal")]
    assert "left to an earlier rule" in decisions[1].evidence["notes"][0]


PURE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from policy_helpers import kill, leaking, policy, run, target
p = policy(
    "settings: {max_actions_per_minute: 3}\\n"
    "notifiers: {ops: {type: log}}\\n"
    "rules:\\n"
    "  - {name: restart, when: {projected_oom_within: 15m}, do: [{restart: {}}, {notify: ops}]}\\n"
    "  - {name: kills, when: {oom_killed: true}, do: [{notify: ops}]}\\n"
)
names = ["web-%d" % i for i in range(12)]  # equally urgent: which 3 restart is the order's
targets = [leaking(target(n), 60) for n in names]
events = [kill(target(n)) for n in names[:6]]
print(json.dumps([d.to_dict() for d in run(p, targets, events)], sort_keys=True))
"""


def test_evaluate_is_pure_and_deterministic() -> None:
    """Same inputs, same decisions, in the same order, in processes with different hash
    seeds (iterating a set or a dict of strings would show here), and the inputs are left
    as they were."""
    targets = [leaking(target("scheduler-1"), 60), TargetState(target("db", image="postgres:16"))]
    events = [kill(target("web"))]
    before = copy.deepcopy((EXAMPLE, targets, events))
    decisions = run(EXAMPLE, targets, events)
    assert (EXAMPLE, targets, events) == before
    assert kinds(decisions) == [
        ("restart-leaking-scheduler", "scheduler-1", "restart"),
        ("restart-leaking-scheduler", "scheduler-1", "notify"),
        ("protect-database", "db", "oom_score_adj"),
        ("report-every-kill", "web", "notify"),
    ]
    tests = Path(__file__).parent
    outputs = set()
    for seed in ("1", "2", "3", "4", "5", "6"):
        out = subprocess.run(
            [sys.executable, "-c", PURE, str(tests)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        outputs.add(out.stdout)
    assert len(outputs) == 1, "the decisions differ between hash seeds"
    (only,) = outputs
    restarted = [d["target"]["name"] for d in json.loads(only) if d["action"] == "restart"]
    assert restarted == ["web-0", "web-1", "web-2"]  # the rate limit keeps the first three


# --- the re-check before acting ----------------------------------------------------------


def test_still_holds_rechecks_the_condition_on_fresh_readings() -> None:
    s = target("scheduler-1")
    (restart, _notify) = run(EXAMPLE, [leaking(s, 10 * MIN)])
    later = NOW + 20
    assert still_holds(restart, leaking(s, 10 * MIN, at=later), later)
    # memory recovered while deciding: the forecast no longer projects a kill
    assert not still_holds(restart, leaking(s, None, at=later), later)
    assert not still_holds(restart, leaking(s, 40 * MIN, at=later), later)
    # restarted by someone else meanwhile, or not the same target, or sentinel itself
    assert not still_holds(restart, leaking(target("scheduler-1", started_at=NOW), 60), later)
    assert not still_holds(restart, leaking(target("scheduler-1", id="other"), 60), later)
    assert not still_holds(restart, leaking(target("scheduler-1", is_self=True), 60), later)


def test_still_holds_for_memory_and_kill_triggered_decisions() -> None:
    p = policy(MEM)
    a = target("a")
    (big,) = run(p, [memory(a, [(NOW, 960 * MiB)])])
    assert still_holds(big, memory(a, [(NOW + 1, 970 * MiB)]), NOW + 1)
    assert not still_holds(big, memory(a, [(NOW + 1, 900 * MiB)]), NOW + 1)
    (report,) = run(EXAMPLE, [], [kill(a)])
    assert still_holds(report, TargetState(a), NOW + 1)


def test_every_kind_of_decision_is_one_json_line() -> None:
    p = policy(
        "notifiers: {ops: {type: log}}\n"
        "rules:\n"
        "  - name: all\n"
        "    when: {projected_oom_within: 15m}\n"
        "    max_restarts: {count: 1, per: 1h}\n"
        "    cooldown: 0s\n"
        "    do:\n"
        "      - restart: {grace_period: 45s}\n"
        "      - notify: ops\n"
        "      - oom_score_adj: 300\n"
        "      - signal: USR2\n"
        "      - run: {command: [dump, --all], timeout: 5s}\n"
    )
    a = target("a")
    first = run(p, [leaking(a, 60)])
    second = run(
        p, [leaking(a, 60, at=NOW + 1)], now=NOW + 1, history=History().with_decisions(first)
    )
    lines = [json.dumps(d.to_dict()) for d in [*first, *second]]
    assert [json.loads(line)["action"] for line in lines] == [
        "restart",
        "notify",
        "oom_score_adj",
        "signal",
        "run",
        "escalate",
        "notify",
        "oom_score_adj",
        "signal",
        "run",
    ]
    params = [json.loads(line)["params"] for line in lines]
    assert params[0] == {"grace_period": "45s"}
    assert params[3] == {"value": "SIGUSR2"}
    assert params[4] == {"command": ["dump", "--all"], "timeout": "5s"}
    assert params[5]["message"] == "restarts are not helping: likely leak"
    assert json.loads(lines[0])["target"]["name"] == "a"


def test_still_holds_refuses_a_forecast_older_than_the_freshness_limit() -> None:
    # The re-check runs on the worker, possibly long after the decision: a forecast the
    # sampler has not renewed for longer than the policy's freshness limit (3 intervals,
    # at least 30 s) is no reason to restart any more.
    s = target("scheduler-1")
    (restart, _notify) = run(EXAMPLE, [leaking(s, 10 * MIN)])
    assert restart.stale_after == 30.0
    assert still_holds(restart, leaking(s, 10 * MIN), NOW + 29)
    assert not still_holds(restart, leaking(s, 10 * MIN), NOW + 31)
    # the same for readings behind memory_above
    p = policy(MEM)
    a = target("a")
    (big,) = run(p, [memory(a, [(NOW, 960 * MiB)])])
    assert still_holds(big, memory(a, [(NOW, 970 * MiB)]), NOW + 29)
    assert not still_holds(big, memory(a, [(NOW, 970 * MiB)]), NOW + 31)
