"""Properties of the decision: the restart budget holds whatever the timing."""

from __future__ import annotations

import itertools
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from policy_helpers import NOW, leaking, policy, target
from sentinel.policy import History, State, evaluate
from sentinel.policy.fields import format_duration
from sentinel.units import parse_duration

steps = st.lists(
    st.tuples(
        st.floats(min_value=0.5, max_value=7200.0),  # time to the next evaluation
        st.lists(
            st.one_of(st.none(), st.floats(min_value=0.0, max_value=3600.0)), min_size=2, max_size=2
        ),  # eta per target
        st.booleans(),  # did target 0 restart by itself meanwhile?
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=4),
    per=st.sampled_from(["10m", "1h", "3h", "24h"]),
    cooldown=st.sampled_from(["0s", "1m", "10m"]),
    dry_run=st.booleans(),
    rate=st.integers(min_value=1, max_value=5),
    steps=steps,
)
def test_never_more_restarts_than_max_restarts_within_per(  # noqa: PLR0917
    count: int,
    per: str,
    cooldown: str,
    dry_run: bool,
    rate: int,
    steps: list[tuple[float, list[float | None], bool]],
) -> None:
    p = policy(
        f"settings: {{dry_run: {str(dry_run).lower()}, max_actions_per_minute: {rate}}}\n"
        "notifiers: {ops: {type: log}}\n"
        "rules:\n"
        "  - name: a\n"
        "    when: {projected_oom_within: 30m}\n"
        f"    cooldown: {cooldown}\n"
        f"    max_restarts: {{count: {count}, per: {per}}}\n"
        "    do: [{restart: {}}, {notify: ops}]\n"
        "  - name: b\n"
        "    when: {projected_oom_within: 10m}\n"
        f"    max_restarts: {{count: {count}, per: {per}}}\n"
        "    cooldown: 0s\n"
        "    do: [{restart: {}}]\n"
    )
    window = parse_duration(per)
    history = History()
    now = NOW
    started = [NOW - 86400.0, NOW - 86400.0]
    restarts: dict[tuple[str, str], list[float]] = defaultdict(list)
    escalations: dict[tuple[str, str], list[float]] = defaultdict(list)
    for gap, etas, self_restart in steps:
        now += gap
        if self_restart:
            started[0] = now - 0.25
        targets = tuple(
            leaking(target(f"t{i}", started_at=started[i]), eta, at=now)
            for i, eta in enumerate(etas)
        )
        decisions = evaluate(p, State(targets, history), [], now)
        per_target = [d.target.id for d in decisions if d.kind == "restart"]
        assert len(per_target) == len(set(per_target))  # one restart per target per evaluation
        assert sum(d.disruptive for d in decisions) <= rate
        for d in decisions:
            assert d.dry_run is dry_run
            if d.kind == "restart":
                restarts[(d.rule, d.target.id)].append(now)
            elif d.kind == "escalate":
                escalations[(d.rule, d.target.id)].append(now)
        history = history.with_decisions(decisions)

    for key, times in restarts.items():
        for x in times:
            assert sum(1 for t in times if x - window < t <= x) <= count
        for e in escalations.get(key, []):
            assert not [t for t in times if e <= t < e + window]  # stopped restarting
    for times in escalations.values():
        assert all(b - a >= window for a, b in itertools.pairwise(times))


@given(st.integers(min_value=0, max_value=10 * 86400 * 1000))
def test_durations_print_as_they_parse(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == seconds
