"""The value a forecaster hands out after each sample."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Forecast:
    """When the kernel will kill the target, as projected after the sample at ``t``.

    Two answers. The *confident* one, ``eta_seconds``, is what rules act on: ``None`` when
    no kill is projected (usage level or falling, growth not yet told apart from a burst,
    a ramp or a warm-up, or no limit). ``eta_low`` and ``eta_high`` bracket it with the
    fastest and slowest growth the recent windows support (``eta_high`` is ``None`` when
    the slowest is no growth). The *observed* one, ``observed_*``, is what the last
    minutes of samples say now (:mod:`sentinel.forecast.observed`): the trend with its
    uncertainty from the third sample on, and the ETA at that trend while usage clearly
    rises. Sizes are bytes, rates bytes per second.
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
    observed_rate_bytes_per_s: float = 0.0
    """The trend now: growth over the last minutes (negative when falling)."""
    observed_rate_error: float = 0.0
    """Two standard errors of the observed rate (it is ``rate +- error``)."""
    observed_eta_seconds: float | None = None
    """Seconds to the limit at the observed rate; ``None`` unless usage clearly rises."""
    observed_eta_low: float | None = None
    observed_eta_high: float | None = None
    """The observed ETA at the fastest and slowest rate the samples allow (``None``: the
    slowest is no growth)."""
    known_leaker: bool = False
    """The target leaked to its limit before (the caller's hint or an earlier run)."""

    @property
    def confident(self) -> bool:
        """A kill is projected with confidence (rules act on it)."""
        return self.eta_seconds is not None

    @property
    def soonest_eta(self) -> float | None:
        """The earlier of the confident and the observed ETA (``None`` when neither)."""
        etas = [e for e in (self.eta_seconds, self.observed_eta_seconds) if e is not None]
        return min(etas) if etas else None

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
            "observed_rate_bytes_per_s": self.observed_rate_bytes_per_s,
            "observed_rate_error": self.observed_rate_error,
            "observed_eta_seconds": self.observed_eta_seconds,
            "observed_eta_low": self.observed_eta_low,
            "observed_eta_high": self.observed_eta_high,
            "known_leaker": self.known_leaker,
        }
