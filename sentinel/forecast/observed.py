"""The observed trend: what the last minutes of samples say now, with its uncertainty.

The confident forecast (:mod:`sentinel.forecast.forecaster`) waits until it can tell a
leak from a burst, a ramp or a warm-up; people reading ``sentinel top`` want to see what
is happening *now*. :class:`Observed` fits a straight line to the recent samples, weighted
by age (an exponential window of ``TAU_S`` seconds, at least ``MIN_POINTS`` sample
intervals), and answers from the third sample on:

- the growth rate and its uncertainty (two standard errors of the slope);
- when the limit is met if that rate holds, with the interval the slope's uncertainty
  allows; only while the growth is clearly above the noise (the slope is more than two
  standard errors above zero).

It never claims to know whether the growth will go on: a batch ramp that stops looks the
same until it stops. Rules act on the confident ETA unless a policy asks for this one
(``when.confidence: observed``).

Pure and incremental: a handful of running sums, re-centred on the newest sample, so each
sample costs O(1) and old samples fade out without being stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TAU_S = 120.0
"""Time constant of the window: a sample this old weighs 1/e of the newest."""
MIN_POINTS = 8.0
"""... or this many typical sample intervals, when samples are sparser (the window must
hold enough samples to say anything)."""
MIN_SAMPLES = 3
"""No trend from fewer samples (two points always make a perfect line)."""
SIGNIFICANCE = 2.0
"""An ETA is given only while the slope is this many standard errors above zero."""


@dataclass(frozen=True, slots=True)
class Trend:
    """The observed trend after one sample."""

    rate: float
    """Growth in bytes per second (negative when falling; 0 before ``MIN_SAMPLES``)."""
    error: float
    """Two standard errors of ``rate``: the rate is ``rate +- error``."""
    eta: float | None
    """Seconds until usage meets the limit at ``rate``; ``None`` when not clearly rising."""
    eta_low: float | None
    """The ETA at the fastest rate the samples allow (``rate + error``)."""
    eta_high: float | None
    """The ETA at the slowest (``rate - error``; ``None``: no growth is also possible)."""


NO_TREND = Trend(0.0, 0.0, None, None, None)


class Observed:
    """Exponentially weighted least-squares line through the recent samples."""

    __slots__ = ("_dt", "_n", "_s0", "_sww", "_sx", "_sxx", "_sxy", "_sy", "_syy", "_t", "_u")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every sample."""
        self._t = -math.inf
        self._u = 0.0
        self._dt = 0.0
        self._n = 0
        # sums of w, w*x, w*y, w*x*x, w*x*y, w*y*y, w*w; x = t - newest t, y = u - newest u
        self._s0 = self._sx = self._sy = self._sxx = self._sxy = self._syy = self._sww = 0.0

    def update(self, t: float, usage: float) -> None:
        """Take one sample (in time order; others are ignored)."""
        if not t > self._t:
            return
        if self._n:
            gap = t - self._t
            self._dt = gap if self._n == 1 else self._dt + 0.1 * (gap - self._dt)
            tau = max(TAU_S, MIN_POINTS * self._dt)
            d = math.exp(-gap / tau)
            s0, sx, sy = self._s0 * d, self._sx * d, self._sy * d
            sxx, sxy, syy = self._sxx * d, self._sxy * d, self._syy * d
            self._sww *= d * d
            # re-centre on the new sample: x -= gap, y -= rise
            e = usage - self._u
            sxx = sxx - 2.0 * gap * sx + gap * gap * s0
            sxy = sxy - gap * sy - e * sx + gap * e * s0
            syy = syy - 2.0 * e * sy + e * e * s0
            sx -= gap * s0
            sy -= e * s0
            self._s0, self._sx, self._sy = s0, sx, sy
            self._sxx, self._sxy, self._syy = sxx, sxy, syy
        # the new sample sits at x = 0, y = 0: only the weight sums change
        self._s0 += 1.0
        self._sww += 1.0
        self._t = t
        self._u = usage
        self._n += 1

    def trend(self, limit: float | None) -> Trend:
        """The rate now, and the ETA to ``limit`` (bytes) at that rate."""
        if self._n < MIN_SAMPLES:
            return NO_TREND
        s0 = self._s0
        cxx = self._sxx - self._sx * self._sx / s0
        if cxx <= 0.0:
            return NO_TREND
        cxy = self._sxy - self._sx * self._sy / s0
        cyy = self._syy - self._sy * self._sy / s0
        rate = cxy / cxx
        residual = max(0.0, cyy - rate * cxy)
        n_eff = s0 * s0 / self._sww if self._sww > 0.0 else 0.0
        if n_eff > 2.0:
            error = SIGNIFICANCE * math.sqrt(residual / (cxx * (n_eff - 2.0)))
        else:
            error = abs(rate)
        if not (math.isfinite(rate) and math.isfinite(error)):
            return NO_TREND
        if limit is None or rate <= error:
            return Trend(rate, error, None, None, None)
        # where the line stands now (the newest sample sits at x = 0)
        level = self._u + (self._sy - rate * self._sx) / s0
        head = limit - max(self._u, level)
        if head <= 0.0:
            return Trend(rate, error, 0.0, 0.0, 0.0)
        slow = rate - error
        return Trend(
            rate,
            error,
            head / rate,
            head / (rate + error),
            head / slow if slow > 0.0 else None,
        )
