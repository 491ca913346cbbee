"""Sizes and durations as people write them: ``512Mi``, ``1GiB``, ``2G``, ``15m``, ``24h``.

Pure parsing, shared by the command line and the YAML policies. Binary suffixes (``Ki``,
``Mi``, ``Gi``, ``Ti``, with or without a trailing ``B``) are powers of 1024, as in
Kubernetes and Docker; decimal ones (``k``, ``K``, ``M``, ``G``, ``T``, optional ``B``) are
powers of 1000, as in Kubernetes. A bare number is bytes (or seconds).

Every malformed or non-finite input (``.inf``, ``nan``, ``1e400``, an exponent of a
billion digits) is a ``ValueError`` naming the text, raised at once: nothing here can
overflow, hang or raise anything else. Range limits for callers: :data:`MAX_SIZE`,
:data:`MAX_DURATION`.
"""

from __future__ import annotations

import math
import re

MAX_SIZE = 2**63 - 1
"""The largest size sentinel keeps (8 EiB): it fits the state's 64-bit integers."""
MAX_DURATION = 100 * 365 * 86400.0
"""The longest duration sentinel takes: 100 years (a timer or a timestamp past it
overflows)."""
MAX_TEXT = 64
"""Sizes and durations longer than this are refused before any arithmetic."""

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
    shown = quoted(text)
    if len(text) > MAX_TEXT:
        raise ValueError(f"not a size: {shown} (too long)")
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {shown} (expected bytes or e.g. 512Mi, 1GiB, 2G)")
    number, exponent, unit = m.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(
            f"unknown size unit {quoted(unit)} in {shown} (use Ki, Mi, Gi, K, M, G, ...)"
        )
    if "." not in number and not exponent:
        return int(number) * factor  # exact, however large (at most MAX_TEXT digits)
    # float() reads the exponent itself: 1e400 is inf at once, never 10**400 computed
    value = float(f"{number}e{exponent or 0}") * factor
    if not math.isfinite(value):
        raise ValueError(f"size out of range: {shown}")
    return int(value)


def parse_duration(text: str) -> float:
    """Seconds from ``"30s"``, ``"15m"``, ``"24h"``, ``"1h30m"``, ``"2d"``, ``"250ms"``, ``"90"``.

    A bare number is seconds. Raises ``ValueError`` naming the text on anything else.
    """
    s = text.strip()
    shown = quoted(text)
    if not s:
        raise ValueError("empty duration (expected e.g. 30s, 15m, 24h)")
    if len(s) > MAX_TEXT:
        raise ValueError(f"not a duration: {shown} (too long)")
    pos = 0
    total = 0.0
    parts = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or (m.group(2) is None and (parts > 0 or m.end() != len(s))):
            raise ValueError(f"not a duration: {shown} (expected e.g. 30s, 15m, 24h, 1h30m)")
        unit = (m.group(2) or "s").lower()
        total += float(m.group(1)) * _DURATION_UNITS[unit]
        pos = m.end()
        while pos < len(s) and s[pos] == " ":
            pos += 1
        parts += 1
    if parts == 0:
        raise ValueError(f"not a duration: {shown}")
    if not math.isfinite(total):
        raise ValueError(f"duration out of range: {shown}")
    return total


def quoted(text: str) -> str:
    """``text`` quoted for a message, cut to a readable length."""
    return repr(text) if len(text) <= 40 else repr(text[:37]) + "..."


def format_size(n: float) -> str:
    """A short human size in binary units: ``512.0Mi``, ``1.50Gi``, ``900B``."""
    value = float(n)
    if not math.isfinite(value):
        return str(value)  # inf, -inf, nan: said as such, not formatted
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
    """A short human duration: ``45s``, ``12m``, ``3h05m``, ``2d04h``; ``never`` for an
    infinite one, ``?`` for NaN."""
    if math.isnan(seconds):
        return "?"
    if math.isinf(seconds):
        return "never" if seconds > 0 else "0s"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
