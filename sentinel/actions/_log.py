"""One JSON line per action on the ``sentinel.actions`` logger."""

from __future__ import annotations

import json
import logging
from typing import Any

from sentinel.model import ActionResult, Target
from sentinel.policy.decision import Decision

log = logging.getLogger("sentinel.actions")


def action_line(result: ActionResult, target: Target, decision: Decision | None = None) -> str:
    """The log line: the target, the rule and its numbers, dry run, and what came of it."""
    line: dict[str, Any] = {"event": "action", "action": result.action}
    if decision is not None:
        line.update(rule=decision.rule, params=decision.params(), decided_at=decision.at)
    line.update(target=target.to_dict(), dry_run=result.dry_run, outcome=result.outcome)
    line["ok"] = result.ok
    if result.error is not None:
        line["error"] = result.error
    if decision is not None:
        line.update(reason=decision.reason, evidence=dict(decision.evidence))
    line["detail"] = dict(result.detail)
    return json.dumps(line, sort_keys=False, default=str)


def log_action(result: ActionResult, target: Target, decision: Decision | None = None) -> None:
    """Log ``result``: INFO when it went as intended (or was a dry run or dropped by the
    re-check), WARNING when refused or failed."""
    level = logging.INFO if result.outcome in ("done", "dry_run", "dropped") else logging.WARNING
    if log.isEnabledFor(level):
        log.log(level, action_line(result, target, decision))
