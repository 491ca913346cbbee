"""What the decision reads: the targets and their memory, new kill events, past actions.

All times are seconds on one clock chosen by the caller and shared by every value here and
by ``now`` (the daemon uses wall-clock seconds, so that cooldowns and restart budgets kept
in the state file survive a restart of sentinel).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sentinel.model import KillRecord, Target
from sentinel.policy.model import Policy, RestartAction

if TYPE_CHECKING:
    from sentinel.policy.decision import Decision


class ForecastView(Protocol):
    """What the decision needs of a forecast (``sentinel.forecast`` ``Forecast`` has it)."""

    @property
    def t(self) -> float:
        """When the forecast was made (the time of the sample it follows)."""

    @property
    def eta_seconds(self) -> float | None:
        """Seconds from ``t`` to the projected kill; ``None`` when none is projected. The
        confident ETA: what ``projected_oom_within`` reads by default."""

    @property
    def observed_eta_seconds(self) -> float | None:
        """Seconds from ``t`` to the limit at the trend of the last minutes; ``None`` unless
        usage clearly rises (``confidence: observed`` reads the earlier of the two)."""

    @property
    def constraint(self) -> str:
        """Which limit bites: ``cgroup``, ``parent``, ``host``."""

    @property
    def usage_bytes(self) -> float: ...

    @property
    def limit_bytes(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class MemoryPoint:
    """One memory reading of a target: usage and the effective limit (tightest on the
    cgroup path; ``None`` when nothing limits it), in bytes."""

    t: float
    usage_bytes: int
    limit_bytes: int | None


@dataclass(frozen=True, slots=True)
class TargetState:
    """A target now: its latest forecast and its recent memory readings, oldest first
    (enough to cover the longest ``memory_above.for`` in the policy)."""

    target: Target
    forecast: ForecastView | None = None
    memory: tuple[MemoryPoint, ...] = ()


@dataclass(frozen=True, slots=True)
class KillEvent:
    """A kernel OOM kill of a process of ``target``, new since the last evaluation.

    ``scope`` is ``"host"`` (the machine ran out), ``"cgroup"`` (a memcg limit), or ``None``
    when the log did not say. A kill outside any known container is given as a ``process``
    target named after the victim (``id`` ``pid:N``), so that "report every kill" sees it.
    """

    target: Target
    t: float
    scope: str | None
    record: KillRecord | None = None
    kill_id: int | None = None
    """The kill's row in the state: marked handled once the rules decided on it."""


DISRUPTIVE = frozenset({"restart", "signal", "run", "evict", "delete_pod"})
"""Actions that can interrupt a workload: counted by ``max_actions_per_minute``, re-checked
with :func:`sentinel.policy.evaluate.still_holds` just before they are carried out."""
RATE_WINDOW_S = 60.0
"""``max_actions_per_minute`` counts the disruptive actions of the last this many seconds
(the same figure as :data:`sentinel.policy.evaluate.RATE_WINDOW_S`; a test keeps them equal)."""
BUDGET_ACTIONS = frozenset({"restart", "evict", "delete_pod", "escalate"})
"""What ``max_restarts`` counts within ``per``: the rule's restarts (evictions and pod
deletions count as restarts) and its escalation."""


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """A decision that was carried out (or would have been, in dry run): cooldowns, restart
    budgets and the rate limit count these. ``action`` is the decision's kind
    (``restart``, ``notify``, ``oom_score_adj``, ``signal``, ``run``, ``escalate``)."""

    at: float
    rule: str
    target_id: str
    action: str
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class History:
    """Past actions, in any order. The daemon builds it from its state file; tests and
    simulations grow it with :meth:`with_decisions`."""

    records: tuple[ActionRecord, ...] = ()

    def with_decisions(self, decisions: Iterable[Decision]) -> History:
        """This history plus ``decisions``, as if each was carried out at its ``at``."""
        added = tuple(ActionRecord(d.at, d.rule, d.target.id, d.kind, d.dry_run) for d in decisions)
        return History(self.records + added)

    def since(self, t: float) -> History:
        """Only the records at or after ``t`` (to keep a long-running history bounded)."""
        return History(tuple(r for r in self.records if r.at >= t))


@dataclass(frozen=True, slots=True)
class State:
    """Everything ``evaluate`` reads besides the policy and the new kill events."""

    targets: tuple[TargetState, ...] = ()
    history: History = field(default_factory=History)


@dataclass(frozen=True, slots=True)
class RuleLookback:
    """How far back the evaluation of one rule reads its own past actions, in seconds.

    ``cooldown_s``: any action of the rule (its latest one decides the cooldown);
    ``budget_s``: its restarts and escalations (``max_restarts.per``; 0 for a rule that
    never restarts)."""

    rule: str
    cooldown_s: float
    budget_s: float


@dataclass(frozen=True, slots=True)
class Lookback:
    """Which past actions :func:`~sentinel.policy.evaluate.evaluate` can see: a history
    holding at least these records decides exactly as the full history would. Older
    records change nothing, so a state file can answer with bounded, indexed queries."""

    rules: tuple[RuleLookback, ...] = ()
    disruptive_s: float = RATE_WINDOW_S
    """Every rule's restarts, signals and hooks (``max_actions_per_minute``)."""

    @property
    def longest(self) -> float:
        """The longest window, in seconds: history older than this is never read."""
        return max([self.disruptive_s, *(max(r.cooldown_s, r.budget_s) for r in self.rules)])


def lookback(policy: Policy) -> Lookback:
    """How far back ``policy`` looks: per rule its ``cooldown`` and, for a rule that
    restarts, ``max_restarts.per`` (the restart budget and the escalation that ends it);
    across rules the last minute of disruptive actions."""
    return Lookback(
        rules=tuple(
            RuleLookback(
                rule=rule.name,
                cooldown_s=float(rule.cooldown),
                budget_s=(
                    float(rule.max_restarts.per)
                    if any(isinstance(a, RestartAction) for a in rule.do)
                    else 0.0
                ),
            )
            for rule in policy.rules
        ),
    )
