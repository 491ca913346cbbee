"""The fast start: a confident ETA for a leak that starts with its target.

It looks only at a target's start: the first ``MAX_SPAN_S`` after its history begins (a
new target, or one the caller knows restarted: :meth:`FastLeak.reset`). The whole start
must be one straight rising line: a service that leaks from the moment it starts and
may die before the main forecaster has seen enough.

The main forecaster wants tens of minutes of history before it projects a kill: it has to
tell a leak from GC sawtooth, batch peaks and caches warming up. A container leaking
megabytes per second will be dead by then. :class:`FastLeak` covers that case, and only
that case: it projects a kill when the samples since the start are

- many enough (``MIN_SAMPLES``) over long enough (``MIN_SPAN_S``);
- on a straight rising line (least squares, R² >= ``MIN_R2``), not a sawtooth (no drop
  of more than ``MAX_DROP`` of the limit since the start: after one, it stays silent);
- not slowing down (the newer half of the window, and its newest 4 samples, rise at least
  ``MIN_KEEP_UP`` as fast as the older half: a cache warming up or a job reaching its
  working size levels off, a leak does not);

and when the evidence that the line will go on is strong enough for how far ahead it
projects. A straight line at the start is a leak, or a batch job loading its data, or a
bounded queue filling: they look the same until the ramp stops. So:

- a *known leaker* (the caller says the kernel killed this target before, or its own
  previous run climbed to the limit) is trusted as soon as the line holds, for kills up
  to ``HORIZON`` times the span observed;
- any other target is trusted once the line has climbed past ``YOUNG_GATE`` of the limit
  and past the highest level an earlier run held (``ceiling``: a ramp that stopped there
  before will likely stop there again), for kills up to ``YOUNG_HORIZON`` times the span
  observed: ramps that stop do so below that (batch working sets, queue capacities);
- and a kill within ``MAX_ETA_S`` is projected regardless: no room is left to wait.

Pure and incremental: running sums make each sample O(1); the slowing-down check runs
only when everything else already says "leak".
"""

from __future__ import annotations

import math
from collections import deque

MIN_SAMPLES = 12
MIN_SPAN_S = 20.0
MAX_SPAN_S = 3 * 3600.0
MAX_SAMPLES = 256
MIN_R2 = 0.97
MAX_DROP = 0.05
MIN_KEEP_UP = 0.75
HORIZON = 3.0
"""A known leaker's kill is projected up to this many times the span its line rests on."""
MAX_ETA_S = 45.0
"""A kill this close is projected for any target: a job's ramp at start looks exactly like
a leak, but one that would fill the limit within a minute has left no room to wait."""
YOUNG_GATE = 0.92
"""Any other target's line must have climbed past this share of the limit ..."""
YOUNG_HORIZON = 1.0
"""... and project the kill within this many times the span it rests on."""
CEILING_MARGIN = 0.05
"""... and stand this share of the limit above the highest level an earlier run held."""


class FastLeak:
    """Straight-line leak detector over a sliding window of recent samples."""

    __slots__ = (
        "_broken",
        "_n",
        "_samples",
        "_st",
        "_stt",
        "_stu",
        "_su",
        "_suu",
        "_t0",
        "slope",
        "straight",
    )

    def __init__(self) -> None:
        self.slope = 0.0
        """Growth of the line behind the last ETA given (bytes/s; 0 when none)."""
        self.straight = False
        """The whole history so far is one straight rising line (whether or not it is
        trusted yet): a start that a ramp and a leak share, where only this class speaks."""
        self._broken = False
        self._samples: deque[tuple[float, float]] = deque()
        self._t0 = 0.0
        self._n = 0
        self._st = self._su = self._stt = self._stu = self._suu = 0.0

    @property
    def span(self) -> float:
        """Seconds of history the line rests on."""
        if not self._samples:
            return 0.0
        return self._samples[-1][0] - self._samples[0][0]

    def reset(self) -> None:
        """Start over (the target restarted)."""
        self._broken = False
        self._samples.clear()
        self._n = 0
        self._st = self._su = self._stt = self._stu = self._suu = 0.0

    def _add(self, t: float, u: float) -> None:
        x = t - self._t0
        self._samples.append((t, u))
        self._n += 1
        self._st += x
        self._su += u
        self._stt += x * x
        self._stu += x * u
        self._suu += u * u

    def update(
        self,
        t: float,
        usage: float,
        limit: float | None,
        *,
        known_leaker: bool = False,
        ceiling: float = 0.0,
    ) -> float | None:
        """Take one sample (in time order); the projected seconds to the kill, or None.

        ``known_leaker``: the target leaked to its limit before; ``ceiling``: the highest
        usage (bytes) an earlier run of the target held without being killed."""
        self.straight = False
        samples = self._samples
        if self._broken:
            return None
        if samples:
            last_t, last_u = samples[-1]
            if t <= last_t:
                return None
            if limit is not None and last_u - usage > MAX_DROP * limit:
                # Memory was freed: GC, a job ending, a cache dropped. Whatever grows now is
                # no straight line from the start; the main forecaster reads the cycles.
                self._broken = True
                self.slope = 0.0
                return None
        if not samples:
            self._t0 = t
        elif t - samples[0][0] > MAX_SPAN_S:
            return None  # past the start: the main forecaster's call
        self._add(t, usage)
        while len(samples) > MAX_SAMPLES:
            self._thin()
        eta = self._eta(t, usage, limit, known_leaker, ceiling)
        if eta is None:
            self.slope = 0.0
        return eta

    def _thin(self) -> None:
        """Keep every other sample: the window still covers the whole start, in half."""
        kept = list(self._samples)[::2]
        if kept[-1] != self._samples[-1]:
            kept.append(self._samples[-1])
        self.reset()
        self._t0 = kept[0][0]
        for t, u in kept:
            self._add(t, u)

    def _eta(
        self, t: float, usage: float, limit: float | None, known_leaker: bool, ceiling: float
    ) -> float | None:
        n = self._n
        if limit is None or n < MIN_SAMPLES:
            return None
        span = t - self._samples[0][0]
        if span < MIN_SPAN_S:
            return None
        sxx = self._stt - self._st * self._st / n
        sxy = self._stu - self._st * self._su / n
        syy = self._suu - self._su * self._su / n
        if sxx <= 0.0 or syy <= 0.0 or sxy <= 0.0:
            return None
        slope = sxy / sxx
        r2 = sxy * sxy / (sxx * syy)
        if r2 < MIN_R2 or not math.isfinite(slope):
            return None
        self.straight = True
        eta = (limit - usage) / slope
        self.slope = slope
        if eta > MAX_ETA_S:
            if known_leaker:
                if eta > HORIZON * span:
                    return None
            else:
                level = (self._su + slope * ((t - self._t0) * n - self._st)) / n
                gate = max(YOUNG_GATE * limit, ceiling + CEILING_MARGIN * limit)
                if level < gate or eta > YOUNG_HORIZON * span:
                    return None
        if not self._steady(limit):
            return None
        return max(0.0, eta)

    def _steady(self, limit: float) -> bool:
        """No sawtooth drop inside the window, and the newer half keeps up its pace."""
        samples = list(self._samples)
        peak = samples[0][1]
        for _, u in samples:
            if peak - u > MAX_DROP * limit:
                return False
            peak = max(peak, u)
        half = len(samples) // 2
        older = _slope(samples[: half + 1])
        newer = _slope(samples[half:])
        latest = _slope(samples[-4:])
        return older > 0.0 and min(newer, latest) >= MIN_KEEP_UP * older


def _slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(p[0] for p in points) / n
    mu = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mt) ** 2 for p in points)
    if sxx <= 0.0:
        return 0.0
    return sum((p[0] - mt) * (p[1] - mu) for p in points) / sxx
