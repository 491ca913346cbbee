"""Policies: the YAML file's models, loading with file:line errors, and the pure decision.

``load_policy(text, filename)`` validates a policy file (the caller reads it);
``evaluate(policy, state, events, now)`` decides; ``still_holds(decision, fresh, now)``
re-checks a disruptive decision just before it is carried out.
"""

from sentinel.policy.decision import Decision, Escalation
from sentinel.policy.errors import PolicyError, Problem
from sentinel.policy.evaluate import evaluate, still_holds
from sentinel.policy.load import default_policy, effective_document, load_policy
from sentinel.policy.model import Policy, Rule
from sentinel.policy.state import (
    ActionRecord,
    History,
    KillEvent,
    MemoryPoint,
    State,
    TargetState,
)

__all__ = [
    "ActionRecord",
    "Decision",
    "Escalation",
    "History",
    "KillEvent",
    "MemoryPoint",
    "Policy",
    "PolicyError",
    "Problem",
    "Rule",
    "State",
    "TargetState",
    "default_policy",
    "effective_document",
    "evaluate",
    "load_policy",
    "still_holds",
]
