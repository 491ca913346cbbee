"""One time scale of the forecaster: a window cut into chunks, and the growth it shows.

A scale of window ``W`` keeps at most ``n`` chunk summaries (``W / n`` seconds each): when
the samples were taken, their mean, their peak and its time, their trough. When a chunk
closes, the scale fits a straight line through the chunk means of each half of the window
and takes the *smaller* of the two slopes: a leak grows in both halves, while a step (a
batch job starting, a cache filling and stopping, a burst) shows in only one. The slope
counts only when the growth it implies across half the window stands clear of the
chunk-to-chunk noise. The peak envelope is then every chunk's peak carried forward at that
slope, and its maximum: where the next peak should be.
"""

from __future__ import annotations

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
        "slope",
        "slope_hi",
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
        self.env = 0.0
        """Peak envelope at ``env_t`` (valid when ``span`` > 0)."""
        self.env_t = 0.0
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

    def evaluate(self, now: float, since: float) -> None:
        """Refit slope and envelope from the closed chunks; ``since``: start of history."""
        chunks = self.chunks
        window = self.window
        while chunks and chunks[0][0] < now - window:
            chunks.popleft()
        self.slope = self.slope_hi = 0.0
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
            return
        fits = [_fit(seg) for seg in segments]
        self.span = span
        slope = min(f[0] for f in fits)
        peak = max(c[2] for c in chunks)
        if slope > 0.0:
            dof = len(chunks) - 2 * SEGMENTS
            sigma = (sum(f[1] for f in fits) / dof) ** 0.5 if dof > 0 else 0.0
            level = abs(fits[0][2])
            if slope * part > self.z * sigma and slope * part > RESOLUTION * level:
                self.slope = slope
                self.slope_hi = max(f[0] for f in fits)
                peak = max(c[2] + slope * (now - c[3]) for c in chunks)
        self.env = peak
        self.env_t = now
