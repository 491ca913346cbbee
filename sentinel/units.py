"""Sizes and durations as people write them: ``512Mi``, ``1GiB``, ``2G``, ``15m``, ``24h``.

Pure parsing, shared by the command line and the YAML policies. Binary suffixes (``Ki``,
``Mi``, ``Gi``, ``Ti``, with or without a trailing ``B``) are powers of 1024, as in
Kubernetes and Docker; decimal ones (``k``, ``K``, ``M``, ``G``, ``T``, optional ``B``) are
powers of 1000, as in Kubernetes. A bare number is bytes (or seconds).
"""

from __future__ import annotations

import math
import re

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e([+-]?[0-9]+))?\s*([A-Za-z]*)\s*$")
_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "p": 1000**5,
    "pb": 1000**5,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
    "pi": 1024**5,
    "pib": 1024**5,
}

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h|d|w)?", re.IGNORECASE)
_DURATION_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}


def parse_size(text: str) -> int:
    """Bytes from ``"536870912"``, ``"512Mi"``, ``"1GiB"``, ``"2G"``, ``"1.5Gi"``.

    Fractions are rounded down to whole bytes. Raises ``ValueError`` naming the text on
    anything else (negative, empty, an unknown suffix such as ``"5 apples"``).
    """
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (expected bytes or e.g. 512Mi, 1GiB, 2G)")
    number, exponent, unit = m.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown size unit {unit!r} in {text!r} (use Ki, Mi, Gi, K, M, G, ...)")
    if "." not in number and not exponent:
        return int(number) * factor  # exact, however large
    value = float(number) * (10 ** int(exponent) if exponent else 1) * factor
    if not math.isfinite(value):
        raise ValueError(f"size out of range: {text!r}")
    return int(value)


def parse_duration(text: str) -> float:
    """Seconds from ``"30s"``, ``"15m"``, ``"24h"``, ``"1h30m"``, ``"2d"``, ``"250ms"``, ``"90"``.

    A bare number is seconds. Raises ``ValueError`` naming the text on anything else.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty duration (expected e.g. 30s, 15m, 24h)")
    pos = 0
    total = 0.0
    parts = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or (m.group(2) is None and (parts > 0 or m.end() != len(s))):
            raise ValueError(f"not a duration: {text!r} (expected e.g. 30s, 15m, 24h, 1h30m)")
        unit = (m.group(2) or "s").lower()
        total += float(m.group(1)) * _DURATION_UNITS[unit]
        pos = m.end()
        while pos < len(s) and s[pos] == " ":
            pos += 1
        parts += 1
    if parts == 0 or not math.isfinite(total):
        raise ValueError(f"not a duration: {text!r}")
    return total


def format_size(n: float) -> str:
    """A short human size in binary units: ``512.0Mi``, ``1.50Gi``, ``900B``."""
    value = float(n)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in ("B", "Ki", "Mi", "Gi", "Ti"):
        if value < 1024 or unit == "Ti":
            if unit == "B":
                return f"{sign}{value:.0f}B"
            return f"{sign}{value:.3g}{unit}" if value < 100 else f"{sign}{value:.0f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_duration(seconds: float) -> str:
    """A short human duration: ``45s``, ``12m``, ``3h05m``, ``2d04h``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
