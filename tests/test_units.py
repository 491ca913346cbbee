"""Sizes and durations as people write them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("536870912", 536870912),
        ("512Mi", 512 << 20),
        ("512MiB", 512 << 20),
        ("1GiB", 1 << 30),
        ("1Gi", 1 << 30),
        ("1.5Gi", 3 << 29),
        ("2G", 2_000_000_000),
        ("2GB", 2_000_000_000),
        ("100k", 100_000),
        ("64Ki", 65536),
        (" 1 Ti ", 1 << 40),
        ("1e3", 1000),
        ("0", 0),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "Mi", "-1", "5 apples", "1..2G", "1GiBs", "nan", "inf"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("24h", 86400.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("250ms", 0.25),
        ("90", 90.0),
        ("1.5h", 5400.0),
        ("1h 30m", 5400.0),
    ],
)
def test_parse_duration(text: str, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "h", "1h30", "-5m", "5 minutes", "1y"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=1 << 50), st.sampled_from(["", "Ki", "Mi", "Gi"]))
def test_size_round_trip(n: int, unit: str) -> None:
    factor = {"": 1, "Ki": 1024, "Mi": 1 << 20, "Gi": 1 << 30}[unit]
    assert parse_size(f"{n}{unit}") == n * factor


def test_formatting() -> None:
    assert format_size(512 << 20) == "512Mi"
    assert format_size(900) == "900B"
    assert format_size(1.5 * (1 << 30)) == "1.5Gi"
    assert format_duration(45) == "45s"
    assert format_duration(3 * 3600 + 300) == "3h05m"
    assert format_duration(2 * 86400 + 4 * 3600) == "2d04h"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("1e400", "out of range"),
        ("1e400Pi", "out of range"),
        ("1e308Pi", "out of range"),
        ("1e999999999999", "out of range"),  # no 10**999999999999 computed: at once
        (".inf", "not a size"),
        ("NaN", "not a size"),
        ("1e20 s", "unknown size unit"),
        ("9" * 100, "too long"),  # int() of 5000 digits would raise its own error
    ],
)
def test_parse_size_that_overflows(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        parse_size(text)
    assert len(str(caught.value)) < 120  # the text is cut in the message


def test_parse_size_exponents() -> None:
    assert parse_size("1e-400") == 0
    assert parse_size("1.5e3Ki") == 1536000
    assert parse_size("1e18") == 10**18


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("1e400", "not a duration"),
        ("1e20 s", "not a duration"),
        (".inf", "not a duration"),
        ("nan", "not a duration"),
        ("9" * 400 + "s", "too long"),
    ],
)
def test_parse_duration_that_overflows(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_duration(text)


def test_huge_but_finite_duration_is_the_callers_to_bound() -> None:
    assert parse_duration("99999999999999999999d") == pytest.approx(8.64e24)


def test_formatting_non_finite() -> None:
    assert format_duration(float("inf")) == "never"
    assert format_duration(float("-inf")) == "0s"
    assert format_duration(float("nan")) == "?"
    assert format_size(float("inf")) == "inf"
    assert format_size(float("nan")) == "nan"
