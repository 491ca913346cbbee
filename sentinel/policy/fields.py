"""The value types a policy file is written in: durations, sizes, signal names, globs.

Each is an annotated type: it validates what people write (``15m``, ``512Mi``,
``SIGUSR2``), holds a plain Python value (seconds, bytes, a canonical name), prints back as
people write it (``sentinel check``), and shows editors the accepted forms (``sentinel
schema``). Errors are pydantic custom errors whose message says what was expected; the
loader adds where, and what was found.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

from sentinel.units import parse_duration, parse_size

# --- Durations ---------------------------------------------------------------------------

_DURATION_PART = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*"
_DURATION_PATTERN = rf"^\s*{_DURATION_PART}(ms|s|m|h|d|w)?(\s*{_DURATION_PART}(ms|s|m|h|d|w))*\s*$"
_DURATION_STEPS: tuple[tuple[str, int], ...] = (
    ("h", 3600),
    ("m", 60),
    ("s", 1),
)


MAX_DURATION = 100 * 365 * 86400
"""The longest duration a policy may give: 100 years (``.inf`` or ``1e400`` are refused
rather than overflowing a timer or the state's timestamps)."""


def _to_seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise PydanticCustomError("duration_type", "expected a duration such as 30s, 15m, 1h30m")
    if isinstance(value, int | float):
        seconds = float(value) if abs(value) < 1e300 else math.copysign(math.inf, value)
        if seconds < 0:
            raise PydanticCustomError("duration_negative", "expected a duration of 0 or more")
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise PydanticCustomError(
                "duration",
                "expected a duration such as 5s, 15m, 24h or 1h30m (units ms, s, m, h, d, w)",
            ) from None
    else:
        raise PydanticCustomError("duration_type", "expected a duration such as 30s, 15m, 1h30m")
    if not seconds <= MAX_DURATION:  # also NaN
        raise PydanticCustomError("duration_range", "expected a duration of at most 100 years")
    return seconds


def format_duration(seconds: float) -> str:
    """Exactly ``seconds`` in the units people write: ``30s``, ``15m``, ``1h30m``, ``0.25s``."""
    if seconds == 0:
        return "0s"
    if seconds != int(seconds):
        text = repr(float(seconds))
        return (text if "e" not in text else f"{seconds:.9f}".rstrip("0")) + "s"
    millis = round(seconds * 1000)
    whole = millis // 1000
    if whole >= 2 * 86400 and whole % 86400 == 0:
        return f"{whole // 86400}d"
    parts: list[str] = []
    for unit, size in _DURATION_STEPS:
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)


Duration = Annotated[
    float,
    BeforeValidator(_to_seconds),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _DURATION_PATTERN},
                {"type": "number", "minimum": 0, "maximum": MAX_DURATION},
            ],
            "examples": ["30s", "15m", "24h", "1h30m"],
        }
    ),
]
"""Seconds, written ``5s``, ``15m``, ``24h``, ``1h30m``, ``250ms`` or a bare number of seconds."""


# --- Sizes -------------------------------------------------------------------------------

_SIZE_PATTERN = r"^\s*[0-9]+(\.[0-9]*)?\s*([KMGTP]i?B?|[kKMGTP]B?|B)?\s*$"
_BINARY: tuple[tuple[str, int], ...] = (
    ("Ti", 1024**4),
    ("Gi", 1024**3),
    ("Mi", 1024**2),
    ("Ki", 1024),
)


MAX_SIZE = 2**63 - 1
"""The largest size a policy may give (8 EiB): it fits the state's 64-bit integers."""


def _to_bytes(value: Any) -> int:
    if isinstance(value, bool):
        raise PydanticCustomError("size_type", "expected a size such as 512Mi, 1GiB or 2G")
    if isinstance(value, int):
        if value < 0:
            raise PydanticCustomError("size_negative", "expected a size of 0 or more")
        size = value
    elif isinstance(value, str):
        try:
            size = parse_size(value)
        except ValueError:
            raise PydanticCustomError(
                "size",
                "expected a size such as 512Mi, 1GiB or 2G (binary Ki Mi Gi Ti, decimal K M G T)",
            ) from None
    else:
        raise PydanticCustomError("size_type", "expected a size such as 512Mi, 1GiB or 2G")
    if size > MAX_SIZE:
        raise PydanticCustomError("size_range", "expected a size of at most 8 EiB (2**63 - 1)")
    return size


def format_size(n: int) -> str:
    """Exactly ``n`` bytes, in the largest binary unit that divides it: ``512Mi``, ``1Gi``."""
    for unit, size in _BINARY:
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


Size = Annotated[
    int,
    BeforeValidator(_to_bytes),
    PlainSerializer(format_size, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _SIZE_PATTERN},
                {"type": "integer", "minimum": 0, "maximum": MAX_SIZE},
            ],
            "examples": ["512Mi", "1GiB", "2G"],
        }
    ),
]
"""Bytes, written ``512Mi``, ``1GiB`` (powers of 1024), ``2G`` (powers of 1000) or a number."""


# --- Signals -----------------------------------------------------------------------------

SIGNALS: dict[str, int] = {
    "SIGHUP": 1,
    "SIGINT": 2,
    "SIGQUIT": 3,
    "SIGILL": 4,
    "SIGTRAP": 5,
    "SIGABRT": 6,
    "SIGBUS": 7,
    "SIGFPE": 8,
    "SIGKILL": 9,
    "SIGUSR1": 10,
    "SIGSEGV": 11,
    "SIGUSR2": 12,
    "SIGPIPE": 13,
    "SIGALRM": 14,
    "SIGTERM": 15,
    "SIGSTKFLT": 16,
    "SIGCHLD": 17,
    "SIGCONT": 18,
    "SIGSTOP": 19,
    "SIGTSTP": 20,
    "SIGTTIN": 21,
    "SIGTTOU": 22,
    "SIGURG": 23,
    "SIGXCPU": 24,
    "SIGXFSZ": 25,
    "SIGVTALRM": 26,
    "SIGPROF": 27,
    "SIGWINCH": 28,
    "SIGIO": 29,
    "SIGPWR": 30,
    "SIGSYS": 31,
}
"""Linux signal numbers by name (x86, arm and most others; the policy names, the action
layer sends). Real-time signals are ``SIGRTMIN``, ``SIGRTMIN+N`` and ``SIGRTMAX-N``."""

SIGRTMIN = 34
SIGRTMAX = 64
_RT = re.compile(r"^SIGRT(MIN|MAX)(?:([+-])([0-9]+))?$")
_SIGNAL_PATTERN = (
    r"^(SIG)?(HUP|INT|QUIT|ILL|TRAP|ABRT|BUS|FPE|KILL|USR1|SEGV|USR2|PIPE|ALRM|TERM|STKFLT"
    r"|CHLD|CONT|STOP|TSTP|TTIN|TTOU|URG|XCPU|XFSZ|VTALRM|PROF|WINCH|IO|PWR|SYS"
    r"|RTMIN(\+[0-9]+)?|RTMAX(-[0-9]+)?)$"
)


def signal_number(name: str) -> int:
    """The Linux number of a canonical signal name (``SIGUSR2`` -> 12, ``SIGRTMIN+2`` -> 36)."""
    if name in SIGNALS:
        return SIGNALS[name]
    m = _RT.match(name)
    if not m:
        raise ValueError(f"not a signal name: {name!r}")
    base = SIGRTMIN if m.group(1) == "MIN" else SIGRTMAX
    offset = int(m.group(3) or 0)
    number = base + offset if m.group(2) == "+" else base - offset
    if not SIGRTMIN <= number <= SIGRTMAX:
        raise ValueError(f"real-time signal out of range: {name!r}")
    return number


def _to_signal(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("signal_type", "expected a signal name such as SIGUSR2")
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        signal_number(name)
    except ValueError:
        raise PydanticCustomError(
            "signal",
            "expected a Linux signal name such as SIGUSR1, SIGUSR2, SIGTERM, SIGHUP or SIGRTMIN+2",
        ) from None
    return name


SignalName = Annotated[
    str,
    BeforeValidator(_to_signal),
    WithJsonSchema({"type": "string", "pattern": _SIGNAL_PATTERN, "examples": ["SIGUSR2"]}),
]
"""A canonical Linux signal name (``usr2`` and ``USR2`` are read as ``SIGUSR2``)."""


# --- Names, globs, addresses -------------------------------------------------------------

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""Rule and notifier names: letters, digits, ``_``, ``.``, ``-``; they appear in logs."""


def _to_listen(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PydanticCustomError("listen_type", "expected host:port, such as 127.0.0.1:9310")
    host, sep, port = value.strip().rpartition(":")
    ok = bool(sep) and port.isdigit() and 0 <= int(port) <= 65535
    if ok and host.startswith("["):
        ok = host.endswith("]") and len(host) > 2
    elif ok:
        ok = ":" not in host
    if not ok:
        raise PydanticCustomError(
            "listen",
            "expected host:port such as 127.0.0.1:9310, 0.0.0.0:9310 or [::1]:9310 "
            "(an empty host listens on every address), or null for no HTTP endpoint",
        )
    return value.strip()


Listen = Annotated[
    str | None,
    BeforeValidator(_to_listen),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]*):[0-9]{1,5}$"},
                {"type": "null"},
            ],
            "examples": ["127.0.0.1:9310"],
        }
    ),
]
"""``host:port`` for the HTTP endpoints, or ``None`` for none."""


def split_listen(listen: str) -> tuple[str, int]:
    """``"[::1]:9310"`` -> ``("::1", 9310)``; ``":9310"`` -> ``("", 9310)`` (every address)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)
