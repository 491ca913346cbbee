"""What a notification carries beyond the decision: the numbers a person needs.

The daemon builds the basic notification (kind, rule, target, reason, evidence, text, at,
host, record) and :func:`enrich` adds, from what sentinel already holds: the memory before
the event and a downsampled history for a sparkline (the state's samples), the kill
record's biggest processes, the last forecast, and what sentinel did about it. Everything
added is plain JSON, so the outbox keeps it as it was when the event happened.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sentinel.forecast.types import Forecast
from sentinel.model import KillRecord
from sentinel.notifiers.slack_render import SPARK_WIDTH, top_tasks

HISTORY_SPAN = 6 * 3600.0
"""How far back the sparkline reaches (seconds)."""
QUIET_ACTIONS = frozenset({"notify", "escalate"})


class _Decisions(Protocol):
    def decisions(
        self, *, since: float | None = None, rule: str | None = None, target_id: str | None = None
    ) -> Sequence[Any]: ...

    def samples(self, target_id: str) -> list[tuple[float, int, int | None]]: ...


def downsample(values: Sequence[int], width: int = SPARK_WIDTH) -> list[int]:
    """At most ``width`` values: the maximum of each bucket (a peak is never smoothed away)."""
    if len(values) <= width:
        return list(values)
    size = len(values) / width
    return [
        max(values[int(i * size) : max(int((i + 1) * size), int(i * size) + 1)])
        for i in range(width)
    ]


def enrich(
    notification: dict[str, Any],
    *,
    store: _Decisions,
    target_id: str,
    now: float,
    record: KillRecord | None = None,
    forecast: Forecast | None = None,
    host_total_bytes: int | None = None,
    after: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``notification`` with ``memory``, ``top_tasks``, ``forecast``, ``actions``, ``after``."""
    samples = [s for s in store.samples(target_id) if s[0] >= now - HISTORY_SPAN]
    memory: dict[str, Any] = {}
    if samples:
        memory["usage_bytes"] = samples[-1][1]
        memory["limit_bytes"] = samples[-1][2]
        memory["history"] = downsample([s[1] for s in samples])
        memory["history_span_s"] = round(samples[-1][0] - samples[0][0], 1)
    if host_total_bytes is not None:
        memory["host_total_bytes"] = host_total_bytes
    if memory:
        notification["memory"] = memory
    if record is not None and record.tasks:
        notification["top_tasks"] = top_tasks(record.tasks)
    if forecast is not None and forecast.eta_seconds is not None:
        notification["forecast"] = {
            "at": forecast.t,
            "eta_seconds": round(forecast.eta_seconds, 1),
            "constraint": forecast.constraint,
            "rate_bytes_per_s": round(forecast.rate_bytes_per_s, 3),
        }
    actions = [
        {"action": d.action, "outcome": d.outcome, "rule": d.rule}
        for d in store.decisions(since=now, target_id=target_id)
        if d.action not in QUIET_ACTIONS
    ]
    if actions:
        notification["actions"] = actions
    if after is not None:
        notification["after"] = dict(after)
    return notification
