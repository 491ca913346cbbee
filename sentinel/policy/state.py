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

if TYPE_CHECKING:
    from sentinel.policy.decision import Decision


class ForecastView(Protocol):
    """What the decision needs of a forecast (``sentinel.forecast`` ``Forecast`` has it)."""

    @property
    def t(self) -> float:
        """When the forecast was made (the time of the sample it follows)."""

    @property
    def eta_seconds(self) -> float | None:
        """Seconds from ``t`` to the projected kill; ``None`` when none is projected."""

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


DISRUPTIVE = frozenset({"restart", "signal", "run"})
"""Actions that can interrupt a workload: counted by ``max_actions_per_minute``, re-checked
with :func:`sentinel.policy.evaluate.still_holds` just before they are carried out."""


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
