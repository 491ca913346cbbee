"""Kill records from a stream of bytes: the fast path for large log files.

Pure: byte chunks in, records out. An empty chunk means "the source is idle": the parser
is flushed so that a report whose only kill evidence is the ``oom-kill:`` summary line is
emitted without waiting for more input.

Feeding every line of a multi-gigabyte log to :class:`~sentinel.kernel.oom.OomParser`
costs microseconds a line, and almost none of those lines can matter. A line that does not
belong to a report leaves the parser as it was, and only a few kinds of line can belong to
one: while no report is open, those the parser's ``_marker_line`` handles and those that
open a report without a header (:data:`IDLE`); while one is open, also the CPU line, task
table rows, ``Mem-Info`` counters and the memcg usage lines (:data:`BUSY`). So each block is
searched for those needles and only the lines that hold one are decoded and fed. With
hyperscan installed (a dependency; :data:`ENGINE`), each mode's needles are compiled into
one database and a block is searched for all of them in one pass, at about 2 GB/s; without
it, each needle is a pass of ``bytes.find`` or ``re``, in C too but 3-4 times slower in
all (``bench/parse`` prints the designs side by side).

Skipped lines could still change the line decoder's memory of the last host, which an
unprefixed continuation line takes: before a hit line with no prefix of its
own, the skipped lines back to the last line with one are fed too.

One approximation, on purpose: a report with no line of its own for :data:`STALE_BYTES`
of log (a ``Mem-Info`` dump of a page allocation failure, a report whose kill line was
cut) is taken to be abandoned. It stays open in the parser, but the scanner goes back to
the :data:`IDLE` needles, so its table rows or counters arriving later than that are not
fed. Kernels print a report in one burst; without this, one unfinished report would make
the rest of a file several times slower to scan.

Input that is not a log stays linear in time and bounded in memory (:func:`bounded_lines`):
a run of NUL bytes (the hole a crash leaves in a syslog file) ends a line like ``\\n``,
and a line longer than :data:`MAX_LINE_BYTES` keeps its first :data:`MAX_LINE_BYTES`; the
rest is dropped as it streams by and counted in :class:`Trimmed`. No kernel line comes
near that length, so every real log is scanned as it was written.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sentinel.kernel.lines import PREFIXED_ASCII, LineDecoder
from sentinel.kernel.oom import OomParser
from sentinel.model import KillRecord

MAX_LINE_BYTES = 64 << 10
"""The longest line kept whole: 16x the longest a kernel writes (1 KiB of text, 4 KiB once
``/dev/kmsg`` escapes it), with room for a journal JSON envelope around it. A longer line
keeps this many bytes; the rest is dropped unread, so memory stays bounded on any input."""

STALE_BYTES = 1 << 17
"""Log bytes without a report line after which open reports are taken to be abandoned."""

_WS = rb"[\t-\r\x1c-\x20\x80-\xff]"  # \s of a str pattern, in UTF-8 bytes (a superset)
_DIGIT = rb"[0-9\x80-\xff]"  # \d of a str pattern (Unicode digits), likewise


class _Hit:
    __slots__ = ("_start",)

    def __init__(self, start: int) -> None:
        self._start = start

    def start(self) -> int:
        return self._start


class _Literal:
    """A fixed needle with ``re.Pattern.search``'s signature: ``bytes.find`` is 2x faster."""

    __slots__ = ("needle",)

    def __init__(self, needle: bytes) -> None:
        self.needle = needle

    def search(self, data: bytes, pos: int = 0, endpos: int = 1 << 62) -> _Hit | None:
        i = data.find(self.needle, pos, endpos)
        return _Hit(i) if i >= 0 else None


class _Multi:
    """Several needles sought in one pass by a compiled Hyperscan database, with
    ``re.Pattern.search``'s signature. A search scans on from the end of the last scan, by
    growing windows (:data:`_MULTI_STEP`), until it finds a hit or reaches ``endpos``:
    every hit of a window is kept, so searches inside the range scanned are answered from
    its hits (a report's stops move as it goes on: one pass beats a pass per stop).
    A hit's position is the last byte of its match: on the match's line, which is all the
    scanner needs.

    Each instance has its own scratch space and hits, so scanners in two threads never
    share one; the compiled database is shared.
    """

    __slots__ = ("_data", "_db", "_end", "_hits", "_scratch", "_start")

    def __init__(self, db: Any) -> None:
        self._db = db
        self._scratch = _hyperscan.Scratch(db)
        self._data: bytes | None = None
        self._start = self._end = 0
        self._hits: list[int] = []

    def search(self, data: bytes, pos: int = 0, endpos: int = 1 << 62) -> _Hit | None:
        endpos = min(endpos, len(data))
        if data is not self._data or not self._start <= pos <= self._end:
            self._data, self._start, self._end = data, pos, pos  # the hits kept are all < pos
            self._hits = []
        hits = self._hits
        i = bisect_left(hits, pos)
        step = _MULTI_STEP
        while i == len(hits) and self._end < endpos:
            # from the start of the line the last scan cut: needles never span lines
            resume = max(self._start, data.rfind(b"\n", self._start, self._end) + 1)
            end = min(len(data), self._end + step, max(endpos, self._end + _MULTI_STEP))
            on_match = _collector(hits, resume, hits[-1] if hits else -1)
            self._db.scan(memoryview(data)[resume:end], on_match, scratch=self._scratch)
            self._end = end
            step = min(step * 2, _MULTI_MAX_STEP)
            i = bisect_left(hits, pos)
        if i < len(hits) and hits[i] < endpos:
            return _Hit(hits[i])
        return None

    def prime(self, data: bytes, hits: list[int]) -> None:
        """Take ``hits``, every hit in the whole of ``data`` (found by :func:`core_hits`,
        in another thread perhaps), as if this instance had scanned it."""
        self._data, self._start, self._end = data, 0, len(data)
        self._hits = hits


def _collector(hits: list[int], offset: int, last: int) -> Callable[..., None]:
    """A Hyperscan match handler: appends ``offset +`` each match's last byte past ``last``."""

    def on_match(_id: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
        if offset + to - 1 > last:
            hits.append(offset + to - 1)

    return on_match


_MULTI_STEP = 8 << 10
"""The first window a :class:`_Multi` scans past its last scan when asked past it; each
further window of the same search is twice as long, up to :data:`_MULTI_MAX_STEP`. A
report's next line is usually in the first window, so its stops (which reach up to
:data:`STALE_BYTES` ahead) cost the bytes up to that line, not to the stop."""
_MULTI_MAX_STEP = 1 << 20


_Needle = re.Pattern[bytes] | _Literal | _Multi


def _literal(text: bytes) -> _Literal:
    return _Literal(text)


IDLE_CORE: tuple[_Needle, ...] = (
    _literal(b"oom-kill"),  # "invoked oom-killer", "oom-kill:"
    re.compile(rb"Kill(?:ed)? process"),  # a literal head: sre skips to "Kill" in C
    _literal(b"kill process"),  # 2.6's "Out of memory: kill process N (comm) score S or a child"
)
"""The lines that start or end a report in a log whose reports have their heads."""

OPENER_BYTES = 4 << 20
"""How far into a stream reports are sought by their middle lines too (see below)."""

IDLE: tuple[_Needle, ...] = (
    *IDLE_CORE,
    re.compile(rb"killed as a result|killable process"),  # legacy "Task in", no victim
    re.compile(rb"allocation failure|Show Memory"),  # memory dumps that are not OOM reports
    _literal(b"Tasks state"),
    _literal(b"Mem-Info:"),
    _literal(b"usage "),  # "memory: usage", "memory+swap: usage", "kmem: usage" ...
    re.compile(rb"pid" + _WS + rb"*\]"),  # the task table header "[ pid ]"
)
"""Every line that changes the parser while no report is open matches one of these: the
lines its ``_marker_line`` handles (``Killed process``, ``Kill process``, ``invoked
oom-killer``, ``oom-kill:``, ``Task in ... killed as a result of limit``, ``no killable
processes``) and those that open a report without a header.

A report without its head (``Task in ...``, ``Tasks state``, ``Mem-Info:``, memcg usage,
a task table, with no ``invoked oom-killer`` before it) is one whose start was cut off: at
the top of a rotated file or of an excerpt. The kernel's rate limit drops a report's head and body
together. So these needles, which cost more than half the scan, are sought only in
the first :data:`OPENER_BYTES` of a stream; after that only :data:`IDLE_CORE`."""

BUSY: tuple[_Needle, ...] = (
    *IDLE,
    _literal(b"CPU: "),
    _literal(b"Pid: "),
    re.compile(rb"\[" + _WS + rb"*" + _DIGIT + rb"+\]" + _WS + rb"+[-0-9\x80-\xff]"),  # rows
    _literal(b" pages"),  # "N pages RAM", "N total pagecache pages" ...
    _literal(b" swap"),  # "Free swap  = NkB", "Total swap = NkB"
    *(
        _literal(name)
        for name in (
            b"_anon:",
            b"_file:",
            b"unevictable:",
            b"dirty:",
            b"writeback:",
            b"unstable:",
            b"reclaimable:",
            b"mapped:",
            b"shmem:",
            b"pagetables:",
            b"bounce:",
            b"free:",
            b"free_",
        )
    ),  # the Mem-Info counter lines
)
"""Every line that changes the parser while a report is open matches one of these.

``tests/test_scan.py`` replays every sample through a parser and checks both claims on
every line that changed it."""

_hyperscan: Any
try:
    import hyperscan as _hyperscan
except ImportError:  # a platform without its wheel: the needles one by one, in C all the same
    _hyperscan = None

ENGINE = "hyperscan" if _hyperscan is not None else "re"
"""How blocks are searched: ``hyperscan`` (each mode's needles in one pass) or ``re``
(``bytes.find`` and ``re`` per needle), the fallback where hyperscan does not install."""

_GROUPS = (IDLE_CORE, IDLE[len(IDLE_CORE) :], BUSY[len(IDLE_CORE) :])
"""The needles of :data:`IDLE_CORE`, then those :data:`IDLE` adds, then all that
:data:`BUSY` adds to the core: a scanner searches the first group alone, the first two, or
the first and the third, each group in one pass."""
_compiled: list[Any] = []


def _expression(needle: _Needle) -> bytes:
    if isinstance(needle, _Literal):
        return re.escape(needle.needle)
    assert isinstance(needle, re.Pattern)
    return needle.pattern


def _databases() -> list[Any]:
    """The three groups compiled once (a few milliseconds) and shared by every scanner."""
    if not _compiled and _hyperscan is not None:
        for group in _GROUPS:
            db = _hyperscan.Database(mode=_hyperscan.HS_MODE_BLOCK)
            expressions = [_expression(n) for n in group]
            db.compile(expressions=expressions, ids=list(range(len(expressions))))
            _compiled.append(db)
    return _compiled


def core_hits(engine: str = ENGINE) -> Callable[[bytes], list[int] | None]:
    """A search for :data:`IDLE_CORE` over whole blocks, for :meth:`_Scanner.prime`: the
    positions of every hit in a block (each the last byte of its match), in order; None
    with an engine that does not search ahead. It has its own scratch space, so it may
    run in another thread than the scanner's (Hyperscan releases the GIL as it scans)."""
    if engine != "hyperscan":
        return lambda _data: None
    db = _databases()[0]
    scratch = _hyperscan.Scratch(db)

    def search(data: bytes) -> list[int]:
        hits: list[int] = []
        db.scan(data, _collector(hits, 0, -1), scratch=scratch)
        hits.sort()  # several needles: a later one may report an earlier end
        return hits

    return search


def _needles(engine: str) -> tuple[tuple[_Needle, ...], tuple[_Needle, ...], tuple[_Needle, ...]]:
    """(idle-core, idle, busy) needles for one scanner."""
    if engine == "hyperscan":
        core, opener, busy = (_Multi(db) for db in _databases())
        return (core,), (core, opener), (core, busy)
    return IDLE_CORE, IDLE, BUSY


_CONTEXT_SEGMENTS = 256
"""Skipped segments kept for the walk back to a prefixed line. A segment that ends with a
prefixed line makes those before it useless, so they are dropped: in a log with prefixes
one or two are kept; in text without any, at most this many and :data:`_CONTEXT_BYTES`."""
_CONTEXT_BYTES = 8 << 20
"""Bytes of chunks the kept segments may hold on to."""

_Segment = tuple[bytes, int, int]


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _self_contained(raw: bytes) -> bool:
    """Whether the line carries its own prefix, so the decoder needs no earlier line.

    A fresh decoder knows no host; a line that it still dates, places or numbers has a
    prefix (syslog, journal, dmesg, /dev/kmsg) and sets the decoder's memory itself.
    """
    if PREFIXED_ASCII.match(raw):
        return True
    lines = LineDecoder().decode(_decode(raw))
    if not lines:
        return False
    first = lines[0]
    return (
        first.host is not None
        or first.kernel_timestamp is not None
        or first.seq is not None
        or first.log_time is not None
        or first.time is not None
    )


class _Scanner:
    """Feeds the parser the lines of blocks that matter; remembers what it skipped."""

    def __init__(self, parser: OomParser, engine: str = ENGINE) -> None:
        self.parser = parser
        self.idle_core, self.idle, self.busy = _needles(engine)
        self.quiet = 0
        """Lines since the last one that belonged to a report."""
        self.skipped: deque[_Segment] = deque()
        self.skipped_truncated = False
        self.skipped_bytes = 0
        """Lengths of the chunks the kept segments refer to (a chunk may count twice)."""
        self.offset = 0
        """Bytes of the stream scanned so far."""

    def prime(self, data: bytes, hits: list[int] | None) -> None:
        """Take the :func:`core_hits` of the whole of ``data``, the next block's data."""
        core = self.idle_core[0]
        if hits is not None and isinstance(core, _Multi):
            core.prime(data, hits)

    def block(self, data: bytes, start: int, end: int) -> Iterator[KillRecord]:
        """The records of the whole lines in ``data[start:end]``; the last may lack ``\\n``."""
        parser = self.parser
        pos = start
        found: dict[int, int] = {}  # first match at or after the pos it was sought from
        found_until: dict[int, int] = {}  # ... in data[:found_until], if none was there
        while pos < end:
            if parser.holding:  # the line after one that looks wrapped may be its rest
                line_end = data.find(b"\n", pos, end)
                line_end = end if line_end < 0 else line_end
                yield from self._feed_hit(data, pos, pos, line_end)
                self.quiet = 0
                pos = line_end + 1
                continue
            stop = end
            patterns = self.idle if self.offset + pos - start < OPENER_BYTES else self.idle_core
            wanting = parser.wants_body
            if wanting and self.quiet < STALE_BYTES:
                patterns = self.busy
                stop = min(end, pos + STALE_BYTES - self.quiet)
            hit = stop
            for pattern in patterns:  # each only up to the first hit of those before it
                i = id(pattern)
                p = found.get(i, -1)
                if p < pos:
                    m = pattern.search(data, pos, hit)
                    p = found[i] = m.start() if m is not None else hit
                    found_until[i] = hit
                elif p >= found_until[i] and found_until[i] < hit:
                    # none up to found_until: go on from the start of the line it cut
                    resume = data.rfind(b"\n", pos, found_until[i]) + 1 or pos
                    m = pattern.search(data, resume, hit)
                    p = found[i] = m.start() if m is not None else hit
                    found_until[i] = hit
                hit = min(hit, p)
            if hit >= stop:
                # nothing here: skip to stop, but only by whole lines
                cut = stop if stop == end else data.rfind(b"\n", pos, stop) + 1
                if cut <= pos:
                    cut = data.find(b"\n", stop, end) + 1 or end
                if wanting:
                    self.quiet += cut - pos
                self._skip(data, pos, cut)
                pos = cut
                continue
            line_start = data.rfind(b"\n", pos, hit) + 1 or pos
            line_end = data.find(b"\n", hit, end)
            if line_end < 0:
                line_end = end
            if wanting:
                self.quiet += line_start - pos
            yield from self._feed_hit(data, pos, line_start, line_end)
            if parser.last_line_related:
                self.quiet = 0
            else:
                self.quiet += line_end + 1 - line_start
            pos = line_end + 1
        self.offset += end - start

    def _skip(self, data: bytes, start: int, end: int) -> None:
        if start >= end:
            return
        stop = end - 1 if data[end - 1 : end] == b"\n" else end
        if stop > start and _self_contained(
            data[data.rfind(b"\n", start, stop) + 1 or start : stop]
        ):
            self.skipped.clear()  # the walk back stops at this segment's last line
            self.skipped_truncated = False
            self.skipped_bytes = 0
        while self.skipped and (
            len(self.skipped) >= _CONTEXT_SEGMENTS or self.skipped_bytes > _CONTEXT_BYTES
        ):
            self.skipped_bytes -= len(self.skipped.popleft()[0])
            self.skipped_truncated = True
        self.skipped.append((data, start, end))
        self.skipped_bytes += len(data)

    def _feed_hit(
        self, data: bytes, pos: int, line_start: int, line_end: int
    ) -> Iterator[KillRecord]:
        """Feed the hit line, after the skipped lines it takes its host from, if any."""
        raw = data[line_start:line_end]
        lines: list[bytes] = []
        if (line_start > pos or self.skipped) and not _self_contained(raw):
            self._skip(data, pos, line_start)
            lines = self._back_to_prefixed_line()
        self.skipped.clear()
        self.skipped_truncated = False
        self.skipped_bytes = 0
        lines.append(raw)
        for line in lines:
            records = self.parser.feed(_decode(line))
            if records:
                yield from records

    def _back_to_prefixed_line(self) -> list[bytes]:
        """The skipped lines from the last one with a prefix of its own, in order.

        All of them when none has one: the decoder's memory then comes from the last line
        that was fed, and these lines carry it on.
        """
        back: list[bytes] = []
        for data, start, end in reversed(self.skipped):
            stop = end
            while stop > start:
                cut = data.rfind(b"\n", start, stop - 1)
                begin = cut + 1 if cut >= 0 else start
                line_stop = stop - 1 if data[stop - 1 : stop] == b"\n" else stop
                if line_stop > begin:
                    raw = data[begin:line_stop]
                    back.append(raw)
                    if _self_contained(raw):
                        back.reverse()
                        return back
                stop = begin
        back.reverse()
        return back


@dataclass
class Trimmed:
    """What :func:`bounded_lines` dropped from a stream."""

    lines: int = 0
    """Lines longer than the limit, cut to their first ``limit`` bytes."""
    bytes: int = 0
    """Bytes dropped from those lines."""


_NULS = re.compile(rb"\x00+")


def bounded_lines(
    chunks: Iterable[bytes], limit: int = MAX_LINE_BYTES, trimmed: Trimmed | None = None
) -> Iterator[bytes]:
    """The same stream with each NUL run turned into one ``\\n`` and each line cut to
    ``limit`` bytes (its newline kept); the cuts are counted in ``trimmed``.

    Linear: each chunk is searched by windows of ``limit`` bytes, in C, and nothing of a
    long line is held beyond its first ``limit`` bytes. Empty chunks (idle ticks) pass.
    """
    counts = trimmed if trimmed is not None else Trimmed()
    run = 0  # bytes of the current, unfinished line already passed on
    dropping = False  # inside a line already cut: drop up to its newline
    for raw in chunks:
        if not raw:
            yield raw
            continue
        chunk = _NULS.sub(b"\n", raw) if b"\x00" in raw else raw
        n = len(chunk)
        pieces: list[bytes] = []
        keep = 0  # start of the piece of this chunk being kept
        pos = 0
        if dropping:
            nl = chunk.find(b"\n")
            if nl < 0:
                counts.bytes += n
                continue
            counts.bytes += nl
            dropping = False
            run = 0
            keep = pos = nl
        while pos < n:
            budget = limit - run
            if n - pos <= budget:  # the rest fits, whatever its newlines
                last = chunk.rfind(b"\n", pos, n)
                run = n - last - 1 if last >= 0 else run + n - pos
                break
            last = chunk.rfind(b"\n", pos, pos + budget + 1)
            if last >= 0:
                pos = last + 1
                run = 0
                continue
            cut = pos + budget  # the current line is too long: keep its head only
            pieces.append(chunk[keep:cut])
            counts.lines += 1
            nl = chunk.find(b"\n", cut)
            if nl < 0:
                counts.bytes += n - cut
                dropping = True
                keep = pos = n
                break
            counts.bytes += nl - cut
            run = 0
            keep = nl
            pos = nl + 1
        if keep == 0:
            yield chunk
            continue
        pieces.append(chunk[keep:])
        data = b"".join(pieces)
        if data:
            yield data


Block = tuple[bytes, list[int] | None]
"""A block of whole lines (but perhaps the last), after :func:`bounded_lines`, with its
:func:`core_hits`."""


def blocks(
    chunks: Iterable[bytes], trimmed: Trimmed | None = None, *, engine: str = ENGINE
) -> Iterator[Block]:
    """The first stage of :func:`scan_chunks`, which may run in a thread of its own (its
    ``ahead``): :func:`bounded_lines`, then the core search of each block in one pass."""
    search = core_hits(engine)
    for chunk in bounded_lines(chunks, trimmed=trimmed):
        yield chunk, (search(chunk) if chunk else None)


def scan_chunks(
    chunks: Iterable[bytes],
    parser: OomParser | None = None,
    trimmed: Trimmed | None = None,
    *,
    engine: str = ENGINE,
    ahead: Callable[[Iterator[Block]], Iterator[Block]] | None = None,
) -> Iterator[KillRecord]:
    """All kill records in a byte stream cut at arbitrary places, in log order.

    The records are those of feeding every line to ``parser`` (see the module docstring
    for the one deliberate approximation), after :func:`bounded_lines`; what it cut is
    counted in ``trimmed``. ``ahead`` runs the first stage (reading, :func:`blocks`) ahead
    of the parsing, in a thread (``sentinel.sources.logfile.read_ahead``): the reads and
    the search release the GIL, so they may overlap the parsing (on two cores, measured
    by ``bench/parse``, they overlap little: each hand-over of the GIL costs time too).
    """
    parser = parser if parser is not None else OomParser()
    scanner = _Scanner(parser, engine)
    stage = blocks(chunks, trimmed, engine=engine)
    if ahead is not None:
        stage = ahead(stage)
    tail: list[bytes] = []  # the unfinished last line: at most MAX_LINE_BYTES in all
    for chunk, hits in stage:
        if not chunk:
            yield from parser.flush()
            continue
        first = chunk.find(b"\n")
        if first < 0:
            tail.append(chunk)
            continue
        if tail:
            head = b"".join(tail) + chunk[: first + 1]
            tail.clear()
            yield from scanner.block(head, 0, len(head))
            start = first + 1
        else:
            start = 0
        cut = chunk.rfind(b"\n") + 1
        if cut > start:
            scanner.prime(chunk, hits)
            yield from scanner.block(chunk, start, cut)
        if cut < len(chunk):
            tail.append(chunk[cut:])
    if tail:
        last = b"".join(tail)
        yield from scanner.block(last, 0, len(last))
    yield from parser.flush()
