"""The needle search under :mod:`sentinel.kernel.scan`: which lines of a log can matter.

Pure: bytes in, positions out. :data:`IDLE_CORE`, :data:`IDLE` and :data:`BUSY` are the
needles a line must hold to change the parser in each of its modes (the scanner's
docstring says why); with hyperscan installed (a dependency; :data:`ENGINE`), each mode's
needles are compiled into one database and a block is searched for all of them in one
pass, at about 2 GB/s; without it, each needle is a pass of ``bytes.find`` or ``re``, in
C too but 3-4 times slower in all (``bench/parse`` prints the designs side by side).

:func:`blocks` is the first stage of a scan, the one that needs no parser: it bounds the
lines (:func:`bounded_lines`) and finds the :data:`IDLE_CORE` hits of each block in one
pass. It imports nothing of the parser, so a reader process
(:mod:`sentinel.sources.forked`) runs it beside the parsing at the cost of this module.
"""

from __future__ import annotations

import contextlib
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from importlib.machinery import PathFinder
from typing import Any

MAX_LINE_BYTES = 64 << 10
"""The longest line kept whole: 16x the longest a kernel writes (1 KiB of text, 4 KiB once
``/dev/kmsg`` escapes it), with room for a journal JSON envelope around it. A longer line
keeps this many bytes; the rest is dropped unread, so memory stays bounded on any input."""


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
    share one; the compiled database (:func:`_database`) is shared, and compiled at the
    first search that needs it: a scanner whose core hits all come from :meth:`prime`
    never compiles the core group.
    """

    __slots__ = ("_data", "_db", "_end", "_group", "_hits", "_scratch", "_start")

    def __init__(self, group: int) -> None:
        self._group = group
        self._db: Any = None
        self._scratch: Any = None
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
            if self._db is None:
                self._db = _database(self._group)
                self._scratch = _hs().Scratch(self._db)
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

    def forget(self, data: object) -> None:
        """Drop what was found in ``data``: its buffer is about to hold other bytes (a
        :class:`Lent` block), and the same object must not answer from stale hits."""
        if self._data is data:
            self._data = None
            self._hits = []


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

ENGINE = "hyperscan" if PathFinder.find_spec("hyperscan") is not None else "re"
"""How blocks are searched: ``hyperscan`` (each mode's needles in one pass) or ``re``
(``bytes.find`` and ``re`` per needle), the fallback where hyperscan does not install.
Hyperscan is imported at its first use (20-30 ms: ``sentinel parse`` starts its reader
process before that)."""


def _hs() -> Any:
    """The ``hyperscan`` module, imported at its first use (see :data:`ENGINE`); called
    only where a database or a scratch space is made, never per search."""
    import hyperscan  # noqa: PLC0415

    return hyperscan


_GROUPS = (IDLE_CORE, IDLE[len(IDLE_CORE) :], BUSY[len(IDLE_CORE) :])
"""The needles of :data:`IDLE_CORE`, then those :data:`IDLE` adds, then all that
:data:`BUSY` adds to the core: a scanner searches the first group alone, the first two, or
the first and the third, each group in one pass."""
_compiled: dict[int, Any] = {}


def _expression(needle: _Needle) -> bytes:
    if isinstance(needle, _Literal):
        return re.escape(needle.needle)
    assert isinstance(needle, re.Pattern)
    return needle.pattern


_RAW = len(_GROUPS)
"""The database of :func:`raw_core_hits`: :data:`IDLE_CORE` and a NUL byte."""


def _database(group: int) -> Any:
    """Group ``group`` of :data:`_GROUPS` (or :data:`_RAW`), compiled once (a few
    milliseconds) and shared by every scanner."""
    db = _compiled.get(group)
    if db is None:
        db = _hs().Database(mode=_hs().HS_MODE_BLOCK)
        if group == _RAW:
            expressions = [*(_expression(n) for n in IDLE_CORE), rb"\x00"]
        else:
            expressions = [_expression(n) for n in _GROUPS[group]]
        db.compile(expressions=expressions, ids=list(range(len(expressions))))
        _compiled[group] = db
    return db


def dump_databases() -> bytes:
    """The databases of :data:`_GROUPS`, compiled and serialized: a reader process
    (:mod:`sentinel.sources.forked`) compiles them while its parent imports the parser,
    which then loads them (:func:`load_databases`, microseconds) instead of compiling them
    on its critical path (10 ms)."""
    hs = _hs()
    parts = [hs.dumpb(_database(group)) for group in range(len(_GROUPS))]
    return b"".join(len(part).to_bytes(8, "little") + part for part in parts)


def load_databases(blob: bytes) -> None:
    """Take the databases :func:`dump_databases` made (by this same build of Hyperscan,
    in a forked child). One that does not load is compiled here at its first use."""
    hs = _hs()
    pos = 0
    for group in range(len(_GROUPS)):
        size = int.from_bytes(blob[pos : pos + 8], "little")
        part = blob[pos + 8 : pos + 8 + size]
        pos += 8 + size
        if group not in _compiled and len(part) == size:
            with contextlib.suppress(hs.error):
                _compiled[group] = hs.loadb(part, hs.HS_MODE_BLOCK)


def core_hits(engine: str = ENGINE) -> Callable[[bytes], list[int] | None]:
    """A search for :data:`IDLE_CORE` over whole blocks, for :meth:`_Scanner.prime`: the
    positions of every hit in a block (each the last byte of its match), in order; None
    with an engine that does not search ahead. It has its own scratch space, so it may
    run in another thread than the scanner's (Hyperscan releases the GIL as it scans)."""
    if engine != "hyperscan":
        return lambda _data: None
    db = _database(0)
    scratch = _hs().Scratch(db)

    def search(data: bytes) -> list[int]:
        hits: list[int] = []
        db.scan(data, _collector(hits, 0, -1), scratch=scratch)
        hits.sort()  # several needles: a later one may report an earlier end
        return hits

    return search


def raw_core_hits() -> Callable[[Any], list[int] | None]:
    """:func:`core_hits` of a block read as it is (bytes, or a memoryview of the reader's
    shared memory), in the same pass that finds whether it holds a NUL byte: None then
    (the block must go through :meth:`LineBounds.bound` first, and be searched after).
    Hyperscan only: each further needle of a database costs little, a pass costs a lot."""
    db = _database(_RAW)
    scratch = _hs().Scratch(db)
    nul = len(IDLE_CORE)
    terminated = _hs().ScanTerminated

    def search(data: Any) -> list[int] | None:
        hits: list[int] = []

        def on_match(i: int, _from: int, to: int, _flags: int, _ctx: object) -> bool:
            if i == nul:
                return True  # halt: a hole of NULs would call this once a byte
            hits.append(to - 1)
            return False

        try:
            db.scan(data, on_match, scratch=scratch)
        except terminated:
            return None
        hits.sort()  # several needles: a later one may report an earlier end
        return hits

    return search


def _needles(engine: str) -> tuple[tuple[_Needle, ...], tuple[_Needle, ...], tuple[_Needle, ...]]:
    """(idle-core, idle, busy) needles for one scanner."""
    if engine == "hyperscan":
        core, opener, busy = (_Multi(group) for group in range(len(_GROUPS)))
        return (core,), (core, opener), (core, busy)
    return IDLE_CORE, IDLE, BUSY


class Trimmed:
    """What :func:`bounded_lines` dropped from a stream: ``lines`` longer than the limit,
    cut to their first ``limit`` bytes, and the ``bytes`` dropped from them. (A plain
    class: this module stays light to import, see above.)"""

    __slots__ = ("bytes", "lines")

    def __init__(self, lines: int = 0, bytes: int = 0) -> None:
        self.lines = lines
        self.bytes = bytes

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trimmed):
            return NotImplemented
        return (self.lines, self.bytes) == (other.lines, other.bytes)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was

    def __repr__(self) -> str:
        return f"Trimmed(lines={self.lines}, bytes={self.bytes})"


_NULS = re.compile(rb"\x00+")


class LineBounds:
    """:func:`bounded_lines`' cuts, one chunk at a time: the state a line carries across
    chunks (the bytes of the current line passed on, whether the rest of a cut line is
    being dropped) and the counts in ``trimmed``."""

    __slots__ = ("dropping", "limit", "run", "trimmed")

    def __init__(self, limit: int = MAX_LINE_BYTES, trimmed: Trimmed | None = None) -> None:
        self.limit = limit
        self.trimmed = trimmed if trimmed is not None else Trimmed()
        self.run = 0
        """Bytes of the current, unfinished line already passed on."""
        self.dropping = False
        """Inside a line already cut: drop up to its newline."""

    def fits(self, data: Any, start: int, end: int) -> bool:
        """Whether ``data[start:end]`` (bytes, or an mmap holding a chunk) passes as it is,
        NUL bytes aside (the caller has checked there are none): no line in it would be
        cut. Only then is the state moved past it; otherwise :meth:`bound` must take it."""
        if self.dropping:
            return False
        run = self.run
        pos = start
        while True:
            budget = self.limit - run
            if end - pos <= budget:  # the rest fits, whatever its newlines
                last = data.rfind(b"\n", pos, end)
                self.run = end - last - 1 if last >= 0 else run + end - pos
                return True
            last = data.rfind(b"\n", pos, pos + budget + 1)
            if last < 0:
                return False
            pos = last + 1
            run = 0

    def bound(self, raw: bytes) -> bytes:
        """The chunk with each NUL run turned into one ``\\n`` and its lines cut; empty when
        all of it is dropped (the rest of a line cut before)."""
        counts = self.trimmed
        limit = self.limit
        chunk = _NULS.sub(b"\n", raw) if b"\x00" in raw else raw
        n = len(chunk)
        pieces: list[bytes] = []
        keep = 0  # start of the piece of this chunk being kept
        pos = 0
        if self.dropping:
            nl = chunk.find(b"\n")
            if nl < 0:
                counts.bytes += n
                return b""
            counts.bytes += nl
            self.dropping = False
            self.run = 0
            keep = pos = nl
        while pos < n:
            budget = limit - self.run
            if n - pos <= budget:  # the rest fits, whatever its newlines
                last = chunk.rfind(b"\n", pos, n)
                self.run = n - last - 1 if last >= 0 else self.run + n - pos
                break
            last = chunk.rfind(b"\n", pos, pos + budget + 1)
            if last >= 0:
                pos = last + 1
                self.run = 0
                continue
            cut = pos + budget  # the current line is too long: keep its head only
            pieces.append(chunk[keep:cut])
            counts.lines += 1
            nl = chunk.find(b"\n", cut)
            if nl < 0:
                counts.bytes += n - cut
                self.dropping = True
                keep = pos = n
                break
            counts.bytes += nl - cut
            self.run = 0
            keep = nl
            pos = nl + 1
        if keep == 0:
            return chunk
        pieces.append(chunk[keep:])
        return b"".join(pieces)


def bounded_lines(
    chunks: Iterable[bytes], limit: int = MAX_LINE_BYTES, trimmed: Trimmed | None = None
) -> Iterator[bytes]:
    """The same stream with each NUL run turned into one ``\\n`` and each line cut to
    ``limit`` bytes (its newline kept); the cuts are counted in ``trimmed``.

    Linear: each chunk is searched by windows of ``limit`` bytes, in C, and nothing of a
    long line is held beyond its first ``limit`` bytes. Empty chunks (idle ticks) pass.
    """
    bounds = LineBounds(limit, trimmed)
    for raw in chunks:
        if not raw:
            yield raw
            continue
        if b"\x00" not in raw and bounds.fits(raw, 0, len(raw)):
            yield raw
            continue
        data = bounds.bound(raw)
        if data:
            yield data


class Sparse:
    """A block a reader process did not copy (:mod:`sentinel.sources.forked`): it holds
    no core hit, and an idle scanner only skips such a block, which takes its first line
    (the rest of the line before it), its last whole line (a walk back to a prefixed line
    stops there) and what follows that (the start of the next line). ``fetch`` reads the
    whole block when the scanner needs it after all (:func:`sentinel.kernel.scan.scan_blocks`
    says when)."""

    __slots__ = ("fetch", "head", "last", "size", "tail")

    def __init__(
        self, head: bytes, last: bytes, tail: bytes, size: int, fetch: Callable[[], bytes]
    ) -> None:
        self.head = head
        self.last = last
        self.tail = tail
        self.size = size
        self.fetch = fetch

    def stand_in(self) -> bytes:
        """The block as a skipping scanner sees it: its first line, its last, its tail."""
        return self.head + self.last + self.tail

    @property
    def left_out(self) -> int:
        """Bytes of the block the stand-in leaves out."""
        return self.size - len(self.head) - len(self.last) - len(self.tail)


class Lent:
    """A block its maker lends rather than copies (:mod:`sentinel.sources.forked`): the
    first ``size`` bytes of ``data``, a buffer with the ``find``, ``rfind`` and slicing of
    bytes (a slot of the reader's shared memory, an mmap). It is valid only until the next
    block is asked for, when the buffer is reused: :func:`sentinel.kernel.scan.scan_blocks`
    copies what it keeps of it (a skipped line) before asking."""

    __slots__ = ("data", "size")

    def __init__(self, data: Any, size: int) -> None:
        self.data = data
        self.size = size

    def __bytes__(self) -> bytes:
        return bytes(self.data[: self.size])


Block = tuple[bytes | Sparse | Lent, list[int] | None]
"""A block of whole lines (but perhaps the last), after :func:`bounded_lines`, with its
:func:`core_hits` (a :class:`Lent` block too); or a :class:`Sparse` block (no hit) and
None."""


def blocks(
    chunks: Iterable[bytes], trimmed: Trimmed | None = None, *, engine: str = ENGINE
) -> Iterator[tuple[bytes, list[int] | None]]:
    """The first stage of :func:`scan_chunks`, which may run in a thread of its own (its
    ``ahead``): :func:`bounded_lines`, then the core search of each block in one pass."""
    search = core_hits(engine)
    for chunk in bounded_lines(chunks, trimmed=trimmed):
        yield chunk, (search(chunk) if chunk else None)
