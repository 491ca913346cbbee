"""The fast start: steady leaks get a confident ETA within seconds; ramps that stop do not."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sentinel.forecast import Forecaster
from sentinel.forecast.fast import HORIZON, MAX_ETA_S, YOUNG_GATE, YOUNG_HORIZON, FastLeak

MIB = 1 << 20
LIMIT = 192 * MIB


def test_a_steady_leak_gets_an_accurate_eta_early() -> None:
    f = Forecaster()
    kill_t = (LIMIT - 20 * MIB) / (2 * MIB)  # 86 s from 20 MiB at 2 MiB/s
    first = None
    late = None
    for i in range(int(kill_t)):
        t = float(i)
        forecast = f.feed(t, 20 * MIB + 2 * MIB * t, LIMIT)
        eta = forecast.eta_seconds
        if eta is not None and first is None:
            first = (t, eta)
        if i == int(kill_t) - 10:
            late = forecast
    assert first is not None
    t, eta = first
    assert t < kill_t / 2 + 5
    assert abs((t + eta) - kill_t) < 0.2 * (kill_t - t)
    assert late is not None
    assert late.eta_seconds is not None
    assert late.rate_bytes_per_s == 2 * MIB


def test_a_ramp_that_levels_off_gets_no_eta() -> None:
    f = FastLeak()
    for i in range(300):
        t = float(i)
        usage = min(20 * MIB + 3 * MIB * t, 0.85 * LIMIT)  # a job reaching its working size
        eta = f.update(t, usage, LIMIT)
        if usage >= 0.85 * LIMIT:
            assert eta is None or i < 60


def test_a_sawtooth_gets_no_eta_after_its_first_drop() -> None:
    # The first rise of a sawtooth is a straight line like any leak's; the first drop shows
    # it is not one, and from then on the fast start says nothing.
    f = FastLeak()
    for i in range(600):
        t = float(i)
        usage = 40 * MIB + (i % 30) * 4 * MIB  # GC: up 120 MiB, then back down
        eta = f.update(t, usage, LIMIT)
        if i >= 30:
            assert eta is None


def test_far_kills_wait_for_the_line_to_near_the_limit() -> None:
    # kill in ~28 min: a batch job loading its data looks the same until it stops
    f = FastLeak()
    for i in range(0, 1000, 5):
        usage = 20 * MIB + 0.1 * MIB * i
        eta = f.update(float(i), usage, LIMIT)
        assert eta is None, i
        assert f.straight or i < 60


def test_a_known_leaker_is_trusted_early() -> None:
    # the same line, for a target the kernel killed before at this limit
    f = FastLeak()
    first = None
    for i in range(0, 1700, 5):
        eta = f.update(float(i), 20 * MIB + 0.1 * MIB * i, LIMIT, known_leaker=True)
        if eta is not None:
            first = (i, eta)
            break
    assert first is not None
    i, eta = first
    kill = (LIMIT - 20 * MIB) / (0.1 * MIB)
    assert i < kill / 3
    assert abs(i + eta - kill) < 0.1 * kill


def test_a_ramp_that_stopped_before_raises_the_gate() -> None:
    # an earlier run held 93% of the limit: this run's line must climb past 98% first
    # (or come within MAX_ETA_S of the kill)
    def first_eta(ceiling: float) -> float | None:
        f = FastLeak()
        for i in range(0, 2000, 5):
            usage = 20 * MIB + 0.1 * MIB * i
            eta = f.update(float(i), usage, LIMIT, ceiling=ceiling)
            if eta is not None:
                return usage / LIMIT
        return None

    plain = first_eta(0.0)
    assert plain is not None
    assert YOUNG_GATE <= plain < YOUNG_GATE + 0.02
    raised = first_eta(0.93 * LIMIT)
    assert raised is not None
    assert raised >= 0.97  # 98%, or a kill within MAX_ETA_S


def test_a_restart_starts_the_line_over() -> None:
    f = FastLeak()
    for i in range(40):
        f.update(float(i), 20 * MIB + 3 * MIB * i, LIMIT)
    assert f.update(40.0, 10 * MIB, LIMIT) is None  # usage fell: silent
    assert f.update(41.0, 13 * MIB, LIMIT) is None
    f.reset()  # the caller knows the target restarted
    etas = [f.update(100.0 + i, 20 * MIB + 3 * MIB * i, LIMIT) for i in range(50)]
    assert any(eta is not None for eta in etas)


@given(
    st.lists(
        st.tuples(st.floats(0, 1e6), st.floats(0, 1e12)),
        max_size=300,
    ),
    st.one_of(st.none(), st.floats(1, 1e12)),
)
def test_never_raises_and_eta_is_bounded(
    samples: list[tuple[float, float]], limit: float | None
) -> None:
    f = FastLeak()
    g = FastLeak()
    for t, u in sorted(samples):
        eta = f.update(t, u, limit)
        assert eta is None or 0.0 <= eta <= max(MAX_ETA_S, YOUNG_HORIZON * f.span)
        eta = g.update(t, u, limit, known_leaker=True)
        assert eta is None or 0.0 <= eta <= max(MAX_ETA_S, HORIZON * g.span)
