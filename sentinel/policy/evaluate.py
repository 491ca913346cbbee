"""The decision: ``evaluate(policy, state, events, now) -> decisions``. Pure: no I/O, no clock.

For each rule, in file order:

* rules with ``oom_killed`` look at the new kill ``events`` (each kill is handled once);
  other rules look at every target in ``state``, most urgent forecast first;
* a target is selected when ``match`` selects it, never when it is sentinel itself
  (``is_self``), and only once it has run ``min_uptime``;
* every condition of ``when`` must hold; a rule without ``when`` holds for every selected
  target, once per start of the target and then every ``cooldown``;
* the rule fires at most once per ``cooldown`` per target;
* a ``restart`` goes ahead only while the rule has restarted the target fewer than
  ``max_restarts.count`` times within ``per``. When the budget is used up sentinel
  escalates once ("restarts are not helping: likely leak") and then does not restart the
  target until a full ``per`` has passed after the escalation; the rule's other actions
  go on. At most one restart per target per evaluation, whatever the rules;
* the disruptive actions (restart, signal, run) of all rules together stay within
  ``settings.max_actions_per_minute`` over the last 60 s; a firing that would exceed it
  is left for a later evaluation, whole;
* ``settings.dry_run`` or the rule's ``dry_run`` marks its decisions ``dry_run``: they are
  logged and recorded (so cooldowns and budgets advance as they would), never carried out.

The caller carries out the decisions in order, records each one it carried out (or would
have, in dry run) in the history, and calls :func:`still_holds` with fresh readings just
before each disruptive one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from sentinel.model import Target
from sentinel.policy.conditions import Evidence, describe, memory_above, projected_oom
from sentinel.policy.decision import ESCALATION_MESSAGE, Decision, Escalation
from sentinel.policy.fields import format_duration
from sentinel.policy.match import matches
from sentinel.policy.model import RESTARTING, Policy, Rule, RuleAction, When
from sentinel.policy.state import DISRUPTIVE, ActionRecord, KillEvent, State, TargetState

RATE_WINDOW_S = 60.0
STALE_SAMPLES = 3
"""A forecast or reading older than this many sample intervals (and 30 s) is not used."""
STALE_MIN_S = 30.0


def stale_after(policy: Policy) -> float:
    return max(STALE_SAMPLES * policy.settings.sample_interval, STALE_MIN_S)


def evaluate(
    policy: Policy, state: State, events: Sequence[KillEvent], now: float
) -> list[Decision]:
    """The decisions to carry out now, in order. See the module documentation."""
    run = _Evaluation(policy, state, now)
    by_id = {ts.target.id: ts for ts in state.targets}
    ordered = sorted(state.targets, key=lambda ts: _urgency(ts, now))
    for rule in policy.rules:
        if rule.when is not None and rule.when.oom_killed is not None:
            for event in events:
                evidence = _event_holds(rule.when, event, by_id.get(event.target.id), run)
                if evidence is not None and matches(rule.match, event.target):
                    run.fire(rule, event.target, evidence)
        else:
            for ts in ordered:
                if not matches(rule.match, ts.target):
                    continue
                evidence = _state_holds(rule.when, ts, run) if rule.when else {}
                if evidence is not None:
                    run.fire(rule, ts.target, evidence)
    return run.decisions


def still_holds(decision: Decision, fresh: TargetState, now: float) -> bool:
    """Re-check just before acting: the target is still the one decided on (same id, not
    restarted since, not sentinel itself), and the state conditions of the rule still hold
    on ``fresh`` readings. A kill that triggered the rule stays true."""
    target = fresh.target
    if target.id != decision.target.id or target.is_self:
        return False
    if decision.target.started_at is not None and target.started_at != decision.target.started_at:
        return False
    when = decision.when
    if when is None:
        return True
    stale = decision.stale_after
    if when.projected_oom_within is not None and (
        projected_oom(when.projected_oom_within, fresh, now, stale, when.confidence) is None
    ):
        return False
    return not (
        when.memory_above is not None
        and memory_above(when.memory_above, fresh.memory, now, stale) is None
    )


# --- conditions --------------------------------------------------------------------------


def _urgency(ts: TargetState, now: float) -> float:
    f = ts.forecast
    if f is None or f.eta_seconds is None:
        return float("inf")
    return f.t + f.eta_seconds - now


def _state_holds(when: When, ts: TargetState, run: _Evaluation) -> Evidence | None:
    evidence: Evidence = {}
    if when.projected_oom_within is not None:
        found = projected_oom(
            when.projected_oom_within, ts, run.now, run.stale_after, when.confidence
        )
        if found is None:
            return None
        evidence.update(found)
    if when.memory_above is not None:
        found = memory_above(when.memory_above, ts.memory, run.now, run.stale_after)
        if found is None:
            return None
        if evidence:
            found = {f"memory_{k}" if k in evidence else k: v for k, v in found.items()}
        evidence.update(found)
    return evidence


def _event_holds(
    when: When, event: KillEvent, ts: TargetState | None, run: _Evaluation
) -> Evidence | None:
    assert when.oom_killed is not None
    scope = when.oom_killed.scope
    if scope not in ("any", event.scope):
        return None
    evidence: Evidence = {"condition": "oom_killed", "scope": event.scope, "killed_at": event.t}
    record = event.record
    if record is not None:
        for key in ("pid", "comm", "constraint", "anon_rss_kb", "oom_memcg", "task_memcg"):
            value = getattr(record, key)
            if value is not None:
                evidence[key] = value
    if when.projected_oom_within is not None or when.memory_above is not None:
        if ts is None:
            return None
        more = _state_holds(when, ts, run)
        if more is None:
            return None
        evidence = {**more, **evidence}
    return evidence


# --- firing ------------------------------------------------------------------------------


@dataclass
class _Evaluation:
    policy: Policy
    state: State
    now: float
    decisions: list[Decision] = field(default_factory=list)
    by_rule_target: dict[tuple[str, str], list[ActionRecord]] = field(
        default_factory=lambda: defaultdict(list)
    )
    disruptive_times: list[float] = field(default_factory=list)
    restarted: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.stale_after = stale_after(self.policy)
        self._add_records(self.state.history.records)

    def _add_records(self, records: Iterable[ActionRecord]) -> None:
        for r in records:
            self.by_rule_target[(r.rule, r.target_id)].append(r)
            if r.action in DISRUPTIVE:
                self.disruptive_times.append(r.at)

    def fire(self, rule: Rule, target: Target, evidence: Evidence) -> None:
        now = self.now
        if rule.min_uptime > 0 and (
            target.started_at is None or now - target.started_at < rule.min_uptime
        ):
            return
        past = self.by_rule_target.get((rule.name, target.id), [])
        if past:
            last = max(r.at for r in past)
            restarted_since = (
                rule.when is None and target.started_at is not None and last < target.started_at
            )
            if now - last < rule.cooldown and not restarted_since:
                return
        dry = self.policy.settings.dry_run or rule.dry_run
        reason = describe(evidence)
        out: list[Decision] = []
        notes: list[str] = []
        for action in rule.do:
            if action.kind in RESTARTING:
                if target.id in self.restarted:
                    notes.append("restart left to an earlier rule in this evaluation")
                    continue
                blocked = self._restart_blocked(rule, past)
                if blocked is None:
                    out.append(
                        self._decision(
                            rule,
                            target=target,
                            action=action,
                            reason=reason,
                            evidence=evidence,
                            dry=dry,
                        )
                    )
                    continue
                notes.append(blocked)
                if not self._escalated(rule, past):
                    out.append(self._escalation(rule, target, past, evidence, dry))
            else:
                out.append(
                    self._decision(
                        rule,
                        target=target,
                        action=action,
                        reason=reason,
                        evidence=evidence,
                        dry=dry,
                    )
                )
        if not out:
            return
        if notes:
            out = [replace(d, evidence={**d.evidence, "notes": notes}) for d in out]
        wanted = sum(1 for d in out if d.disruptive)
        if wanted:
            used = sum(1 for t in self.disruptive_times if now - RATE_WINDOW_S < t <= now)
            if used + wanted > self.policy.settings.max_actions_per_minute:
                return
        self.decisions.extend(out)
        self._add_records(ActionRecord(d.at, d.rule, d.target.id, d.kind, d.dry_run) for d in out)
        if any(d.kind in RESTARTING for d in out):
            self.restarted.add(target.id)

    def _decision(
        self,
        rule: Rule,
        *,
        target: Target,
        action: RuleAction,
        reason: str,
        evidence: Evidence,
        dry: bool,
    ) -> Decision:
        return Decision(
            rule=rule.name,
            target=target,
            action=action,
            at=self.now,
            reason=reason,
            evidence=evidence,
            dry_run=dry,
            when=rule.when,
            stale_after=self.stale_after,
        )

    def _window(self, rule: Rule, past: Sequence[ActionRecord], kind: str) -> list[float]:
        """When the rule did ``kind`` to the target within ``max_restarts.per`` (``restart``
        counts evictions and pod deletions too)."""
        per = rule.max_restarts.per
        kinds = RESTARTING if kind == "restart" else (kind,)
        return sorted(r.at for r in past if r.action in kinds and self.now - per < r.at <= self.now)

    def _escalated(self, rule: Rule, past: Sequence[ActionRecord]) -> bool:
        return bool(self._window(rule, past, "escalate"))

    def _restart_blocked(self, rule: Rule, past: Sequence[ActionRecord]) -> str | None:
        limit = rule.max_restarts
        if self._escalated(rule, past):
            return (
                f"restart skipped: escalated within the last {format_duration(limit.per)}, "
                "no restarts until a full window has passed"
            )
        if len(self._window(rule, past, "restart")) >= limit.count:
            return (
                f"restart skipped: max_restarts used up ({limit.count} within "
                f"{format_duration(limit.per)})"
            )
        return None

    def _escalation(
        self,
        rule: Rule,
        target: Target,
        past: Sequence[ActionRecord],
        evidence: Evidence,
        dry: bool,
    ) -> Decision:
        limit = rule.max_restarts
        restarts = self._window(rule, past, "restart")
        notifiers = rule.notifier_names or tuple(self.policy.notifiers)
        return Decision(
            rule=rule.name,
            target=target,
            action=Escalation(restarts=len(restarts), per=limit.per, notifiers=notifiers),
            at=self.now,
            reason=(
                f"{ESCALATION_MESSAGE}: {len(restarts)} restarts within "
                f"{format_duration(limit.per)} and {describe(evidence)}"
            ),
            evidence={**evidence, "restarts_at": restarts},
            dry_run=dry,
            when=rule.when,
        )
