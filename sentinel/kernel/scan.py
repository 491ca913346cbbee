"""Kill records from a stream of bytes: the fast path for large log files.

Pure: byte chunks in, records out. An empty chunk means "the source is idle": the parser is
flushed so that a report whose only kill evidence is the ``oom-kill:`` summary line is
emitted without waiting for more input.

Feeding every line of a multi-gigabyte log to :class:`~sentinel.kernel.oom.OomParser` costs
microseconds a line, and almost none of those lines can matter. A line that does not belong
to a report leaves the parser as it was, and only a few kinds of line can belong to one:
while no report is open, those the parser's ``_marker_line`` handles and those that open a
report without a header (:data:`~sentinel.kernel.search.IDLE`); while one is open, also the
CPU line, task table rows, ``Mem-Info`` counters and the memcg usage lines
(:data:`~sentinel.kernel.search.BUSY`). So each block is searched for those needles
(:mod:`sentinel.kernel.search`) and only the lines that hold one are decoded and fed. With
hyperscan installed (a dependency; :data:`~sentinel.kernel.search.ENGINE`), each mode's
needles are compiled into one database and a block is searched for all of them in one pass,
at about 2 GB/s; without it, each needle is a pass of ``bytes.find`` or ``re``, in C too
but 3-4 times slower in all (``bench/parse`` prints the designs side by side).

Skipped lines could still change the line decoder's memory of the last host, which an
unprefixed continuation line takes: before a hit line with no prefix of its own, the
skipped lines back to the last line with one are fed too.

One approximation, on purpose: a report with no line of its own for :data:`STALE_BYTES` of
log (a ``Mem-Info`` dump of a page allocation failure, a report whose kill line was cut) is
taken to be abandoned. It stays open in the parser, but the scanner goes back to the
:data:`~sentinel.kernel.search.IDLE` needles, so its table rows or counters arriving later
than that are not fed. Kernels print a report in one burst; without this, one unfinished
report would make the rest of a file several times slower to scan.

Input that is not a log stays linear in time and bounded in memory
(:func:`~sentinel.kernel.search.bounded_lines`): a run of NUL bytes (the hole a crash
leaves in a syslog file) ends a line like ``\\n``, and a line longer than
:data:`~sentinel.kernel.search.MAX_LINE_BYTES` keeps its first
:data:`~sentinel.kernel.search.MAX_LINE_BYTES`; the rest is dropped as it streams by and
counted in :class:`~sentinel.kernel.search.Trimmed`. No kernel line comes near that length,
so every real log is scanned as it was written.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from sentinel.kernel.lines import PREFIXED_ASCII, LineDecoder
from sentinel.kernel.oom import OomParser
from sentinel.kernel.search import (
    ENGINE,
    MAX_LINE_BYTES,
    OPENER_BYTES,
    Block,
    Lent,
    Sparse,
    Trimmed,
    _Multi,
    _needles,
    blocks,
)
from sentinel.record import KillRecord

__all__ = ["MAX_LINE_BYTES", "STALE_BYTES", "Block", "Trimmed", "scan_blocks", "scan_chunks"]

STALE_BYTES = 1 << 17
"""Log bytes without a report line after which open reports are taken to be abandoned."""
_CONTEXT_SEGMENTS = 256
"""Skipped segments kept for the walk back to a prefixed line. A segment that ends with a
prefixed line makes those before it useless, so they are dropped: in a log with prefixes
one or two are kept; in text without any, at most this many and :data:`_CONTEXT_BYTES`."""
_CONTEXT_BYTES = 8 << 20
"""Bytes of chunks the kept segments may hold on to."""

_Segment = tuple[bytes, int, int, int]
"""A skipped stretch: ``data[start:end]``, and the bytes of the chunk it counts against
:data:`_CONTEXT_BYTES` (the whole chunk's, as long as ``data`` is the chunk)."""


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


def _prefixed_tail(data: bytes, start: int, end: int) -> int | None:
    """Where the last line of ``data[start:end]`` (its newline aside) starts, when that
    line carries its own prefix (a walk back to one stops there); else None."""
    stop = end - 1 if data[end - 1 : end] == b"\n" else end
    begin = data.rfind(b"\n", start, stop) + 1 or start
    return begin if stop > begin and _self_contained(data[begin:stop]) else None


class _Scanner:
    """Feeds the parser the lines of blocks that matter; remembers what it skipped."""

    def __init__(self, parser: OomParser, engine: str = ENGINE) -> None:
        self.parser = parser
        self.idle_core, self.idle, self.busy = _needles(engine)
        self._multis = tuple(
            {
                id(n): n for n in (*self.idle_core, *self.idle, *self.busy) if isinstance(n, _Multi)
            }.values()
        )
        """The needles that keep what they found in a buffer (:meth:`let_go` clears it)."""
        self.quiet = 0
        """Lines since the last one that belonged to a report."""
        self.skipped: deque[_Segment] = deque()
        self.skipped_truncated = False
        self.skipped_bytes = 0
        """Lengths of the chunks the kept segments refer to (a chunk may count twice)."""
        self.size = 0
        """The length of the block being scanned (its buffer may be longer: a slot)."""
        self.offset = 0
        """Bytes of the stream scanned so far."""

    def skips(self, last: bytes) -> bool:
        """Whether a block with no core hit whose last line is ``last`` (with its newline)
        would only be skipped, so that its first line, ``last`` and its tail stand for it
        (:class:`~sentinel.kernel.search.Sparse`): no wrapped line held, no report taking
        body lines, past the opener window, and ``last`` is a prefixed line (a walk back
        to one stops there, so nothing before it would be fed)."""
        parser = self.parser
        return (
            not parser.holding
            and not (parser.wants_body and self.quiet < STALE_BYTES)
            and self.offset >= OPENER_BYTES
            and _self_contained(last[:-1])
        )

    def prime(self, data: bytes, hits: list[int] | None) -> None:
        """Take the :func:`core_hits` of the whole of ``data``, the next block's data."""
        core = self.idle_core[0]
        if hits is not None and isinstance(core, _Multi):
            core.prime(data, hits)

    def block(
        self, data: bytes, start: int, end: int, size: int | None = None
    ) -> Iterator[KillRecord]:
        """The records of the whole lines in ``data[start:end]``; the last may lack ``\\n``.
        ``size``: the block's length, where ``data`` is a longer buffer holding it."""
        self.size = len(data) if size is None else size
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
        if _prefixed_tail(data, start, end) is not None:
            self.skipped.clear()  # the walk back stops at this segment's last line
            self.skipped_truncated = False
            self.skipped_bytes = 0
        while self.skipped and (
            len(self.skipped) >= _CONTEXT_SEGMENTS or self.skipped_bytes > _CONTEXT_BYTES
        ):
            self.skipped_bytes -= self.skipped.popleft()[3]
            self.skipped_truncated = True
        self.skipped.append((data, start, end, self.size))
        self.skipped_bytes += self.size

    def let_go(self, data: object) -> None:
        """``data``'s buffer is about to hold other bytes (a :class:`Lent` block): copy out
        what the walk back may still read of it, and forget the searches of it. A segment
        that ends with a prefixed line keeps that line only (the walk back stops there);
        another is copied whole (text without prefixes, bounded as ever)."""
        for needle in self._multis:
            needle.forget(data)
        if not any(segment[0] is data for segment in self.skipped):
            return
        kept: deque[_Segment] = deque()
        for buffer, start, end, charge in self.skipped:
            if buffer is data:
                copy = buffer[_prefixed_tail(buffer, start, end) or start : end]
                kept.append((copy, 0, len(copy), charge))
            else:
                kept.append((buffer, start, end, charge))
        self.skipped = kept

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
        for data, start, end, _charge in reversed(self.skipped):
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


def scan_chunks(
    chunks: Iterable[bytes],
    parser: OomParser | None = None,
    trimmed: Trimmed | None = None,
    *,
    engine: str = ENGINE,
) -> Iterator[KillRecord]:
    """All kill records in a byte stream cut at arbitrary places, in log order.

    The records are those of feeding every line to ``parser`` (see the module docstring
    for the one deliberate approximation), after :func:`bounded_lines`; what it cut is
    counted in ``trimmed``. Both stages run in turn in this thread; ``sentinel parse``
    runs the first in a reader process instead (:mod:`sentinel.sources.forked`; a reader
    thread gained nothing: each hand-over of the GIL costs about the work it hands over).
    """
    return scan_blocks(blocks(chunks, trimmed, engine=engine), parser, engine=engine)


def scan_blocks(
    stage: Iterable[Block], parser: OomParser | None = None, *, engine: str = ENGINE
) -> Iterator[KillRecord]:
    """The second stage of :func:`scan_chunks`: the records of :func:`blocks`' output,
    made here or by a reader process (:mod:`sentinel.sources.forked`), whose
    :class:`~sentinel.kernel.search.Sparse` blocks stand in for blocks with no core hit:
    the same records, a sparse block read whole only where :meth:`_Scanner.skips` says
    the scanner would do more than skip it."""
    parser = parser if parser is not None else OomParser()
    scanner = _Scanner(parser, engine)
    tail: list[bytes] = []  # the unfinished last line: at most MAX_LINE_BYTES in all
    for item, found in stage:
        sparse = item if isinstance(item, Sparse) else None
        lent = item if isinstance(item, Lent) else None
        hits = [] if sparse is not None else found  # a sparse block has no core hit
        if lent is not None:
            chunk, size = lent.data, lent.size  # valid until the next block is asked for
        else:
            chunk = sparse.stand_in() if sparse is not None else item
            assert isinstance(chunk, bytes)
            size = len(chunk)
        if not size:
            yield from parser.flush()
            continue
        first = chunk.find(b"\n", 0, size)
        if first < 0:
            tail.append(chunk[:size])
            continue
        if tail:
            head = b"".join(tail) + chunk[: first + 1]
            tail.clear()
            yield from scanner.block(head, 0, len(head))
            start = first + 1
        else:
            start = 0
        cut = chunk.rfind(b"\n", 0, size) + 1
        if sparse is not None:
            if scanner.skips(sparse.last):
                scanner.offset += sparse.left_out  # as if the block had been skipped whole
            else:
                chunk = sparse.fetch()  # the same first line and tail, the middle too
                size = len(chunk)
                cut = chunk.rfind(b"\n") + 1
        if cut > start:
            scanner.prime(chunk, hits)
            yield from scanner.block(chunk, start, cut, size)
        if cut < size:
            tail.append(chunk[cut:size])
        if lent is not None:
            scanner.let_go(chunk)
    if tail:
        last = b"".join(tail)
        yield from scanner.block(last, 0, len(last))
    yield from parser.flush()
