"""``sentinel forecast``: replay a memory trace through the forecaster the daemon uses."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from sentinel.cli.common import EXIT_OK, default_format, size_arg
from sentinel.errors import SentinelError, SourceError
from sentinel.forecast import Forecast, Forecaster
from sentinel.units import MAX_SIZE, format_duration, format_size, quoted

HEADER = ("t", "usage_bytes")
"""Required leading columns; a third, ``limit_bytes``, may carry limit changes."""


class TraceError(SentinelError):
    """A trace file that is not ``t,usage_bytes[,limit_bytes]`` CSV; names file and line."""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "forecast",
        help="replay a memory trace (CSV) through the OOM forecaster",
        description=(
            "Read a CSV trace with the header 't,usage_bytes' (t in seconds; an optional "
            "third column 'limit_bytes' changes the limit from that row on) and print the "
            "forecast after every sample: with --format json one object per line with t, "
            "usage_bytes, eta_seconds (the confident ETA rules act on; null when no kill is "
            "projected), its bounds, the growth rate and the peak envelope, and the observed "
            "answer: observed_rate_bytes_per_s +- observed_rate_error (the trend of the last "
            "minutes) and observed_eta_seconds with its bounds (null unless usage clearly "
            "rises). Exit 0, or 2 on bad input (the message names the line)."
        ),
    )
    p.add_argument("trace", metavar="TRACE.csv", help="the trace file, or '-' for stdin")
    p.add_argument(
        "--limit",
        type=size_arg,
        metavar="SIZE",
        help="memory limit: bytes or with a unit (512Mi, 1GiB, 2G); required unless the "
        "trace has a limit_bytes column",
    )
    p.add_argument(
        "--constraint",
        default="cgroup",
        help="name of the binding constraint to report (default: cgroup)",
    )
    p.add_argument(
        "--format",
        choices=("json", "table"),
        help="json: one object per sample; table: for people (default on a terminal)",
    )
    p.set_defaults(run=run)


def _number(text: str, name: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{where}: {name} is not a number: {quoted(text.strip())}") from None
    if not math.isfinite(value):
        raise TraceError(f"{where}: {name} is not finite: {quoted(text.strip())}")
    return value


def read_trace(lines: Iterator[str], name: str) -> Iterator[tuple[float, float, float | None]]:
    """(t, usage, limit or None) per data row; raises :class:`TraceError` naming the line."""
    first = next(lines, None)
    if first is None:
        raise TraceError(f"{name}:1: empty trace (expected the header 't,usage_bytes')")
    header = tuple(h.strip().lower() for h in first.lstrip("\ufeff").split(","))
    if header[:2] != HEADER or len(header) > 3 or header[2:] not in ((), ("limit_bytes",)):
        raise TraceError(
            f"{name}:1: expected the header 't,usage_bytes' (or 't,usage_bytes,limit_bytes'), "
            f"got {quoted(first.strip())}"
        )
    columns = len(header)
    prev_t = -math.inf
    for number, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        fields = line.split(",")
        if len(fields) != columns:
            raise TraceError(f"{where}: expected {columns} values, got {len(fields)}")
        t = _number(fields[0], "t", where)
        usage = _number(fields[1], "usage_bytes", where)
        if usage < 0:
            raise TraceError(f"{where}: usage_bytes is negative: {quoted(fields[1].strip())}")
        if usage > MAX_SIZE:
            raise TraceError(f"{where}: usage_bytes is above 8 EiB: {quoted(fields[1].strip())}")
        limit: float | None = None
        if columns == 3 and fields[2].strip():
            limit = _number(fields[2], "limit_bytes", where)
            if limit <= 0:
                raise TraceError(
                    f"{where}: limit_bytes must be above 0: {quoted(fields[2].strip())}"
                )
            if limit > MAX_SIZE:
                raise TraceError(
                    f"{where}: limit_bytes is above 8 EiB: {quoted(fields[2].strip())}"
                )
        if t < prev_t:
            raise TraceError(f"{where}: time goes backwards ({t:g} after {prev_t:g})")
        prev_t = t
        yield t, usage, limit


class TablePrinter:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        out.write(
            f"{'T':>10} {'USAGE':>9} {'LIMIT':>9} {'%':>5} {'PEAK':>9} "
            f"{'RATE/h':>9} {'ETA':>9} {'RANGE':>20} {'TREND/h':>10} {'~ETA':>9} "
            f"{'~RANGE':>20}\n"
        )

    def __call__(self, f: Forecast) -> None:
        pct = f"{100 * f.usage_bytes / f.limit_bytes:.1f}" if f.limit_bytes else "-"
        limit = format_size(f.limit_bytes) if f.limit_bytes else "-"
        eta = format_duration(f.eta_seconds) if f.eta_seconds is not None else "-"
        rng = ""
        if f.eta_seconds is not None:
            low = format_duration(f.eta_low) if f.eta_low is not None else "?"
            high = format_duration(f.eta_high) if f.eta_high is not None else "never"
            rng = f"{low}..{high}"
        seen = f.observed_eta_seconds
        seen_eta = format_duration(seen) if seen is not None else "-"
        seen_rng = ""
        if seen is not None:
            low = format_duration(f.observed_eta_low) if f.observed_eta_low is not None else "?"
            high = (
                format_duration(f.observed_eta_high) if f.observed_eta_high is not None else "never"
            )
            seen_rng = f"{low}..{high}"
        trend = f.observed_rate_bytes_per_s * 3600
        trend_text = ("-" if trend < 0 else "") + format_size(abs(trend))
        self.out.write(
            f"{f.t:>10.0f} {format_size(f.usage_bytes):>9} {limit:>9} {pct:>5} "
            f"{format_size(f.peak_bytes):>9} {format_size(f.rate_bytes_per_s * 3600):>9} "
            f"{eta:>9} {rng:>20} {trend_text:>10} {seen_eta:>9} {seen_rng:>20}\n"
        )


def run(args: argparse.Namespace) -> int:
    fmt = args.format or default_format()
    if args.trace == "-":
        name = "<stdin>"
        stream: TextIO = sys.stdin
    else:
        path = Path(args.trace)
        name = str(path)
        try:
            stream = path.open(encoding="utf-8", newline="")
        except OSError as e:
            raise SourceError(f"cannot open {path}: {e.strerror}") from e
    out = sys.stdout
    try:
        rows = read_trace(iter(stream), name)
        forecaster = Forecaster(args.limit, constraint=args.constraint)
        if fmt == "json":
            dumps = json.JSONEncoder(separators=(",", ":")).encode
            for t, usage, limit in rows:
                if forecaster.limit_bytes is None and limit is None:
                    raise TraceError(f"{name}: no limit: give --limit or a limit_bytes column")
                out.write(dumps(forecaster.feed(t, usage, limit).to_dict()) + "\n")
        else:
            table = TablePrinter(out)
            for t, usage, limit in rows:
                if forecaster.limit_bytes is None and limit is None:
                    raise TraceError(f"{name}: no limit: give --limit or a limit_bytes column")
                table(forecaster.feed(t, usage, limit))
    except UnicodeDecodeError as e:
        raise TraceError(f"{name}: not a text file ({e.reason})") from e
    finally:
        if stream is not sys.stdin:
            stream.close()
    out.flush()
    return EXIT_OK
