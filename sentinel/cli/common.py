"""What every subcommand shares: exit codes, argument types that refuse what they cannot
use (in one line, through argparse: exit 2), output format choice, a progress bar."""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
from typing import TextIO

from sentinel.errors import SentinelError
from sentinel.units import MAX_DURATION, MAX_SIZE, parse_duration, parse_size, quoted

EXIT_OK = 0
"""Success; for commands that look for something: something was found."""
EXIT_NOTHING = 1
"""Nothing found (``parse``, ``events``), or unhealthy (``health``)."""
EXIT_ERROR = 2
"""A user error: bad arguments or input; one line on stderr names what failed."""
EXIT_INTERNAL = 70
"""A bug in sentinel (``EX_SOFTWARE``): a short line, the traceback only with ``-v``."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (SIGINT)."""


def imports_done() -> None:
    """The command has imported what it works with: the cyclic garbage collector, off
    while the modules loaded (``sentinel.cli.entry``), goes back on, with the objects made
    so far frozen out of its reach (they live as long as the process). A no-op where it
    was on all along (``main`` called in process, as the tests do)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def configure_logging(verbosity: int) -> None:
    """Log records to stderr, one line each: warnings; with ``-v`` info, ``-vv`` debug.
    (``logging`` is imported here: ``sentinel parse`` of a file, which logs nothing,
    starts 10 ms sooner without it.)"""
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbosity > 1 else logging.INFO if verbosity else logging.WARNING,
        format="sentinel: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )


class Formatter(argparse.HelpFormatter):
    """argparse's help formatter, as wide as ``shutil.get_terminal_size`` says (``COLUMNS``,
    else the terminal, else 80), without importing shutil: argparse imports it for every
    parser it builds (6 ms of ``sentinel parse``'s start-up, with bz2 and lzma)."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _columns() -> int:
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def one_line(text: str, limit: int = 500) -> str:
    """``text`` as one printable line: control characters (newlines, escapes that would
    drive a terminal) shown as escapes, cut to ``limit`` characters."""
    out = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )
    return out if len(out) <= limit else out[: limit - 3] + "..."


def seconds_arg(text: str) -> float:
    """An argparse type: a positive, finite number of seconds (``0.5``, ``2``, ``1m``)."""
    try:
        value = float(text)
    except ValueError:
        try:
            value = parse_duration(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    if math.isnan(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected seconds above 0, got {quoted(text)}")
    if value > MAX_DURATION:
        raise argparse.ArgumentTypeError(f"expected at most 100 years, got {quoted(text)}")
    return value


def duration_arg(text: str) -> float:
    """An argparse type: a duration of 0 to 100 years (``30s``, ``24h``, ``1h30m``)."""
    try:
        value = parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if value > MAX_DURATION:
        raise argparse.ArgumentTypeError(f"expected at most 100 years, got {quoted(text)}")
    return value


def size_arg(text: str) -> int:
    """An argparse type: a size above 0 and at most 8 EiB (``512Mi``, ``1GiB``, bytes)."""
    try:
        value = parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a size above 0, got {quoted(text)}")
    if value > MAX_SIZE:
        raise argparse.ArgumentTypeError(f"expected a size of at most 8 EiB, got {quoted(text)}")
    return value


def split_listen(text: str, origin: str = "--listen") -> tuple[str, int]:
    """``"127.0.0.1:9310"`` -> ``("127.0.0.1", 9310)``, ``"[::1]:9310"`` -> ``("::1", 9310)``,
    ``":9310"`` -> ``("", 9310)``; anything else is a :class:`SentinelError` naming it."""
    host, sep, port = text.strip().rpartition(":")
    ok = bool(sep) and port.isascii() and port.isdigit() and int(port) <= 65535
    if ok and host.startswith("["):
        ok = host.endswith("]") and len(host) > 2 and "[" not in host[1:]
        host = host[1:-1]
    elif ok:
        ok = not any(c in host for c in ":[]/ ")
    if not ok:
        raise SentinelError(
            f"{origin} {quoted(text)}: expected HOST:PORT such as 127.0.0.1:9310, "
            "0.0.0.0:9310 or [::1]:9310 (port 0-65535)"
        )
    return host, int(port)


def default_format(stream: TextIO = sys.stdout) -> str:
    """``table`` for a person at a terminal, ``json`` for a pipe or a file."""
    return "table" if stream.isatty() else "json"


class ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, total: int, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.total = max(total, 1)
        self.stream = stream
        self.enabled = stream.isatty()
        self._last = -1
        self._closed = False

    def update(self, done: int) -> None:
        if not self.enabled or self._closed:  # closed: a reader thread may still report
            return
        pct = min(100, done * 100 // self.total)
        if pct == self._last:
            return
        self._last = pct
        width = 30
        filled = width * pct // 100
        self.stream.write(
            f"\r{self.label[-40:]:<40} [{'#' * filled}{'.' * (width - filled)}] {pct:3d}%"
        )
        self.stream.flush()

    def close(self) -> None:
        self._closed = True
        if self.enabled and self._last >= 0:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()
