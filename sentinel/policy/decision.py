"""What the policy decided: one action on one target, with the reason and the numbers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sentinel.model import Target
from sentinel.policy.model import RuleAction, When
from sentinel.policy.state import DISRUPTIVE

ESCALATION_MESSAGE = "restarts are not helping: likely leak"


@dataclass(frozen=True, slots=True)
class Escalation:
    """A rule used up its ``max_restarts`` on a target: tell people, once, and stop
    restarting that target until a full ``per`` has passed."""

    kind: ClassVar[str] = "escalate"

    restarts: int
    per: float
    notifiers: tuple[str, ...]
    """Where to send it: the rule's ``notify`` targets, or every notifier if it has none."""
    message: str = ESCALATION_MESSAGE


Action = RuleAction | Escalation


@dataclass(frozen=True, slots=True)
class Decision:
    """Do ``action`` to ``target`` because of ``rule``, decided at ``at``.

    ``dry_run`` decisions are logged and recorded but never carried out. ``when`` is the
    rule's condition, kept so that :func:`~sentinel.policy.evaluate.still_holds` can re-check
    it against fresh readings just before a disruptive action.
    """

    rule: str
    target: Target
    action: Action
    at: float
    reason: str
    evidence: Mapping[str, Any]
    dry_run: bool
    when: When | None = None
    stale_after: float = float("inf")
    """How old a forecast or reading may be when :func:`still_holds` re-checks ``when``
    (the policy's freshness limit: a few sample intervals)."""

    @property
    def kind(self) -> str:
        """``restart``, ``notify``, ``oom_score_adj``, ``signal``, ``run`` or ``escalate``."""
        return self.action.kind

    @property
    def disruptive(self) -> bool:
        return self.kind in DISRUPTIVE

    def params(self) -> dict[str, Any]:
        """The action's parameters as the policy writes them (``{"grace_period": "30s"}``)."""
        if isinstance(self.action, Escalation):
            return {
                "restarts": self.action.restarts,
                "per_s": self.action.per,
                "notifiers": list(self.action.notifiers),
                "message": self.action.message,
            }
        value = self.action.model_dump(mode="json")[self.kind]
        return value if isinstance(value, dict) else {"value": value}

    def to_dict(self) -> dict[str, Any]:
        """One JSON-ready object for the decision log line and the state file."""
        return {
            "at": self.at,
            "rule": self.rule,
            "action": self.kind,
            "params": self.params(),
            "target": self.target.to_dict(),
            "reason": self.reason,
            "evidence": dict(self.evidence),
            "dry_run": self.dry_run,
        }
