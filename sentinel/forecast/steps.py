"""Step-wise growth: usage that climbs in held steps (allocations in chunks, job residue).

A straight line through a staircase projects the kill when the line reaches the limit;
the kernel kills at the step that crosses it, which may be the very next one. This
clock times the steps: a *rise* is usage climbing a threshold above its lowest point
since the last rise, and above its lowest point of the last few minutes (a step, not a
slope). When the last rise left usage higher than the two before it did (usage may
have fallen back in between: rises of one size on a baseline that climbs) and it stays
there, and the usual (median) rise is larger than the headroom left, the kill is
projected at the next rise: the shortest time seen between two rises after the last
one. Steps at regular intervals are timed; irregular ones may come at any moment, so
the kill is then projected now.

Pure and incremental: O(1) per sample; a rise (rare) costs a sort of a few numbers.
"""

from __future__ import annotations

import itertools
import math
from collections import deque

MEMORY = 8
"""Rises remembered (and the medians taken over)."""
MIN_RISES = 3
"""Fewer rises than this say nothing about a staircase."""
MAX_AGE_S = 86400.0
"""Rises older than this are forgotten."""
STAIR_MAX_STEP = 0.1
"""The steps of a staircase are at most this share of the limit each."""
STAIR_GAP_S = 600.0
"""A staircase's steps are this far apart at least: rises closer together are a burst."""
STAIR_TREAD = 2.0
"""... and each step lifts the level by at most this many usual rises: a level that rose
more between two rises climbed in between (a ramp, not a staircase)."""
STAIR_HOLD_S = 300.0
"""... and the last step has held this long."""
REGULAR = 1.5
"""Steps come at regular intervals when the longest gap between them is at most this many
times the shortest."""


class Steps:
    """Times and sizes of the held rises of one target's usage."""

    __slots__ = ("_gap", "_low_since", "_rises", "_size", "_trough")

    def __init__(self) -> None:
        self._rises: deque[tuple[float, float, float]] = deque(maxlen=MEMORY)
        """(time, size, level after) of each rise."""
        self._trough = math.inf
        self._low_since = math.inf
        """The lowest usage since the last rise."""
        self._size = 0.0
        self._gap = 0.0

    def update(self, x: float, usage: float, threshold: float, recent_low: float) -> None:
        """Take one sample (``x``: seconds since history began; ``recent_low``: the lowest
        usage of the last few minutes)."""
        self._low_since = min(self._low_since, usage)
        if usage < self._trough:
            self._trough = usage
        elif usage > self._trough + threshold:
            if usage < recent_low + threshold:
                self._trough = usage  # a gradual climb: no step
                return
            rises = self._rises
            rises.append((x, usage - self._trough, usage))
            self._trough = usage
            self._low_since = usage
            while rises and rises[0][0] < x - MAX_AGE_S:
                rises.popleft()
            sizes = sorted(r[1] for r in rises)
            self._size = sizes[len(sizes) // 2]
            gaps = sorted(b[0] - a[0] for a, b in zip(rises, list(rises)[1:], strict=False))
            # Regular steps are timed by the shortest gap; irregular ones (gaps further
            # apart than REGULAR) may come at any moment: the next one is not timed.
            self._gap = gaps[0] if gaps and gaps[-1] <= REGULAR * gaps[0] else 0.0

    def eta(self, x: float, usage: float, limit: float, threshold: float) -> float | None:
        """Seconds to the next rise when that rise would cross ``limit``; else None."""
        rises = self._rises
        if len(rises) < MIN_RISES:
            return None
        last_x, _, level = rises[-1]
        if usage < level - threshold or x - last_x > MAX_AGE_S:
            return None  # the last step was not held
        if max(rises[-3][2], rises[-2][2]) >= level:
            return None  # not a staircase: the same rise again and again
        if self._size < limit - usage:
            return None
        return max(0.0, self._gap - (x - last_x))

    def staircase(self, x: float, limit: float, threshold: float) -> bool:
        """Whether the last rises are a slow staircase of small steps: the usual rise at
        most STAIR_MAX_STEP of ``limit``, each of the last three rises at least STAIR_GAP_S
        after the one before, the level lifted between them by no more than STAIR_TREAD
        usual rises, and the last step held (never ``threshold`` below its level) for
        STAIR_HOLD_S. (A jump of a good share of the limit, a burst of rises within
        minutes, a level that climbed between two rises, or a peak that falls back, is a
        batch loading, a surge, a ramp or a GC cycle, as healthy services show.)"""
        rises = self._rises
        if len(rises) < MIN_RISES or self._size > STAIR_MAX_STEP * limit:
            return False
        last = list(rises)[-MIN_RISES:]
        last_x, _, level = last[-1]
        if x - last_x < STAIR_HOLD_S or self._low_since < level - threshold:
            return False
        return all(
            b[0] - a[0] >= STAIR_GAP_S and b[2] - a[2] <= STAIR_TREAD * self._size
            for a, b in itertools.pairwise(last)
        )
