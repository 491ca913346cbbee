"""Whatever the samples, the forecaster never raises and its ETA is None or >= 0."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.forecast import Forecaster

finite = st.floats(min_value=-1e12, max_value=1e15, allow_nan=False)
anything = st.floats(allow_nan=True, allow_infinity=True)
samples = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=3600.0),  # time step
        st.one_of(finite, anything),
        st.one_of(st.none(), st.floats(min_value=-10.0, max_value=1e13), anything),
    ),
    max_size=400,
)


@settings(max_examples=300, deadline=None)
@given(samples, st.one_of(st.none(), st.floats(min_value=1.0, max_value=1e13)))
def test_never_raises_eta_none_or_non_negative(
    steps: list[tuple[float, float, float | None]], limit: float | None
) -> None:
    f = Forecaster(limit)
    t = 0.0
    for dt, usage, new_limit in steps:
        t += dt
        fc = f.feed(t, usage, new_limit)
        assert fc.eta_seconds is None or (fc.eta_seconds >= 0 and not math.isnan(fc.eta_seconds))
        assert fc.eta_low is None or fc.eta_low >= 0
        assert fc.rate_bytes_per_s >= 0


@settings(max_examples=100, deadline=None)
@given(
    st.floats(min_value=1e6, max_value=1e11),
    st.floats(min_value=0.01, max_value=0.99),
    st.floats(min_value=1.0, max_value=600.0),
)
def test_flat_usage_never_projects_a_kill(limit: float, frac: float, dt: float) -> None:
    f = Forecaster(limit)
    for i in range(2000):
        assert f.update(i * dt, frac * limit) is None


def test_memory_is_bounded() -> None:
    f = Forecaster(1e12)
    for i in range(200_000):
        f.update(i * 10.0, 1e9 + (i % 97) * 1e6)
    assert all(len(s.chunks) <= 16 for s in f._scales)
    assert len(f._drops) <= 48
