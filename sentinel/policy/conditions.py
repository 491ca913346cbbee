"""The state conditions of ``when``, each returning its evidence when it holds, else None.

Shared by the decision and by the re-check before a disruptive action.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sentinel.policy.fields import format_duration
from sentinel.policy.model import MemoryAbove
from sentinel.policy.state import ForecastView, MemoryPoint, TargetState

Evidence = dict[str, Any]


def projected_oom(
    within: float,
    state: TargetState,
    now: float,
    stale_after: float = float("inf"),
    confidence: str = "confident",
) -> Evidence | None:
    """The forecast projects the kill within ``within`` seconds of ``now``.

    ``confidence="confident"`` reads the confident ETA; ``"observed"`` the earlier of it
    and the observed one (the trend of the last minutes). A forecast older than
    ``stale_after`` seconds, or made before the target's current start, does not count.
    """
    f: ForecastView | None = state.forecast
    if f is None:
        return None
    confident = f.eta_seconds
    observed = f.observed_eta_seconds
    eta, basis = confident, "confident"
    if confidence == "observed" and observed is not None and (eta is None or observed < eta):
        eta, basis = observed, "observed"
    if eta is None:
        return None
    if now - f.t > stale_after:
        return None
    started = state.target.started_at
    if started is not None and f.t < started:
        return None
    remaining = f.t + eta - now
    if remaining > within:
        return None
    return {
        "condition": "projected_oom_within",
        "projected_oom_in_s": round(max(remaining, 0.0), 3),
        "within_s": within,
        "confidence": confidence,
        "eta_basis": basis,
        "confident_eta_s": None if confident is None else round(confident, 3),
        "observed_eta_s": None if observed is None else round(observed, 3),
        "constraint": f.constraint,
        "usage_bytes": f.usage_bytes,
        "limit_bytes": f.limit_bytes,
        "forecast_t": f.t,
    }


def _threshold(cond: MemoryAbove, point: MemoryPoint) -> float | None:
    if cond.bytes is not None:
        return float(cond.bytes)
    if point.limit_bytes is None or cond.percent is None:
        return None
    return point.limit_bytes * cond.percent / 100.0


def memory_above(
    cond: MemoryAbove,
    memory: Sequence[MemoryPoint],
    now: float,
    stale_after: float = float("inf"),
) -> Evidence | None:
    """Every reading for the last ``cond.for_`` seconds is above the threshold, and the
    readings reach back that far without one at or below it. The latest reading must be
    at most ``stale_after`` old."""
    if not memory or now - memory[-1].t > stale_after:
        return None
    since: float | None = None
    for point in reversed(memory):
        if point.t > now:
            continue
        threshold = _threshold(cond, point)
        if threshold is None or point.usage_bytes <= threshold:
            break
        since = point.t
    if since is None or now - since < cond.for_:
        return None
    last = memory[-1]
    evidence: Evidence = {
        "condition": "memory_above",
        "usage_bytes": last.usage_bytes,
        "limit_bytes": last.limit_bytes,
        "threshold_bytes": _threshold(cond, last),
        "above_since": since,
        "for_s": cond.for_,
    }
    if cond.percent is not None:
        evidence["percent"] = cond.percent
        if last.limit_bytes:
            evidence["usage_percent"] = round(100.0 * last.usage_bytes / last.limit_bytes, 2)
    return evidence


def describe(evidence: Evidence) -> str:
    """A short human reason from a condition's evidence."""
    condition = evidence.get("condition")
    if condition == "projected_oom_within":
        observed = evidence.get("eta_basis") == "observed"
        which = "the trend of the last minutes says" if observed else "the forecast says"
        return (
            f"{which} the kernel kills it in "
            f"{format_duration(round(evidence['projected_oom_in_s']))} "
            f"({evidence['constraint']} limit; rule acts within "
            f"{format_duration(evidence['within_s'])})"
        )
    if condition == "memory_above":
        what = (
            f"{evidence['percent']:g}% of its limit"
            if "percent" in evidence
            else f"{evidence['threshold_bytes']:.0f} bytes"
        )
        return f"memory above {what} for {format_duration(evidence['for_s'])}"
    if condition == "oom_killed":
        scope = evidence.get("scope") or "unknown"
        return f"the kernel OOM killer killed it (scope {scope})"
    return "the rule applies to every matching target"
