"""Pruning the state on ``settings.retention``: the daemon's periodic retention job.

What is removed, and the floors that keep every decision exact:

- decisions older than ``retention.decisions``, but never within the longest window the
  policy looks back (:func:`sentinel.policy.state.lookback`: cooldowns, restart budgets);
- notifications accepted longer ago than ``retention.notifications`` (at least the last
  hour is kept: storm grouping reads the last minute); unsent ones never;
- kill records older than ``retention.kills``;
- the samples and Slack threads of targets not sampled for ``retention.gone_targets``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sentinel.errors import SentinelError
from sentinel.policy.model import Policy
from sentinel.policy.state import lookback
from sentinel.runtime.logs import event
from sentinel.store import Pruned, Store

log = logging.getLogger("sentinel.retention")

SENT_FLOOR_S = 3600.0
"""Accepted notifications younger than this are always kept (storms read the last 60 s)."""


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Rows older than these times (seconds, the daemon's wall clock) are removed."""

    decisions: float
    sent: float
    kills: float
    gone: float


def cutoffs(policy: Policy, now: float) -> Cutoffs:
    """When each kind of row becomes prunable, with the floors of the module docstring."""
    keep = policy.settings.retention
    return Cutoffs(
        decisions=now - max(float(keep.decisions), lookback(policy).longest),
        sent=now - max(float(keep.notifications), SENT_FLOOR_S),
        kills=now - float(keep.kills),
        gone=now - float(keep.gone_targets),
    )


def prune(store: Store, policy: Policy, now: float) -> Pruned:
    """Prune ``store`` once; logs one ``retention`` line when anything was removed."""
    c = cutoffs(policy, now)
    started = time.monotonic()
    pruned = store.prune(
        decisions_before=c.decisions, sent_before=c.sent, kills_before=c.kills, gone_before=c.gone
    )
    if pruned.total:
        event(
            log,
            "retention",
            decisions=pruned.decisions,
            notifications=pruned.notifications,
            kills=pruned.kills,
            samples=pruned.samples,
            threads=pruned.threads,
            seconds=round(time.monotonic() - started, 3),
        )
    return pruned


def job(store: Store, policy: Policy, clock: Callable[[], float]) -> Callable[[], None]:
    """The scheduler's job: :func:`prune` now; a failure is one log line, tried next time."""

    def run() -> None:
        try:
            prune(store, policy, clock())
        except SentinelError as e:
            log.warning("pruning the state failed (tried again later): %s", e)

    return run
