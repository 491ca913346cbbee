"""The step clock (:mod:`sentinel.forecast.steps`): when a staircase alone says leak."""

from __future__ import annotations

from sentinel.forecast.steps import Steps

LIMIT = 1000.0
THRESHOLD = 20.0  # a climb of 2% of the limit is a step


def feed(steps: Steps, samples: list[tuple[float, float]]) -> None:
    low = samples[0][1]
    for x, usage in samples:
        steps.update(x, usage, THRESHOLD, low)
        low = usage  # the lowest of "the last few minutes": the sample before


def stairs(  # noqa: PLR0917 (a shape: six numbers read best in order)
    start: float, level: float, size: float, gap: float, n: int, hold: float
) -> list[tuple[float, float]]:
    """``n`` steps of ``size`` every ``gap`` s from ``level``, sampled each minute, then
    ``hold`` s at the last level."""
    out = []
    x = start
    for i in range(n - 1):
        for _ in range(int(gap // 60)):
            out.append((x, level + i * size))
            x += 60
    end = x + hold
    while x <= end:
        out.append((x, level + (n - 1) * size))
        x += 60
    return out


def test_a_slow_staircase_of_small_held_steps_is_one() -> None:
    steps = Steps()
    samples = stairs(0, 850, 40, 1800, 4, hold=600)  # 85% -> 97%, 4% every 30 min
    feed(steps, samples)
    x = samples[-1][0]
    assert steps.staircase(x, LIMIT, THRESHOLD)
    assert steps.eta(x, samples[-1][1], LIMIT, THRESHOLD) is not None  # 4% > 3% left


def test_a_step_not_yet_held_long_is_not_one_yet() -> None:
    steps = Steps()
    samples = stairs(0, 850, 40, 1800, 4, hold=60)
    feed(steps, samples)
    assert not steps.staircase(samples[-1][0], LIMIT, THRESHOLD)


def test_a_burst_of_rises_within_minutes_is_no_staircase() -> None:
    steps = Steps()
    samples = stairs(0, 850, 40, 180, 4, hold=600)  # every 3 min: a surge
    feed(steps, samples)
    assert not steps.staircase(samples[-1][0], LIMIT, THRESHOLD)


def test_jumps_of_a_third_of_the_limit_are_no_staircase() -> None:
    steps = Steps()
    samples = stairs(0, 100, 300, 1800, 3, hold=600)  # 10% -> 70%: a batch loading
    feed(steps, samples)
    assert not steps.staircase(samples[-1][0], LIMIT, THRESHOLD)


def test_a_peak_that_falls_back_is_no_held_step() -> None:
    steps = Steps()
    samples = stairs(0, 850, 40, 1800, 4, hold=0)
    x = samples[-1][0]
    samples += [(x + 60 * i, 900.0) for i in range(1, 11)]  # back under the last level
    feed(steps, samples)
    assert not steps.staircase(samples[-1][0], LIMIT, THRESHOLD)


def climb(x: float, start: float, end: float, per_minute: float) -> list[tuple[float, float]]:
    """A gradual climb (no step) from ``start`` to ``end``, one sample a minute from x."""
    out = []
    u = start
    while u < end:
        out.append((x, u))
        x += 60
        u += per_minute
    return out


def test_rises_of_one_size_on_a_climbing_baseline_project_the_next_one() -> None:
    # a rise to 888, a fall to 840, a rise to 878, a slow climb, a rise to 958 held at 965:
    # the rises' levels do not climb one by one, but the last stands above both before it,
    # and one more rise of the usual size (38) crosses the 35 left; rises come every
    # 1080-1200 s, the last 300 s ago
    samples = [(60.0 * i, 850.0) for i in range(10)]
    samples += [(600 + 60.0 * i, 888.0) for i in range(10)]
    samples += [(1200 + 60.0 * i, 840.0) for i in range(10)]
    samples += [(1800 + 60.0 * i, 878.0) for i in range(10)]
    samples += climb(2400, 878, 918, 5)
    x = samples[-1][0] + 60
    samples += [(x + 60.0 * i, 958.0) for i in range(5)] + [(x + 300, 965.0)]
    steps = Steps()
    feed(steps, samples)
    assert steps.eta(x + 300, 965.0, LIMIT, THRESHOLD) == 1080 - 300
    assert steps.eta(x + 300, 955.0, LIMIT, THRESHOLD) is None  # 45 left: not yet


def test_the_same_rise_again_and_again_projects_nothing() -> None:
    # a spike to 960 from 920, back, again and again: the level never climbs
    samples: list[tuple[float, float]] = []
    for k in range(4):
        samples += [(1200.0 * k + 60 * i, 920.0) for i in range(10)]
        samples += [(1200.0 * k + 600 + 60 * i, 960.0) for i in range(10)]
    steps = Steps()
    feed(steps, samples)
    assert steps.eta(samples[-1][0], 960.0, LIMIT, THRESHOLD) is None
