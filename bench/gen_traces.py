#!/usr/bin/env python3
"""Generate memory traces with known kill times, for shapes the shared set lacks.

Writes OUT/NNN-KIND.csv (header ``t,usage_bytes``) and OUT/manifest.json in the format of
../shared/forecast-bench (limit, kind, leak, kill_t). Seeded: the same seed gives the
same traces. Leaks end at the kill: the first sample at or above the limit.

Leaks: linear at many rates (hours to days), under a GC sawtooth, through periodic jobs
that each leave a little behind, in steps, accelerating, starting after hours of calm,
on top of a daily cycle, with restarts (deploys) before the final run, through gaps in
the samples, and under heavy noise or traffic bursts.
Young leaks: a leak from the target's start at 0.5-10 MiB/s, sampled every 1-10 s, killed
within 15-60 minutes (the fast start's case).
Healthy: flat with noise, caches warming up to a plateau (smooth or abrupt), bounded
queues filling and draining, daily cycles, periodic batch peaks back to baseline, GC
sawtooth, regular restarts with warm-up, gaps, traffic bursts, growth that levels off,
one-off steps up; and young ramps: a batch job loading its working set from its start at
0.5-10 MiB/s (straight or slowing down) that stops at 30-90% of its limit, holds, and
ends or runs on.
Usage: gen_traces.py OUT [--seed 7] [--per-kind 12]
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable
from pathlib import Path

GiB = 1 << 30
LIMITS = (256 << 20, 512 << 20, GiB, 2 * GiB, 4 * GiB, 8 * GiB)
DAY = 86400.0

# A shape: fraction of the limit at time t (noise excluded), and whether it leaks.
Shape = Callable[[float], float]


class Trace:
    def __init__(self, rng: random.Random, duration: float, dt: float = 10.0) -> None:
        self.rng = rng
        self.duration = duration
        self.dt = dt
        self.noise = rng.choice((0.002, 0.005, 0.01, 0.02))
        self.missing = rng.choice((0.0, 0.005, 0.02))
        self.gaps: list[tuple[float, float]] = []

    def times(self) -> list[float]:
        rng = self.rng
        out = []
        t = 0.0
        while t <= self.duration:
            if rng.random() >= self.missing and not any(a <= t < b for a, b in self.gaps):
                out.append(round(t + rng.uniform(0, 0.3 * self.dt), 1))
            t += self.dt
        return out


def render(
    trace: Trace, shape: Shape, leak: bool, limit: int
) -> tuple[list[tuple[float, int]], float | None]:
    """Sample the shape with noise; for leaks stop at the first sample at the limit."""
    rows: list[tuple[float, int]] = []
    rng = trace.rng
    kill_t = None
    for t in trace.times():
        frac = shape(t) + rng.gauss(0.0, trace.noise)
        frac = max(0.01, frac)
        if frac >= 1.0:
            if leak:
                rows.append((t, limit))
                kill_t = t
                break
            frac = 0.995
        rows.append((t, int(frac * limit)))
    return rows, kill_t


def sawtooth(t: float, period: float, amp: float, phase: float) -> float:
    """0 just after a collection, rising to ``amp`` just before the next."""
    return amp * (((t + phase) % period) / period)


def spikes(t: float, period: float, width: float, height: float, phase: float) -> float:
    """A job every ``period`` s: ramps up over a tenth of ``width``, holds, drops back."""
    x = (t + phase) % period
    if x >= width:
        return 0.0
    ramp = max(width * 0.1, 1.0)
    return height * min(1.0, x / ramp)


def daily(t: float, amp: float, phase: float) -> float:
    """A traffic-shaped day: low at night, a peak in the afternoon (0..amp)."""
    d = ((t + phase) % DAY) / DAY
    return amp * max(0.0, math.sin(math.pi * (d - 0.25) / 0.75)) ** 2 if d > 0.25 else 0.0


MiB = 1 << 20


def young_limit(rng: random.Random, rate_mib: float, lo_s: float, hi_s: float) -> int:
    """A limit (MiB multiple) that a ``rate_mib`` MiB/s climb fills in ``lo_s``..``hi_s``."""
    return int(rate_mib * rng.uniform(lo_s, hi_s)) * MiB


def kill_time_for(base: float, rate: float) -> float:
    return (1.0 - base) / rate


# ---- leaks ----


def leak_linear(rng: random.Random) -> tuple[Trace, Shape]:
    hours = rng.choice((1.5, 3, 6, 12, 24, 48, 72, 120))
    base = rng.uniform(0.1, 0.6)
    rate = (1.0 - base) / (hours * 3600)
    dt = 10.0 if hours <= 48 else 30.0
    tr = Trace(rng, hours * 3600 * 1.2, dt)
    return tr, lambda t: base + rate * t


def leak_sawtooth(rng: random.Random) -> tuple[Trace, Shape]:
    hours = rng.choice((2, 4, 8, 16, 30, 48))
    period = rng.choice((120, 300, 900, 1800, 3600))
    amp = rng.uniform(0.08, 0.3)
    base = rng.uniform(0.1, 0.4)
    rate = (1.0 - base - amp) / (hours * 3600)
    phase = rng.uniform(0, period)
    tr = Trace(rng, hours * 3600 * 1.3)
    return tr, lambda t: base + rate * t + sawtooth(t, period, amp, phase)


def leak_jobs(rng: random.Random) -> tuple[Trace, Shape]:
    period = rng.choice((600, 1800, 3600, 3 * 3600, 6 * 3600))
    jobs = rng.randint(12, 60)
    height = rng.uniform(0.1, 0.45)
    width = period * rng.uniform(0.03, 0.4)
    base = rng.uniform(0.1, 0.35)
    residue = (1.0 - base - height) / jobs
    phase = rng.uniform(0, period)
    tr = Trace(rng, (jobs + 3) * period)

    def shape(t: float) -> float:
        done = math.floor((t + phase) / period)
        return base + residue * done + spikes(t, period, width, height, phase)

    return tr, shape


def leak_steps(rng: random.Random) -> tuple[Trace, Shape]:
    base = rng.uniform(0.1, 0.5)
    mean_gap = rng.choice((600, 1800, 3600, 4 * 3600))
    steps: list[tuple[float, float]] = []
    t = 0.0
    level = base
    while level < 1.05:
        t += rng.expovariate(1.0 / mean_gap)
        level += rng.uniform(0.02, 0.08)
        steps.append((t, level))
    tr = Trace(rng, t + mean_gap)

    def shape(x: float) -> float:
        out = base
        for at, lvl in steps:
            if x < at:
                break
            out = lvl
        return out

    return tr, shape


def leak_accelerating(rng: random.Random) -> tuple[Trace, Shape]:
    hours = rng.choice((2, 6, 12, 24, 48))
    base = rng.uniform(0.1, 0.5)
    power = rng.choice((1.5, 2.0, 3.0))
    end = hours * 3600
    tr = Trace(rng, end * 1.2)
    return tr, lambda t: base + (1.0 - base) * (t / end) ** power


def leak_after_calm(rng: random.Random) -> tuple[Trace, Shape]:
    calm = rng.uniform(2, 24) * 3600
    hours = rng.choice((1, 3, 8, 24))
    base = rng.uniform(0.2, 0.6)
    rate = (1.0 - base) / (hours * 3600)
    tr = Trace(rng, calm + hours * 3600 * 1.2)
    return tr, lambda t: base + rate * max(0.0, t - calm)


def leak_daily(rng: random.Random) -> tuple[Trace, Shape]:
    days = rng.uniform(1.5, 5)
    amp = rng.uniform(0.1, 0.3)
    base = rng.uniform(0.1, 0.3)
    rate = (1.0 - base - amp) / (days * DAY)
    phase = rng.uniform(0, DAY)
    tr = Trace(rng, days * DAY * 1.3, 30.0)
    return tr, lambda t: base + rate * t + daily(t, amp, phase)


def leak_restarts(rng: random.Random) -> tuple[Trace, Shape]:
    hours = rng.choice((4, 8, 16))
    base = rng.uniform(0.1, 0.3)
    rate = (1.0 - base) / (hours * 3600)
    restarts = sorted(rng.uniform(0.2, 0.8) * hours * 3600 for _ in range(rng.randint(1, 2)))
    # each run is restarted (a deploy) before its kill; the last one leaks to the end
    offsets = [0.0, *restarts]
    tr = Trace(rng, (hours * 3600 + restarts[-1]) * 1.2)

    def shape(t: float) -> float:
        start = max(o for o in offsets if o <= t)
        return base + rate * (t - start)

    return tr, shape


def leak_gaps(rng: random.Random) -> tuple[Trace, Shape]:
    hours = rng.choice((4, 12, 24, 48))
    base = rng.uniform(0.1, 0.5)
    rate = (1.0 - base) / (hours * 3600)
    tr = Trace(rng, hours * 3600 * 1.2)
    for _ in range(rng.randint(1, 4)):
        a = rng.uniform(0.05, 0.85) * hours * 3600
        tr.gaps.append((a, a + rng.uniform(600, 7200)))
    return tr, lambda t: base + rate * t


def leak_noisy_bursts(rng: random.Random) -> tuple[Trace, Shape]:
    hours = rng.choice((6, 12, 24, 48))
    base = rng.uniform(0.1, 0.3)
    burst_h = rng.uniform(0.05, 0.2)
    rate = (1.0 - base - burst_h) / (hours * 3600)
    bursts = [(rng.uniform(0, hours * 3600), rng.uniform(120, 1800)) for _ in range(hours * 2)]
    tr = Trace(rng, hours * 3600 * 1.2)
    tr.noise = rng.choice((0.01, 0.02, 0.03))

    def shape(t: float) -> float:
        extra = burst_h if any(a <= t < a + w for a, w in bursts) else 0.0
        return base + rate * t + extra

    return tr, shape


def leak_young(rng: random.Random) -> tuple[Trace, Shape, int]:
    """Leaks from the start: ``(trace, shape, limit)`` (the limit sets the kill time)."""
    rate = rng.uniform(0.5, 10.0)  # MiB/s
    limit = young_limit(rng, rate, 900.0, 3600.0)
    base = rng.uniform(0.02, 0.15)
    per_s = rate * MiB / limit
    dt = rng.choice((1.0, 2.0, 5.0, 10.0))
    tr = Trace(rng, (1.0 - base) / per_s * 1.2, dt)
    tr.noise = rng.choice((0.001, 0.003, 0.005))
    tr.missing = 0.0
    return tr, lambda t: base + per_s * t, limit


# ---- healthy ----


def ok_young_ramp(rng: random.Random) -> tuple[Trace, Shape, int]:
    """A batch job loading its working set from its start, straight or slowing down."""
    rate = rng.uniform(0.5, 10.0)  # MiB/s at the start
    top = rng.uniform(0.3, 0.9)
    base = rng.uniform(0.02, 0.15)
    # the ramp takes 2-40 minutes to reach its working set
    ramp = rng.uniform(120.0, 2400.0)
    limit = max(64, int(rate * ramp / (top - base))) * MiB
    dt = rng.choice((1.0, 2.0, 5.0, 10.0))
    hold = rng.uniform(600.0, 4 * 3600.0)
    ends = rng.random() < 0.5
    straight = rng.random() < 0.5
    tr = Trace(rng, ramp + hold + (600.0 if ends else 0.0), dt)
    tr.noise = rng.choice((0.001, 0.003, 0.005))
    tr.missing = 0.0

    def shape(t: float) -> float:
        if ends and t > ramp + hold:
            return base  # the job ended; the next one has not loaded yet
        x = min(1.0, t / ramp)
        done = x if straight else 1.0 - (1.0 - x) ** 2
        return base + (top - base) * done

    return tr, shape, limit


def ok_flat(rng: random.Random) -> tuple[Trace, Shape]:
    level = rng.uniform(0.1, 0.9)
    tr = Trace(rng, rng.uniform(1, 2) * DAY)
    tr.noise = rng.choice((0.002, 0.005, 0.01, 0.02)) if level < 0.85 else 0.005
    return tr, lambda t: level


def ok_warmup(rng: random.Random) -> tuple[Trace, Shape]:
    start = rng.uniform(0.05, 0.3)
    top = rng.uniform(0.4, 0.92)
    tau = rng.choice((300, 1800, 3600, 4 * 3600, 10 * 3600))
    abrupt = rng.random() < 0.5
    tr = Trace(rng, rng.uniform(1, 2) * DAY)
    if abrupt:  # fills at a constant rate until full
        rate = (top - start) / tau
        return tr, lambda t: min(top, start + rate * t)
    return tr, lambda t: top - (top - start) * math.exp(-t / tau)


def ok_queue(rng: random.Random) -> tuple[Trace, Shape]:
    base = rng.uniform(0.1, 0.3)
    cap = rng.uniform(0.5, 0.9)
    fill = rng.uniform(600, 6 * 3600)
    hold = rng.uniform(600, 6 * 3600)
    drain = rng.uniform(60, 1800)
    cycle = fill + hold + drain
    tr = Trace(rng, rng.uniform(1, 2) * DAY)

    def shape(t: float) -> float:
        x = t % cycle
        if x < fill:
            return base + (cap - base) * x / fill
        if x < fill + hold:
            return cap
        return cap - (cap - base) * (x - fill - hold) / drain

    return tr, shape


def ok_daily(rng: random.Random) -> tuple[Trace, Shape]:
    base = rng.uniform(0.1, 0.4)
    amp = rng.uniform(0.1, 0.9 - base)
    phase = rng.uniform(0, DAY)
    tr = Trace(rng, rng.uniform(2, 4) * DAY, 30.0)
    return tr, lambda t: base + daily(t, amp, phase)


def ok_batch(rng: random.Random) -> tuple[Trace, Shape]:
    base = rng.uniform(0.1, 0.4)
    height = rng.uniform(0.2, 0.9 - base)
    period = rng.choice((600, 1800, 3600, 3 * 3600, 6 * 3600, DAY / 2))
    width = period * rng.uniform(0.05, 0.5)
    phase = rng.uniform(0, period)
    tr = Trace(rng, rng.uniform(1.5, 3) * DAY, 20.0)
    return tr, lambda t: base + spikes(t, period, width, height, phase)


def ok_gc(rng: random.Random) -> tuple[Trace, Shape]:
    base = rng.uniform(0.1, 0.5)
    amp = rng.uniform(0.1, 0.9 - base)
    period = rng.choice((60, 300, 900, 1800, 3600))
    phase = rng.uniform(0, period)
    tr = Trace(rng, rng.uniform(1, 2) * DAY)
    return tr, lambda t: base + sawtooth(t, period, amp, phase)


def ok_restarts(rng: random.Random) -> tuple[Trace, Shape]:
    start = rng.uniform(0.05, 0.2)
    top = rng.uniform(0.4, 0.9)
    tau = rng.choice((600, 3600, 3 * 3600))
    every = rng.uniform(2, 12) * 3600
    tr = Trace(rng, rng.uniform(1, 3) * DAY)
    return tr, lambda t: top - (top - start) * math.exp(-(t % every) / tau)


def ok_gaps(rng: random.Random) -> tuple[Trace, Shape]:
    level = rng.uniform(0.2, 0.85)
    wobble = rng.uniform(0.0, 0.05)
    tr = Trace(rng, rng.uniform(1, 2) * DAY)
    for _ in range(rng.randint(2, 6)):
        a = rng.uniform(0, tr.duration)
        tr.gaps.append((a, a + rng.uniform(300, 3 * 3600)))
    return tr, lambda t: level + wobble * math.sin(t / 5000)


def ok_bursts(rng: random.Random) -> tuple[Trace, Shape]:
    base = rng.uniform(0.1, 0.5)
    tr = Trace(rng, rng.uniform(1, 2) * DAY)
    bursts = []
    for _ in range(rng.randint(5, 40)):
        bursts.append(
            (
                rng.uniform(0, tr.duration),
                rng.uniform(60, 3600),
                rng.uniform(0.1, 0.9 - base),
                rng.uniform(30, 900),
            )
        )

    def shape(t: float) -> float:
        extra = 0.0
        for a, w, h, ramp in bursts:
            if a <= t < a + w + ramp:
                x = t - a
                level = h * min(1.0, x / ramp) if x < w else h * max(0.0, 1 - (x - w) / ramp)
                extra = max(extra, level)
        return base + extra

    return tr, shape


def ok_levels_off(rng: random.Random) -> tuple[Trace, Shape]:
    start = rng.uniform(0.1, 0.4)
    top = rng.uniform(start + 0.2, 0.92)
    tau = rng.uniform(2, 20) * 3600
    tr = Trace(rng, rng.uniform(1.5, 3) * DAY, 20.0)
    # logarithmic-looking growth that flattens: fragmentation, interned strings
    return tr, lambda t: start + (top - start) * (1 - 1 / (1 + t / tau))


def ok_step_up(rng: random.Random) -> tuple[Trace, Shape]:
    a = rng.uniform(0.1, 0.5)
    b = rng.uniform(a + 0.1, 0.9)
    at = rng.uniform(0.1, 0.8) * DAY
    ramp = rng.uniform(10, 1800)
    tr = Trace(rng, rng.uniform(1, 2) * DAY)
    return tr, lambda t: a + (b - a) * min(1.0, max(0.0, (t - at) / ramp))


LEAKS = {
    "g_linear": leak_linear,
    "g_sawtooth_leak": leak_sawtooth,
    "g_job_leak": leak_jobs,
    "g_step_leak": leak_steps,
    "g_accelerating": leak_accelerating,
    "g_leak_after_calm": leak_after_calm,
    "g_leak_daily": leak_daily,
    "g_leak_restarts": leak_restarts,
    "g_leak_gaps": leak_gaps,
    "g_leak_noisy_bursts": leak_noisy_bursts,
    "g_young_leak": leak_young,
}
HEALTHY = {
    "g_flat": ok_flat,
    "g_warmup": ok_warmup,
    "g_queue": ok_queue,
    "g_daily": ok_daily,
    "g_batch": ok_batch,
    "g_gc": ok_gc,
    "g_restarts": ok_restarts,
    "g_gaps": ok_gaps,
    "g_bursts": ok_bursts,
    "g_levels_off": ok_levels_off,
    "g_step_up": ok_step_up,
    "g_young_ramp": ok_young_ramp,
}


def generate(out: Path, seed: int, per_kind: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.csv"):
        old.unlink()
    manifest: dict[str, dict[str, object]] = {}
    n = 0
    kinds = [(k, f, True) for k, f in LEAKS.items()] + [(k, f, False) for k, f in HEALTHY.items()]
    for kind, make, leak in kinds:
        made = 0
        attempt = 0
        while made < per_kind:
            rng = random.Random(f"{seed}/{kind}/{attempt}")
            attempt += 1
            limit = rng.choice(LIMITS)
            made_ = make(rng)
            if len(made_) == 3:
                trace, shape, limit = made_  # young shapes choose their own limit
            else:
                trace, shape = made_
            rows, kill_t = render(trace, shape, leak, limit)
            young = kind.startswith("g_young")
            if leak and (kill_t is None or kill_t < (300 if young else 1800)):
                continue  # a leak must reach its kill, after some history
            name = f"{n:03d}-{kind}.csv"
            with (out / name).open("w") as fh:
                fh.write("t,usage_bytes\n")
                fh.writelines(f"{t},{u}\n" for t, u in rows)
            manifest[name] = {"limit": limit, "kind": kind, "leak": leak, "kill_t": kill_t}
            n += 1
            made += 1
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--per-kind", type=int, default=12)
    a = ap.parse_args()
    n = generate(a.out, a.seed, a.per_kind)
    print(f"wrote {n} traces to {a.out}")


if __name__ == "__main__":
    main()
