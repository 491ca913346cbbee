"""One time scale of the forecaster: a window cut into chunks, and the growth it shows.

A scale of window ``W`` keeps at most ``n`` chunk summaries (``W / n`` seconds each): when
the samples were taken, their mean, their peak and its time, their trough. When a chunk
closes, the scale cuts its history into three equal parts and compares them: a leak
raises the mean, the highest peak and the lowest trough of every part above those of the
part before, by more than the noise. A step up, a cache filling and stopping, a burst or
one phase of a cycle lifts at most some of them, or not in both steps. The growth is the
slower of the two part-to-part rises of the mean (a levelling-off shows as the slower
one); comparing parts instead of fitting inside them keeps step-wise leaks (job
residue, allocations in steps) visible. The peak envelope is then every chunk's peak
carried forward at that growth, and its maximum: where the next peak should be.
"""

from __future__ import annotations

import itertools
import math
from collections import deque

# A chunk: (mean time, mean usage, peak usage, time of the peak, trough usage).
Chunk = tuple[float, float, float, float, float]
# A closed bucket: (samples, sum of times, sum of usage, peak, time of peak, trough).
Bucket = tuple[int, float, float, float, float, float]

SEGMENTS = 3
"""The window is cut in this many equal parts; growth must show in every one."""
MIN_POINTS_PER_SEGMENT = 3
"""Fewer chunk means than this in a part give no slope."""
RESOLUTION = 1e-6
"""Growth across a third below this share of the usage is rounding, not growth."""
LEVELS_OFF = 0.5
"""Growth levels off when the later part-to-part rise is under this share of the earlier
one (a warm-up's exponential approach, a surge that settled)."""
MIN_COVERAGE = 0.5
"""A scale speaks once its history covers this share of its window."""


def _fit(points: list[Chunk]) -> tuple[float, float, float]:
    """Least-squares slope of mean usage over time, residual sum of squares, mean usage."""
    n = len(points)
    sx = sy = 0.0
    for p in points:
        sx += p[0]
        sy += p[1]
    mx = sx / n
    my = sy / n
    sxx = sxy = syy = 0.0
    for p in points:
        dx = p[0] - mx
        dy = p[1] - my
        sxx += dx * dx
        sxy += dx * dy
        syy += dy * dy
    if sxx <= 0.0:
        return 0.0, syy, my
    slope = sxy / sxx
    return slope, max(0.0, syy - slope * sxy), my


class Scale:
    """Chunk summaries over one window, and the growth and peak envelope they imply."""

    __slots__ = (
        "c_index",
        "c_max",
        "c_min",
        "c_n",
        "c_st",
        "c_su",
        "c_tmax",
        "chunk_buckets",
        "chunks",
        "env",
        "env_t",
        "level",
        "rise",
        "rise_dt",
        "slope",
        "slope_hi",
        "slope_last",
        "slope_within",
        "span",
        "window",
        "z",
    )

    def __init__(self, window: float, chunk_buckets: int, n: int, z: float) -> None:
        self.window = window
        self.z = z
        """Growth across one part must exceed this many residual standard deviations."""
        self.chunk_buckets = chunk_buckets
        self.chunks: deque[Chunk] = deque(maxlen=n)
        self.c_index = -1
        self.c_n = 0
        self.c_st = 0.0
        self.c_su = 0.0
        self.c_max = 0.0
        self.c_tmax = 0.0
        self.c_min = 0.0
        self.slope = 0.0
        """Growth of usage in bytes per second (0 when not growing or not ready)."""
        self.slope_hi = 0.0
        """The faster of the two half-window slopes."""
        self.slope_last = 0.0
        """The later of the two part-to-part slopes (above ``slope``: growth sped up)."""
        self.env = 0.0
        """Peak envelope at ``env_t`` (valid when ``span`` > 0)."""
        self.env_t = 0.0
        self.rise = 0.0
        """Mean usage of the last part minus that of the first (valid when ``span`` > 0) ..."""
        self.rise_dt = 0.0
        """... and the time between them."""
        self.level = math.inf
        """Where usage levels off when its growth slows from part to part (valid when
        ``slope`` > 0; infinite when it does not slow): the peak of the last part plus
        the rises still to come if each is as much smaller than the one before."""
        self.slope_within = 0.0
        """The least-squares slope of the chunk means inside the last part alone (valid
        when ``slope`` > 0)."""
        self.span = 0.0
        """How much history the last evaluation rested on (0: not ready)."""

    def add_bucket(self, bucket: int, summary: Bucket) -> bool:
        """Merge closed bucket number ``bucket``; True when this closed a chunk."""
        n, st, su, mx, tmx, mn = summary
        index = bucket // self.chunk_buckets
        closed = False
        if index != self.c_index:
            if self.c_n:
                self.chunks.append(
                    (
                        self.c_st / self.c_n,
                        self.c_su / self.c_n,
                        self.c_max,
                        self.c_tmax,
                        self.c_min,
                    )
                )
                closed = True
            self.c_index = index
            self.c_n = n
            self.c_st = st
            self.c_su = su
            self.c_max = mx
            self.c_tmax = tmx
            self.c_min = mn
            return closed
        self.c_n += n
        self.c_st += st
        self.c_su += su
        if mx > self.c_max:
            self.c_max = mx
            self.c_tmax = tmx
        self.c_min = min(self.c_min, mn)
        return closed

    def evaluate(self, now: float, since: float, noise: float) -> None:
        """Refit growth and envelope from the closed chunks; ``since``: start of history,
        ``noise``: the typical sample-to-sample change of usage."""
        chunks = self.chunks
        window = self.window
        while chunks and chunks[0][0] < now - window:
            chunks.popleft()
        kept_slope, kept_hi, kept_span = self.slope, self.slope_hi, self.span
        kept_last = self.slope_last
        self.slope = self.slope_hi = self.slope_last = 0.0
        self.span = 0.0
        if not chunks:
            return
        span = min(window, now - since)
        if span < MIN_COVERAGE * window:
            return
        start = now - span
        part = span / SEGMENTS
        segments: list[list[Chunk]] = [[] for _ in range(SEGMENTS)]
        for c in chunks:
            k = int((c[0] - start) // part)
            segments[k if 0 <= k < SEGMENTS else (0 if k < 0 else SEGMENTS - 1)].append(c)
        if min(len(seg) for seg in segments) < MIN_POINTS_PER_SEGMENT:
            if kept_slope > 0.0 and len(chunks) >= MIN_POINTS_PER_SEGMENT:
                # A part is empty because samples are missing (a gap), not because the
                # growth was refuted: the last verdict stands until the parts fill again.
                self.slope, self.slope_hi, self.span = kept_slope, kept_hi, kept_span
                self.slope_last = kept_last
            return
        self.span = span
        peak = max(c[2] for c in chunks)
        self.env = peak
        self.env_t = now
        # per part: mean time, mean level, highest peak, lowest trough, residual sum
        stats = []
        rss = 0.0
        for seg in segments:
            n = len(seg)
            st = su = 0.0
            hi = seg[0][2]
            lo = seg[0][4]
            for c in seg:
                st += c[0]
                su += c[1]
                if c[2] > hi:  # noqa: PLR1730 (hot path: no call)
                    hi = c[2]
                if c[4] < lo:  # noqa: PLR1730
                    lo = c[4]
            stats.append((st / n, su / n, hi, lo))
            within, residual, _ = _fit(seg)
            rss += residual
        self.slope_within = within  # the last part's
        self.rise = stats[-1][1] - stats[0][1]
        self.rise_dt = stats[-1][0] - stats[0][0]
        dof = len(chunks) - 2 * SEGMENTS
        sigma = (rss / dof) ** 0.5 if dof > 0 else 0.0
        margin = self.z * sigma
        level = abs(stats[0][1])
        slope = math.inf
        fastest = 0.0
        for a, b in itertools.pairwise(stats):
            rise = b[1] - a[1]
            if (
                rise <= margin
                or rise <= RESOLUTION * level
                or b[2] - a[2] <= noise
                or b[3] - a[3] <= noise
                or b[0] <= a[0]
            ):
                return
            s = rise / (b[0] - a[0])
            slope = min(slope, s)
            fastest = max(fastest, s)
        self.slope = slope
        self.slope_hi = fastest
        self.slope_last = s
        # each later rise this much smaller again: the rises still to come sum to last*r/(1-r)
        before = stats[-2][1] - stats[-3][1]
        last = stats[-1][1] - stats[-2][1]
        r = last / before  # both rose past the margin above: positive
        self.level = stats[-1][2] + last * r / (1.0 - r) if r < LEVELS_OFF else math.inf
        self.env = max(c[2] + slope * (now - c[3]) for c in chunks)
