"""The forecaster's two answers: the observed trend from the first samples, the confident
ETA that rules act on, and what a target's history (a kill, a ramp that stopped) changes."""

from __future__ import annotations

import random

import pytest

from sentinel.forecast import Forecaster
from sentinel.forecast.observed import Observed

MiB = 1 << 20
GiB = 1 << 30


def test_the_trend_is_measured_from_the_third_sample() -> None:
    # 2 MiB/s with 256 KiB of noise, sampled every second into 256 MiB
    rng = random.Random(4)
    o = Observed()
    limit = 256 * MiB
    for i in range(3):
        o.update(float(i), 30 * MiB + 2 * MiB * i + rng.gauss(0, 256 * 1024))
    trend = o.trend(limit)
    assert trend.rate == pytest.approx(2 * MiB, rel=0.25)
    for i in range(3, 10):
        o.update(float(i), 30 * MiB + 2 * MiB * i + rng.gauss(0, 256 * 1024))
    trend = o.trend(limit)
    assert abs(trend.rate - 2 * MiB) <= trend.error
    assert trend.error < 0.1 * MiB
    kill = (limit - 30 * MiB) / (2 * MiB) - 9
    assert trend.eta is not None
    assert trend.eta_low is not None
    assert trend.eta_high is not None
    assert trend.eta_low <= kill <= trend.eta_high
    assert trend.eta == pytest.approx(kill, rel=0.05)


def test_flat_or_falling_usage_has_no_eta() -> None:
    rng = random.Random(5)
    flat = Observed()
    falling = Observed()
    for i in range(200):
        flat.update(10.0 * i, 100 * MiB + rng.gauss(0, 2 * MiB))
        falling.update(10.0 * i, 200 * MiB - 0.1 * MiB * i + rng.gauss(0, 0.2 * MiB))
    assert flat.trend(256 * MiB).eta is None
    assert abs(flat.trend(256 * MiB).rate) < 0.01 * MiB
    down = falling.trend(256 * MiB)
    assert down.eta is None
    assert down.rate == pytest.approx(-0.01 * MiB, rel=0.3)


def test_the_window_follows_the_recent_minutes() -> None:
    # an hour flat, then growth: within ten minutes the trend is the new growth
    o = Observed()
    for i in range(360):
        o.update(10.0 * i, 100 * MiB)
    for i in range(360, 420):
        o.update(10.0 * i, 100 * MiB + 0.5 * MiB * (10 * i - 3600))
    assert o.trend(1 * GiB).rate == pytest.approx(0.5 * MiB, rel=0.15)


def test_sparse_samples_still_give_a_trend() -> None:
    # one sample a minute (the Alibaba traces): the window widens to hold enough of them
    o = Observed()
    for i in range(12):
        o.update(60.0 * i, 100 * MiB + 0.1 * MiB * 60 * i)
    trend = o.trend(1 * GiB)
    assert trend.rate == pytest.approx(0.1 * MiB, rel=0.01)
    assert trend.eta is not None


def test_the_young_leak_of_the_issue() -> None:
    # 1 MiB/s towards 1 GiB from the target's start, killed at about 15 minutes
    base = 64 * MiB
    kill = (GiB - base) / MiB
    rng = random.Random(6)

    def run(f: Forecaster, t0: float = 0.0) -> tuple[float | None, float | None]:
        confident = observed = None
        for i in range(0, int(kill), 5):
            fc = f.feed(t0 + i, base + MiB * i + rng.gauss(0, 0.5 * MiB), float(GiB))
            if observed is None and fc.observed_eta_seconds is not None:
                observed = float(i)
                assert fc.observed_eta_seconds == pytest.approx(kill - i, rel=0.2)
                assert fc.observed_rate_bytes_per_s == pytest.approx(MiB, rel=0.2)
            if confident is None and fc.eta_seconds is not None:
                confident = float(i)
                assert fc.eta_seconds == pytest.approx(kill - i, rel=0.2)
        return confident, observed

    first = Forecaster()
    confident, observed = run(first)
    # observed from the first samples; confident only near the limit (a ramp that stops
    # looks the same until it does), yet earlier than the 45 s before the kill it was
    assert observed is not None
    assert observed <= 15
    assert confident is not None
    assert kill - confident >= 60
    # the same forecaster after that run was killed (it reached the limit, then started
    # over): a known leaker, trusted well ahead
    first.feed(kill, float(GiB), float(GiB))
    first.reset()
    assert first.leaker
    again, _ = run(first, t0=kill + 30)
    assert again is not None
    assert kill - again >= 600
    # and the caller's hint (the daemon saw the kernel kill it) does the same
    hinted = Forecaster()
    hinted.known_leaker = True
    early, _ = run(hinted)
    assert early is not None
    assert kill - early >= 600
    assert hinted.feed(kill, base, float(GiB)).known_leaker


def test_a_ramp_that_stopped_before_is_not_trusted_below_its_ceiling() -> None:
    # a queue fills to 94% in 20 min and holds, then is drained (a restart for the
    # forecaster); the next fill to 94% must not fire, though 94% is above the gate
    f = Forecaster(float(GiB))
    fired = []
    t = 0.0
    for _cycle in range(3):
        for i in range(0, 4800, 5):
            level = 0.1 + 0.84 * min(1.0, i / 1200)
            eta = f.update(t + i, level * GiB)
            if eta is not None and eta <= 900:
                fired.append(t + i)
        t += 4800
        f.reset()  # drained: the caller restarted it
    assert f.ceiling >= 0.93 * GiB
    assert not f.leaker
    assert fired  # the first fill: nothing known yet, and 94% is past the gate
    assert all(at < 4800 for at in fired)  # never again: the ceiling is known
