"""The value a forecaster hands out after each sample."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Forecast:
    """When the kernel will kill the target, as projected after the sample at ``t``.

    ``eta_seconds`` is ``None`` when no kill is projected (usage level or falling, not
    enough history yet, or no limit). ``eta_low`` and ``eta_high`` bracket it with the
    fastest and slowest growth the recent windows support (``eta_high`` is ``None`` when
    the slowest is no growth). Sizes are bytes, rates bytes per second.
    """

    t: float
    usage_bytes: float
    limit_bytes: float | None
    constraint: str
    """Which limit bites: ``"cgroup"``, ``"parent"``, ``"host"``, or the caller's own name."""
    eta_seconds: float | None
    eta_low: float | None
    eta_high: float | None
    rate_bytes_per_s: float
    """Growth of the peak envelope (0 when not growing)."""
    peak_bytes: float
    """The peak envelope now: where the next peak is expected, what the limit is held to."""
    window_s: float
    """Length of the history window the projection rests on (0 when there is none)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "usage_bytes": self.usage_bytes,
            "limit_bytes": self.limit_bytes,
            "constraint": self.constraint,
            "eta_seconds": self.eta_seconds,
            "eta_low": self.eta_low,
            "eta_high": self.eta_high,
            "rate_bytes_per_s": self.rate_bytes_per_s,
            "peak_bytes": self.peak_bytes,
            "window_s": self.window_s,
        }
