"""``sentinel parse``: kernel OOM kill records from kmsg, log files or stdin."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from sentinel.cli.common import (
    EXIT_ERROR,
    EXIT_NOTHING,
    EXIT_OK,
    Formatter,
    ProgressBar,
    configure_logging,
    default_format,
    imports_done,
)
from sentinel.errors import SentinelError, SourceError
from sentinel.kernel.search import Trimmed
from sentinel.sources import STDIN, forked

if TYPE_CHECKING:
    from sentinel.kernel.oom import OomParser
    from sentinel.record import KillRecord

# The parser's modules are imported where they are used, after a file's reader process
# has started (sentinel.sources.forked): their tenth of a second of imports then runs
# beside the child's reading instead of before it. Nothing here needs pathlib or
# logging before that (10 ms each); kmsg, which logs, sets logging up when it is read.

PROGRESS_MIN_BYTES = 16 << 20
T = TypeVar("T")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "parse",
        formatter_class=Formatter,
        help="print the kernel OOM kill records found in kernel logs",
        description=(
            "Find kernel OOM kill records in /dev/kmsg, log files (syslog, kern.log, "
            "messages, dmesg, journalctl -k output; plain or gzip) or stdin, and print "
            "one per kill. Exit 0 when at least one was found, 1 when none, 2 on error (a "
            "source that fails is named and the others are still read)."
        ),
    )
    p.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="a file (a pipe or FIFO too; plain or gzip), '-' for stdin (plain or gzip), "
        "or 'kmsg' for /dev/kmsg (the default)",
    )
    p.add_argument(
        "--format",
        choices=("json", "table"),
        help="json: one object per line; table: for people (default on a terminal)",
    )
    p.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep reading: new kmsg records, growing files (survives rotation)",
    )
    p.add_argument(
        "--year",
        type=int,
        help=(
            "year for syslog stamps that omit it (fills the 'time' key; 1 to 9999). A stamp "
            "that year has not (Feb 29 in 2021) keeps an empty 'time' and its 'log_time'"
        ),
    )
    p.add_argument("--kmsg-path", default="/dev/kmsg", help=argparse.SUPPRESS)
    p.set_defaults(run=run, lazy_logging=True)


def records_from(
    source: str, args: argparse.Namespace, trimmed: Trimmed | None = None
) -> Iterator[KillRecord]:
    """Every kill record of one SOURCE, in order; follows it with ``--follow``.

    A read that fails part way (a gzip cut short) ends the source: the records of what
    came before it are yielded, then its :class:`SourceError` is raised. Lines cut to
    their head (see :func:`~sentinel.kernel.scan.bounded_lines`) are counted in ``trimmed``.
    """
    if source == "kmsg":
        from pathlib import Path

        from sentinel.sources.kmsg import KmsgReader

        configure_logging(args.verbose)
        parser = _parser(args)
        for line in KmsgReader(Path(args.kmsg_path), follow=args.follow):
            if line is None:
                yield from parser.flush()
            else:
                yield from parser.feed(line)
        yield from parser.flush()
        return
    bar: ProgressBar | None = None
    path: str | None = None
    if source == "-":
        open_chunks = _stdin_chunks(args.follow)
    else:
        if not source:
            raise SourceError("an empty argument names no file")
        path = source
        if os.path.isdir(path):
            raise SourceError(f"{path} is a directory, not a log file")
        try:
            size = os.stat(path).st_size
        except OSError as e:
            raise SourceError(f"cannot open {path}: {e.strerror}") from e
        bar = ProgressBar(path, size) if size >= PROGRESS_MIN_BYTES else None
        open_chunks = _file_chunks(path, args.follow)
    progress = bar.update if bar else None
    reader = None
    try:
        if not args.follow:
            reader = _start_reader(open_chunks, path, trimmed, progress)
        parser = _parser(args)  # after the reader has started: the imports run beside it
        if reader is not None:
            from sentinel.kernel.scan import scan_blocks

            yield from _until_failure(reader, lambda blocks: scan_blocks(blocks, parser))
        else:
            from sentinel.kernel.scan import scan_chunks

            yield from _until_failure(
                open_chunks(progress), lambda chunks: scan_chunks(chunks, parser, trimmed)
            )
    finally:
        if reader is not None:
            reader.close()
        if bar:
            bar.close()


def _start_reader(
    open_chunks: forked.OpenChunks,
    path: str | None,
    trimmed: Trimmed | None,
    progress: Callable[[int], None] | None,
) -> forked.ForkedBlocks | None:
    """The source read and searched by a process of its own; None where this platform
    cannot fork, or no process or memory is to spare (EAGAIN, ENOMEM): read here then."""
    if not forked.available():
        return None
    try:
        return forked.ForkedBlocks(open_chunks, path=path, trimmed=trimmed, progress=progress)
    except OSError:
        return None


def _parser(args: argparse.Namespace) -> OomParser:
    """A kill-record parser, imported here (0.05 s), then the garbage collector back on."""
    from sentinel.kernel.oom import OomParser

    parser = OomParser(year=args.year)
    imports_done()
    return parser


def _file_chunks(path: str, follow: bool) -> forked.OpenChunks:
    def open_chunks(progress: Callable[[int], None] | None) -> Iterator[bytes]:
        from pathlib import Path

        from sentinel.sources.logfile import read_chunks

        return read_chunks(Path(path), follow=follow, progress=progress)

    return open_chunks


def _stdin_chunks(follow: bool) -> forked.OpenChunks:
    def open_chunks(_progress: Callable[[int], None] | None) -> Iterator[bytes]:
        from sentinel.sources.logfile import read_stdin_chunks

        return read_stdin_chunks(follow=follow)

    return open_chunks


def _until_failure(
    items: Iterator[T], scan: Callable[[Iterator[T]], Iterator[KillRecord]]
) -> Iterator[KillRecord]:
    """``scan`` of ``items``, with a failed read taken as the end of the stream: the
    records before it (a report cut there included) come first, then the failure."""
    failures: list[SourceError] = []

    def until_failure() -> Iterator[T]:
        try:
            yield from items
        except SourceError as e:
            failures.append(e)

    yield from scan(until_failure())
    if failures:
        raise failures[0]


def source_name(source: str) -> str:
    return STDIN if source == "-" else source


def report_failure(error: SourceError) -> None:
    """One line on stderr, as the CLI reports any error; the other sources go on."""
    print(f"sentinel: error: {error}", file=sys.stderr)


def report_trimmed(source: str, trimmed: Trimmed) -> None:
    if trimmed.lines:
        from sentinel.kernel.search import MAX_LINE_BYTES

        kib = MAX_LINE_BYTES >> 10
        print(
            f"sentinel: warning: {source_name(source)}: {trimmed.lines} line"
            f"{'s' if trimmed.lines != 1 else ''} longer than {kib} KiB: read the first"
            f" {kib} KiB of each, dropped {trimmed.bytes} bytes",
            file=sys.stderr,
        )


class TablePrinter:
    COLUMNS = ("TIME", "HOST", "VICTIM", "RSS", "CONTAINER/POD", "OOM")
    WIDTHS = (26, 14, 28, 10, 28, 0)

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.header_done = False

    def row(self, values: tuple[str, ...]) -> None:
        cells = [v.ljust(w) if w else v for v, w in zip(values, self.WIDTHS, strict=True)]
        self.out.write("  ".join(cells).rstrip() + "\n")

    def print(self, r: KillRecord) -> None:
        if not self.header_done:
            self.row(self.COLUMNS)
            self.header_done = True
        self.row(table_cells(r))


def table_cells(r: KillRecord) -> tuple[str, ...]:
    when = r.time or r.log_time
    if when is None and r.kernel_timestamp is not None:
        when = f"{r.kernel_timestamp:.3f}s after boot"
    victim = f"{r.comm or '?'} [{r.pid}]"
    rss = f"{r.rss_kb / 1024:.1f} MiB" if r.rss_kb is not None else "-"
    where = "-"
    if r.pod_uid:
        where = f"pod {r.pod_uid[:8]}" + (f"/{r.container_id[:12]}" if r.container_id else "")
    elif r.container_id:
        where = f"{r.runtime or 'container'} {r.container_id[:12]}"
    elif r.systemd_unit:
        where = r.systemd_unit
    elif r.task_memcg:
        where = r.task_memcg
    if r.global_ is True:
        scope = "host-wide"
    elif r.global_ is False:
        scope = f"cgroup limit {r.oom_memcg}" if r.oom_memcg else "cgroup limit"
    else:
        scope = "?"
    if r.constraint and r.constraint not in ("CONSTRAINT_NONE", "CONSTRAINT_MEMCG"):
        scope += f" ({r.constraint})"
    return (when or "-", r.host or "-", victim, rss, where, scope)


def run(args: argparse.Namespace) -> int:
    if args.year is not None and not 1 <= args.year <= 9999:
        raise SentinelError(f"--year {args.year}: not a year (1 to 9999)")
    fmt = args.format or default_format()
    sources = args.sources or ["kmsg"]
    out = sys.stdout
    table = TablePrinter(out) if fmt == "table" else None
    found = 0

    def emit(record: KillRecord) -> None:
        import json  # here: after the first source's reader process has started

        nonlocal found
        found += 1
        if table is not None:
            table.print(record)
        else:
            out.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        out.flush()

    if args.follow and len(sources) > 1:
        failed = _follow_many(sources, args, emit)
    else:
        failed = 0
        for source in sources:
            trimmed = Trimmed()
            try:
                for record in records_from(source, args, trimmed):
                    emit(record)
            except SourceError as e:
                report_failure(e)
                failed += 1
            finally:
                report_trimmed(source, trimmed)
    if failed:
        return EXIT_ERROR
    if table is not None and found == 0 and out.isatty():
        print("no OOM kill records found", file=sys.stderr)
    return EXIT_OK if found else EXIT_NOTHING


def _follow_many(sources: list[str], args: argparse.Namespace, emit: Any) -> int:
    """One reader thread per source; records are printed by this thread, as they come.

    A source that fails is reported and the others go on; returns how many failed, once
    every source has ended.
    """
    import queue
    import threading

    q: queue.Queue[KillRecord | BaseException | _Done] = queue.Queue()

    def pump(source: str) -> None:
        trimmed = Trimmed()
        try:
            for record in records_from(source, args, trimmed):
                q.put(record)
        except BaseException as e:  # handed to the main thread, which reports it
            q.put(e)
        finally:
            q.put(_Done(source, trimmed))

    for source in sources:
        threading.Thread(target=pump, args=(source,), daemon=True, name=source).start()
    running = len(sources)
    failed = 0
    while running:
        item = q.get()
        if isinstance(item, _Done):
            running -= 1
            report_trimmed(item.source, item.trimmed)
        elif isinstance(item, SourceError):
            report_failure(item)
            failed += 1
        elif isinstance(item, SentinelError | KeyboardInterrupt):
            raise item
        elif isinstance(item, BaseException):
            raise SentinelError(f"reading failed: {item}") from item
        else:
            emit(item)
    return failed


class _Done:
    """A source's reader thread has ended."""

    __slots__ = ("source", "trimmed")

    def __init__(self, source: str, trimmed: Trimmed) -> None:
        self.source = source
        self.trimmed = trimmed
