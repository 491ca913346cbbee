"""The incremental OOM forecaster: (t, usage, limit) samples in, time to the kill out.

How it works, in short:

* Samples are summed into 75 s buckets; each closed bucket is merged into five scales
  (windows of 20 min, 1 h, 3 h, 8 h and 24 h, sixteen chunks each). Memory per target is
  bounded (at most 16 chunks per scale and a few dozen drop times); work per sample is a
  handful of comparisons, and a chunk closing costs one pass over 16 chunks.
* Each scale (see :mod:`sentinel.forecast.scale`) compares the three parts of its
  window: growth counts only when the mean, the highest peak and the lowest trough all
  rise from part to part by more than the noise. Its peak envelope carries every chunk's
  peak forward at that growth: kills happen at peaks, so with a GC sawtooth or periodic
  job spikes the projection starts from the peaks, not from the mean.
* Periodic drops (GC, batch jobs ending, a daily cycle's evening) are timed; a scale whose
  parts are shorter than the typical (median) period would read one phase of the cycle
  as growth, so it is not used. A 3-day scale sees daily cycles through.
* The forecast rests on the longest usable scale that sees growth (the steadiest slope),
  unless a shorter one sees growth clearly faster (the leak sped up, or just began); the
  kill is the moment that scale's envelope reaches the limit. The 20-minute scale is
  never used alone: a rise that short is a burst or a ramp as often as a leak.
* Growth that stopped (a cache warmed up, a queue filled) is told by a shorter window
  (the 20-minute one too) that saw less than half the rise the chosen growth implies,
  or by the last minutes' highs: had the growth gone on, an earlier high carried forward
  at its rate would stand clearly above every later one. No kill is projected. A day-long
  or longer window whose growth slows from third to third (each rise under half the one
  before) is not used while the level it tends to stays under the limit (a slow warm-up),
  nor a day-long window whose last eight hours are flat (a surge that settled).
* Usage that climbs in held steps (see :mod:`sentinel.forecast.steps`) is killed by the
  step that crosses the limit: once the usual step is larger than the headroom left,
  the kill is projected at the next step, provided a scale sees growth.
* A kill sooner than 20 minutes is not projected while the last hour's peak stays under
  80% of the limit: a trace that stays that low is never restarted.
* Usage falling far below anything seen in the last hour is a restart: history starts
  over; unless the last three hours saw it that low too and no growth led up to the
  fall (a job's plateau ended). Gaps leave chunks empty, which the fits skip. A new
  limit is used from the sample that carries it.
"""

from __future__ import annotations

import itertools
import math
from collections import deque

from sentinel.forecast.fast import CEILING_MARGIN, FastLeak
from sentinel.forecast.observed import Observed
from sentinel.forecast.scale import SEGMENTS, Scale
from sentinel.forecast.steps import Steps
from sentinel.forecast.types import Forecast

BUCKET_S = 75.0
"""Width of the finest summary; every chunk width below is a multiple of it."""

SCALES: tuple[tuple[float, int, float], ...] = (
    (1200.0, 16, 2.0),
    (3600.0, 16, 2.0),
    (10800.0, 16, 1.0),
    (28800.0, 16, 0.5),
    (86400.0, 16, 0.5),
    (259200.0, 16, 0.5),
)
"""(window in seconds, chunks per window, significance) of every scale, shortest first.

Significance: how many residual standard deviations of the chunk means the growth across
a third of the window must exceed. Short windows need more: noise there reads as fast
growth, which projects a near kill; on long windows it reads as slow growth, harmless."""

SHORTEST_USED = 1
"""Scales shorter than this index only feed the drop clock and the hour's peak: growth
seen over 20 minutes is a burst, a ramp or a warm-up as often as a leak."""
DAY_SCALE = next(i for i, (window, _, _) in enumerate(SCALES) if window == 86400.0)
"""The day-long window's index. It and the longer ones are not used while their growth levels
off below the limit (see ``Scale.level``): a warm-up approaching its plateau over hours
still rises across a day, and its noise peaks carried forward at the day's rate cross
the limit. Shorter windows are not judged so: a staircase's parts rise unevenly."""
SETTLED_SHARE = 0.25
"""The day-long window is not used while its own last third (8 hours) is flat: the
slope inside that third under this share of the window's growth, which would have
raised usage by STOPPED_RISE of the limit over it. Its growth came earlier and settled
(a surge to a new level, then hours flat), though a cycle's drops keep the shorter
windows that see the flat from judging it. (The 3-day window's thirds are days: a daily
cycle's phase tilts them; and a daily cycle keeps the day-long window unused.)"""
PERIOD_MIN_DROPS = 2
PERIODS_PER_WINDOW = 3.0
"""A scale is used only when its window holds this many drop-to-drop periods (over one a third)."""
PERIODS_SEEN = 2.0
"""... except the 3-day window (its parts are days: a daily cycle averages out) and, while
that one has not spoken, the longest window that has (no longer one to defer to): it
needs to see the cycle twice, its rise is then across cycles, not one cycle's phase."""
DROP_FRACTION = 0.05
"""A fall of this share of the limit from the last peak counts as a drop (GC, job end)."""
DROP_NOISE = 8.0
"""... and of at least this many mean sample-to-sample differences."""
DROP_MEMORY_S = 259200.0
"""Drops older than this no longer say anything about the period (the longest window:
it must hold two drops of a daily cycle)."""
MIN_HISTORY_S = 900.0
"""No forecast before this much history: a ramp, a batch job or a GC cycle under way at
start-up looks like growth until one has been seen through."""
ACCELERATION = 1.5
"""A shorter window overrides a longer one when it sees growth this many times faster."""
CONFIRMS = 1.1
"""A longer window whose last part grew faster than its whole (the leak sped up, or began
within it) yields to a shorter window that confirms that later speed to within this
factor: the shorter one's growth times CONFIRMS at least the longer one's last part."""
HEADROOM_GATE = 0.8
SOON_S = 1200.0
"""While the last hour's peak stays under this share of the limit, no kill sooner than
SOON_S is projected: growth that fast from that far below the limit is a burst or a
warm-up far more often than a leak, and a leak that fast crosses the gate with time to
spare."""
SOON_PERIOD_S = 3600.0
"""... and while periodic drops come further apart than this (a job every two hours), the
peak of the last cycle counts too (the 3-hour window's): a job leak is killed at its next
spike, which the last hour, spent between spikes, does not show."""
STOPPED_RISE = 0.03
STOPPED_SHARE = 0.5
"""Growth has stopped (a cache warmed up, a queue filled) when a shorter window, over
which the growth would have raised usage by this share of the limit, saw less than this
share of that rise."""
STALL_BUCKETS = 16
STALL_NOISE = 4.0
STALL_FRACTION = 0.01
"""Growth has stalled when, over the last STALL_BUCKETS buckets since the last drop, it
would have lifted an earlier high above every later one by this many mean
sample-to-sample differences plus this share of the limit: a fill or a burst stopped."""
STALL_NOISE_ACYCLIC = 2.0
"""STALL_NOISE while no periodic drops are known (a first climb after calm): white noise
inflates the mean difference, and with no cycle to ride out (a job leak sits flat between
its spikes, which only a cycle's drops reveal) a climb that stopped is told sooner (a batch
peak, stacked bursts: generated-8 4 -> 2 false restarts, no catch lost on any set)."""
STEP_FRACTION = 0.02
"""A climb of this share of the limit (or DROP_NOISE mean differences) is a step."""
RESTART_FRACTION = 0.10
"""Usage this share of the limit below the last hour's trough is a restart ..."""
RESTART_RATIO = 0.7
"""... when it is also below this share of that trough."""
LEAKED_ETA_S = 3600.0
LEAKED_PEAK = 0.95
"""A run that ended with a kill projected within LEAKED_ETA_S, or still rising at this
share of its limit, leaked: the next run's straight line from its start is trusted early."""


class Forecaster:
    """Forecasts one target's OOM kill from its samples. Pure: no clock, no I/O.

    Feed samples in time order with :meth:`update` (fast, returns the ETA) or
    :meth:`feed` (returns a :class:`Forecast`). Out-of-order, repeated or non-finite
    samples are ignored; nothing here raises on odd input.
    """

    __slots__ = (
        "_b_index",
        "_b_max",
        "_b_min",
        "_b_n",
        "_b_st",
        "_b_su",
        "_b_tmax",
        "_best",
        "_best_eta",
        "_dev",
        "_drain_low",
        "_drops",
        "_fast",
        "_fast_eta",
        "_floor",
        "_floor_long",
        "_last_eta",
        "_last_t",
        "_last_u",
        "_leaked_before",
        "_life_peak",
        "_limit",
        "_long_cycle",
        "_lows",
        "_observed",
        "_origin",
        "_peak_since_drop",
        "_recent",
        "_scales",
        "_seen",
        "_seen_long",
        "_since",
        "_stall_anchor",
        "_stall_k",
        "_stall_max",
        "_steps",
        "_trough_since_drop",
        "ceiling",
        "constraint",
        "known_leaker",
        "restarts",
    )

    def __init__(self, limit_bytes: float | None = None, constraint: str = "cgroup") -> None:
        self._limit = limit_bytes
        self.constraint = constraint
        self.restarts = 0
        """How many times usage fell so far that history started over."""
        self.known_leaker = False
        """The caller's hint: the kernel killed this target before, at this limit, while it
        grew (the daemon knows its kills). A straight line from its start is then trusted
        early (see :mod:`sentinel.forecast.fast`)."""
        self._leaked_before = False
        """An earlier run of this target climbed to its limit (or to a projected kill)."""
        self.ceiling = 0.0
        """The highest usage an earlier run held without climbing to the limit (bytes): a
        ramp that stopped there before is not trusted to go on below it."""
        self._last_t = -math.inf
        self._last_u = 0.0
        self._observed = Observed()
        self._reset()

    def _reset(self) -> None:
        self._origin = math.nan
        self._since = 0.0
        self._b_index = -1
        self._b_n = 0
        self._b_st = 0.0
        self._b_su = 0.0
        self._b_max = 0.0
        self._b_tmax = 0.0
        self._b_min = 0.0
        self._scales = [
            Scale(window, round(window / n / BUCKET_S), n, z) for window, n, z in SCALES
        ]
        self._best: Scale | None = None
        self._best_eta: float | None = None
        self._drops: deque[float] = deque(maxlen=48)
        self._peak_since_drop = -math.inf
        self._trough_since_drop = math.inf
        self._drain_low = math.inf
        self._recent: deque[tuple[float, float]] = deque(maxlen=STALL_BUCKETS)
        self._stall_anchor = -math.inf
        self._stall_max = math.inf
        self._stall_k = STALL_NOISE
        self._dev = 0.0
        self._floor = math.inf
        self._floor_long = math.inf
        self._seen = 0.0
        self._seen_long = 0.0
        self._long_cycle = False
        self._fast = FastLeak()
        self._steps = Steps()
        self._lows: deque[float] = deque((math.inf, math.inf, math.inf), maxlen=3)
        self._fast_eta: float | None = None
        self._last_eta: float | None = None
        self._life_peak = 0.0
        self._observed.reset()

    def _end_run(self) -> None:
        """Remember how the run that ends now went: it climbed to its limit (a leaker),
        or it held a highest level (a ceiling its ramps stop at)."""
        lim = self._limit
        if lim is None or math.isnan(self._origin):
            return
        trend = self._observed.trend(lim)
        eta = self._last_eta
        if (eta is not None and eta <= LEAKED_ETA_S) or (
            self._life_peak >= LEAKED_PEAK * lim and trend.rate > trend.error
        ):
            self._leaked_before = True
        elif self._life_peak > self.ceiling and trend.rate <= trend.error:
            # it rose to a level, held it or fell back from it, and was not killed there
            # (a run restarted while still rising says nothing about where it stops)
            self.ceiling = self._life_peak

    @property
    def leaker(self) -> bool:
        """Known to leak: the caller's hint, or an earlier run climbed to its limit."""
        return self.known_leaker or self._leaked_before

    def reset(self) -> None:
        """Forget the history (the target restarted: the caller knows it for sure); how
        the run went is remembered (see :attr:`ceiling` and :attr:`leaker`)."""
        self.restarts += 1
        self._end_run()
        self._reset()

    @property
    def limit_bytes(self) -> float | None:
        return self._limit

    def update(
        self, t: float, usage: float, limit: float | None = None, constraint: str | None = None
    ) -> float | None:
        """Take one sample; return the seconds until the projected kill, or None.

        ``limit`` (bytes) replaces the current limit when given; ``constraint`` names it.
        """
        if constraint is not None:
            self.constraint = constraint
        limit_changed = False
        if limit is not None and not math.isnan(limit) and limit != self._limit:
            self._limit = limit if limit > 0 else None
            limit_changed = True
        if not (t > self._last_t and math.isfinite(t) and math.isfinite(usage)):
            return self._eta_at(self._last_t, self._last_u) if limit_changed else None
        prev_usage = self._last_u if self._last_t != -math.inf else usage
        self._last_t = t
        self._last_u = usage
        lim = self._limit

        if usage < self._floor < math.inf and self._restarted(usage, lim):
            self.restarts += 1
            self._end_run()
            self._reset()
            self._drain_low = usage
        elif self._drain_low < math.inf:
            if usage < self._drain_low:
                # Still falling since the restart: the old run draining away (a queue
                # emptying, memory freed over seconds). The new run starts at the bottom;
                # a peak of the fall would be carried forward as the new run's envelope.
                self._reset()
                self._drain_low = usage
            elif usage > self._drain_low + STEP_FRACTION * (lim or self._drain_low):
                self._drain_low = math.inf  # rising again: the new run is under way
        self._observed.update(t, usage)
        self._life_peak = max(self._life_peak, usage)

        origin = self._origin
        if math.isnan(origin):
            origin = self._origin = t
            self._since = 0.0
            self._peak_since_drop = usage
        x = t - origin

        # Drops: the clock of GC cycles and periodic jobs.
        self._dev += 0.05 * (abs(usage - prev_usage) - self._dev)
        trough = self._trough_since_drop
        if trough == math.inf:
            if usage > self._peak_since_drop:
                self._peak_since_drop = usage
            else:
                threshold = DROP_NOISE * self._dev
                if lim is not None and DROP_FRACTION * lim > threshold:
                    threshold = DROP_FRACTION * lim
                if usage < self._peak_since_drop - threshold:
                    self._drops.append(x)
                    self._peak_since_drop = usage
                    self._trough_since_drop = usage
        elif usage < trough:
            self._trough_since_drop = usage
        else:
            # Falling since the last drop: a cycle has one drop however slowly it falls (a
            # day's evening, a queue draining); the next counts once usage rose again by
            # as much (a new cycle).
            threshold = DROP_NOISE * self._dev
            if lim is not None and DROP_FRACTION * lim > threshold:
                threshold = DROP_FRACTION * lim
            if usage > trough + threshold:
                self._trough_since_drop = math.inf
                self._peak_since_drop = usage
        if lim is not None:
            low = min(self._b_min, self._lows[0], self._lows[1], self._lows[2])
            self._steps.update(
                x, min(usage, lim), max(DROP_NOISE * self._dev, STEP_FRACTION * lim), low
            )

        bucket = int(x // BUCKET_S)
        if bucket != self._b_index:
            if self._b_n:
                self._close_bucket(x)
            self._b_index = bucket
            self._b_n = 1
            self._b_st = x
            self._b_su = usage
            self._b_max = usage
            self._b_tmax = x
            self._b_min = usage
        else:
            self._b_n += 1
            self._b_st += x
            self._b_su += usage
            if usage > self._b_max:
                self._b_max = usage
                self._b_tmax = x
            if usage < self._b_min:  # noqa: PLR1730 (hot path: no call)
                self._b_min = usage
        if limit_changed:
            self._choose(x)
        slow = self._eta_at(t, usage)
        fast = self._fast_eta = self._fast.update(
            t, usage, lim, known_leaker=self.leaker, ceiling=self.ceiling
        )
        if self._fast.straight and not self.leaker:
            # One straight line since the start: a leak, or a ramp that will stop (a batch
            # job loading, a queue filling). The fast start's gates decide; the envelope
            # would read the ramp as a leak.
            slow = None
        elif (
            slow is not None
            and lim is not None
            and self.ceiling > 0.0
            and not self.leaker
            and max(self._seen, self._b_max, usage) < self.ceiling + CEILING_MARGIN * lim
        ):
            # An earlier run rose to this level and stopped there without a kill (a queue
            # filled to its capacity, a job loaded its working set): a rise back to it is
            # that again until it climbs clearly past it.
            slow = None
        eta = fast if fast is not None and (slow is None or fast < slow) else slow
        self._last_eta = eta
        return eta

    def _restarted(self, usage: float, lim: float | None) -> bool:
        """Usage fell far below the last hour's trough: a restart, unless it only went
        back to where it stood before a job's plateau (no growth led up to the fall, and
        the last three hours' trough is no higher)."""
        for floor in (self._floor, self._floor_long):
            drop = RESTART_FRACTION * (lim if lim is not None else floor)
            if not (usage < floor - drop and usage < RESTART_RATIO * floor):
                return floor is not self._floor and any(
                    s.slope > 0.0 for s in self._scales[SHORTEST_USED : SHORTEST_USED + 2]
                )
        return True

    def _eta_at(self, t: float, usage: float) -> float | None:
        lim = self._limit
        if lim is None or t == -math.inf:
            return None
        if usage >= lim:
            return 0.0
        best = self._best
        x = t - self._origin
        step = (
            self._steps.eta(x, usage, lim, max(DROP_NOISE * self._dev, STEP_FRACTION * lim))
            if x >= MIN_HISTORY_S and usage >= HEADROOM_GATE * lim
            else None
        )
        if best is None:
            # no window sees growth (a staircase's flat treads read as none): its steps
            # alone say leak when they climb slowly and in held steps, not in a burst
            threshold = max(DROP_NOISE * self._dev, STEP_FRACTION * lim)
            return step if step is not None and self._steps.staircase(x, lim, threshold) else None
        if self._stall_anchor + best.slope * x - max(self._stall_max, self._b_max) > (
            self._stall_k * self._dev + STALL_FRACTION * lim
        ):
            return step  # growth at this rate would have made a new high by now
        env = best.env + best.slope * (x - best.env_t)
        env = max(env, usage)
        eta = (lim - env) / best.slope
        if eta < SOON_S:
            seen = max(self._seen, self._b_max, usage)
            if self._long_cycle and self._seen_long > seen:
                seen = self._seen_long  # a cycle longer than the hour: its last peak
            if seen < HEADROOM_GATE * lim:
                return SOON_S
        if step is not None and step < eta:
            return step
        return eta if eta > 0.0 else 0.0

    def _close_bucket(self, now: float) -> None:
        changed = False
        bucket = self._b_index
        self._recent.append((self._b_tmax, self._b_max))
        self._lows.append(self._b_min)
        closed = (self._b_n, self._b_st, self._b_su, self._b_max, self._b_tmax, self._b_min)
        for i, scale in enumerate(self._scales):
            if scale.add_bucket(bucket, closed):
                scale.evaluate(now, self._since, self._dev)
                changed = True
                if i == 1:
                    self._floor = min((c[4] for c in scale.chunks), default=math.inf)
                    self._seen = max((c[2] for c in scale.chunks), default=0.0)
                elif i == 2:
                    self._floor_long = min((c[4] for c in scale.chunks), default=math.inf)
                    self._seen_long = max((c[2] for c in scale.chunks), default=0.0)
        if changed:
            self._choose(now)

    def _period(self, now: float) -> float:
        """The typical (median) time between the drops of the last days; 0 if under two."""
        drops = self._drops
        while drops and drops[0] < now - DROP_MEMORY_S:
            drops.popleft()
        if len(drops) < PERIOD_MIN_DROPS:
            return 0.0
        gaps = sorted(b - a for a, b in itertools.pairwise(drops))
        n = len(gaps)
        return gaps[n // 2] if n % 2 else (gaps[n // 2 - 1] + gaps[n // 2]) / 2.0

    def _choose(self, now: float) -> None:
        """Pick the scale to project with: the longest usable one that sees growth, or a
        shorter one whose growth is clearly faster (the leak sped up, or just began)."""
        self._best = None
        if self._limit is None or now < MIN_HISTORY_S:
            return
        period = self._period(now)
        self._stall_k = STALL_NOISE if period > 0.0 else STALL_NOISE_ACYCLIC
        self._long_cycle = period > SOON_PERIOD_S
        best: Scale | None = None
        last = len(self._scales) - 1
        longest = last
        while longest > SHORTEST_USED and self._scales[longest].span <= 0.0:
            longest -= 1  # the longest window that has spoken: no longer one to defer to
        for i in range(last, SHORTEST_USED - 1, -1):
            scale = self._scales[i]
            if scale.span <= 0.0 or scale.slope <= 0.0:
                continue
            if i >= DAY_SCALE and scale.level < self._limit:
                continue
            if (
                i == DAY_SCALE
                and scale.slope_within < SETTLED_SHARE * scale.slope
                and scale.slope * scale.span / SEGMENTS >= STOPPED_RISE * self._limit
            ):
                continue
            if (
                i < last
                and scale.span < (PERIODS_PER_WINDOW if i < longest else PERIODS_SEEN) * period
            ):
                continue
            if (
                best is None
                or scale.slope > ACCELERATION * best.slope
                or best.slope < best.slope_last <= CONFIRMS * scale.slope
            ):
                # clearly faster; or the longer window saw its own growth speed up and
                # this shorter one confirms the later speed: an accelerating leak
                best = scale
        if best is not None:
            # growth that stopped: a shorter window saw far less rise than it implies
            for scale in self._scales:
                if scale is best:
                    break
                if scale.span <= 0.0 or scale.span < PERIODS_PER_WINDOW * period:
                    continue
                expected = best.slope * scale.rise_dt
                if expected >= STOPPED_RISE * self._limit and scale.rise < STOPPED_SHARE * expected:
                    best = None
                    break
        self._best = best
        if best is not None:
            # the highs of the last minutes since the last drop, for the stall test
            last_drop = self._drops[-1] if self._drops else -math.inf
            recent = [(tm, m) for tm, m in self._recent if tm >= last_drop]
            if recent:
                self._stall_anchor = max(m - best.slope * tm for tm, m in recent)
                self._stall_max = max(m for _, m in recent)
            else:
                self._stall_anchor = -math.inf

    def feed(
        self, t: float, usage: float, limit: float | None = None, constraint: str | None = None
    ) -> Forecast:
        """Take one sample (like :meth:`update`) and return the whole forecast."""
        eta = self.update(t, usage, limit, constraint)
        return self.forecast(t, usage, eta)

    def forecast(self, t: float, usage: float, eta: float | None) -> Forecast:
        """The :class:`Forecast` after the sample (t, usage) that returned ``eta``."""
        best = self._best
        lim = self._limit
        rate = 0.0
        peak = usage
        window = 0.0
        low = high = eta
        fast = self._fast_eta
        if fast is not None and eta is not None and fast <= eta:
            # The fast start's straight line: +-20% brackets what such a line supports.
            low = 0.8 * eta
            high = 1.2 * eta
            rate = self._fast.slope
            window = self._fast.span
        elif best is not None and not math.isnan(self._origin):
            rate = best.slope
            window = best.span
            peak = max(usage, best.env + rate * (t - self._origin - best.env_t))
            if lim is not None and eta is not None and eta > 0.0:
                head = lim - peak
                low = max(0.0, head / best.slope_hi) if best.slope_hi > 0 else eta
                slow = 2.0 * rate - best.slope_hi
                high = head / slow if slow > 0.0 else None
        seen = self._observed.trend(lim)
        return Forecast(
            t=t,
            usage_bytes=usage,
            limit_bytes=lim,
            constraint=self.constraint,
            eta_seconds=eta,
            eta_low=low,
            eta_high=high,
            rate_bytes_per_s=rate,
            peak_bytes=peak,
            window_s=window,
            observed_rate_bytes_per_s=seen.rate,
            observed_rate_error=seen.error,
            observed_eta_seconds=seen.eta,
            observed_eta_low=seen.eta_low,
            observed_eta_high=seen.eta_high,
            known_leaker=self.leaker,
        )
