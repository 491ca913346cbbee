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
