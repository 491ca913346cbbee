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
