"""Read a log in a process of its own, beside the parsing: ``sentinel parse``'s reader.

A scan of a large log is two stages of about equal cost (``bench/parse``): reading the
bytes and searching them for the needles that open or close a report
(:func:`sentinel.kernel.search.blocks`), then decoding and parsing the few lines that
matter (:func:`sentinel.kernel.scan.scan_blocks`). Threads cannot overlap them in CPython:
each hand-over of the GIL costs about what it hands over. So :class:`ForkedBlocks` forks a
child that runs the first stage and passes each block to the parent through shared memory:

- the child reads the source (it opens it: the parent never reads it), bounds its lines,
  finds the core hits of each block, puts the block in a free slot of a shared ring of
  :data:`SLOTS` slots and writes a short message (slot, length, hits, bytes read so far)
  on a pipe; a block too large for a slot goes inline on the pipe. A plain regular file
  is read straight into the slots and searched there, the NUL check of the line bounding
  in the same pass; from such a file, a block with no core hit crosses as its first line,
  last line and tail only (:class:`~sentinel.kernel.search.Sparse`: the parser reads it
  whole from the file in the rare case it needs to);
- the parent yields the ``(block, hits)`` pairs :func:`~sentinel.kernel.search.blocks`
  would have yielded in this process (or their sparse stand-ins), so the records are the
  same (tested). A block in a slot is not copied out: it is lent
  (:class:`~sentinel.kernel.search.Lent`, the slot itself) until the next block is asked
  for, when the slot goes back to the child on a second pipe. (Copying each 1 MiB out
  cost the parser a fifth of its time, mostly in page faults.)
- the child's end is a message too: the end of the stream with what
  :func:`~sentinel.kernel.search.bounded_lines` trimmed, or the
  :class:`~sentinel.errors.SourceError` that ended it (raised by the parent after every
  block before it, as a read in this process would), or a bug, which the parent raises
  as an internal error. A child that dies without a word (killed) is an error too.

The ring bounds memory: at most :data:`SLOTS` blocks are ahead of the parser. The child
ignores SIGINT (the parent is interrupted and stops it), leaves with ``os._exit`` (it never
runs the parent's cleanup or flushes its buffers), and ends when the parent goes away: its
next wait for a slot reads end-of-file. :meth:`ForkedBlocks.close` stops and reaps it.

This module imports nothing of the parser (the standard library, and the light
:mod:`sentinel.kernel.search`), so the CLI can start the child before it imports the
parser's modules (0.05 s of start-up, then spent beside the child's reading). Where no
process or memory is to spare (the fork or the ring fails), the constructor raises the
OSError and leaves nothing open: the CLI then reads in its own process.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import signal
import stat
import struct
from array import array
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from sentinel.errors import SourceError
from sentinel.kernel.search import Lent, Sparse, load_databases
from sentinel.sources import CHUNK, GZIP_MAGIC

if TYPE_CHECKING:
    from os import PathLike

    from sentinel.kernel.search import Block, LineBounds, Trimmed

SLOTS = 16
"""Blocks the child may be ahead of the parser (16 MiB of shared memory): room for it to
get ahead while the parent imports the parser's modules."""
SLOT_BYTES = CHUNK + (4 << 10)
"""A slot holds one read and a little more (the first read of a pipe may be topped up to
tell gzip); a larger block goes inline."""

OpenChunks = Callable[[Callable[[int], None] | None], Iterator[bytes]]
"""Opens the source in the child: given a progress callback, its byte chunks."""

_HEADER = struct.Struct("<BB6xQQQ")  # kind, slot, then three numbers the kind gives meaning
_BLOCK, _INLINE, _END, _FAILED, _BUG, _SPARSE, _DATABASES = range(7)
# _BLOCK / _INLINE: length, hit count (or _NO_HITS), bytes read; then the block (inline
#   only: a block's bytes are in its slot), then the hits
# _SPARSE: length, offset in the file, bytes read; then _PARTS, then the three parts
# _END: trimmed lines, trimmed bytes, bytes read
# _FAILED / _BUG: trimmed lines, trimmed bytes, message length; then the message (UTF-8)
# _DATABASES: length, 0, 0; then the scanner's compiled needles (search.dump_databases)
_NO_HITS = (1 << 64) - 1
_PARTS = struct.Struct("<III")  # a sparse block's first line, last line and tail: lengths


def available() -> bool:
    """Whether this platform can fork (Linux and the other POSIX systems)."""
    return hasattr(os, "fork")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class ForkedBlocks:
    """The ``(block, hits)`` pairs of ``open_chunks``' stream, read and searched by a child
    process (see the module docstring). The child starts at construction; iterate to the
    end, or :meth:`close`. ``trimmed`` receives the child's counts when the stream ends;
    ``progress`` is told the bytes read so far, as each block arrives."""

    def __init__(
        self,
        open_chunks: OpenChunks,
        *,
        path: str | PathLike[str] | None = None,
        trimmed: Trimmed | None = None,
        progress: Callable[[int], None] | None = None,
        engine: str | None = None,
    ) -> None:
        self._trimmed = trimmed
        self._progress = progress
        self._done = True  # until the child runs: nothing for close() to undo
        self._slots: list[mmap.mmap] = []
        fds: list[int] = []
        try:
            for _ in range(SLOTS):  # MAP_SHARED | MAP_ANONYMOUS: the child writes, we read
                self._slots.append(mmap.mmap(-1, SLOT_BYTES))
            msg_r, msg_w = os.pipe()
            fds += (msg_r, msg_w)
            free_r, free_w = os.pipe()
            fds += (free_r, free_w)
            os.write(free_w, bytes(range(SLOTS)))
            pid = os.fork()
        except OSError:  # no descriptors, memory or process to spare: the caller reads
            for fd in fds:
                os.close(fd)
            for slot in self._slots:
                slot.close()
            raise
        if pid == 0:  # the child: never returns
            code = 70
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                os.close(msg_r)
                os.close(free_w)
                _child(open_chunks, path, _Sender(self._slots, msg_w, free_r), engine)
                code = 0
            finally:
                os._exit(code)
        os.close(msg_w)
        os.close(free_r)
        self.pid: int | None = pid
        self._free = free_w
        self._msgs = os.fdopen(msg_r, "rb", buffering=1 << 16)
        self._lent: int | None = None
        """The slot of the last block yielded, lent to the caller until the next."""
        self._done = False
        self._path = path
        self._fd: int | None = None
        """The parent's own descriptor of ``path``, opened at the first sparse block that
        must be read whole."""

    def __iter__(self) -> Iterator[Block]:
        return self

    def __next__(self) -> Block:
        if self._done:
            raise StopIteration
        try:
            if self._lent is not None:  # the caller is done with it: the child may refill it
                slot, self._lent = self._lent, None
                with contextlib.suppress(BrokenPipeError):  # the child has ended
                    os.write(self._free, bytes((slot,)))
            kind, slot, a, b, c = _HEADER.unpack(self._read(_HEADER.size))
            if kind == _DATABASES:  # first, if at all
                load_databases(self._read(a))
                kind, slot, a, b, c = _HEADER.unpack(self._read(_HEADER.size))
            if kind in (_BLOCK, _INLINE):
                data: bytes | Lent
                if kind == _BLOCK:
                    self._lent = slot
                    data = Lent(self._slots[slot], a)  # not copied: 1 MiB copies cost
                    # the parser more than a fifth of its time (page faults, mostly)
                else:
                    data = self._read(a)
                if self._progress is not None:
                    self._progress(c)
                return data, self._hits(b)
            if kind == _SPARSE:
                head, last, tail = (self._read(n) for n in _PARTS.unpack(self._read(_PARTS.size)))
                if self._progress is not None:
                    self._progress(c)
                return Sparse(head, last, tail, a, lambda: self._fetch(b, a)), None
            self._count_trimmed(a, b)
            if kind == _END:
                self.close()
                raise StopIteration
            message = self._read(c).decode("utf-8", "replace")
            if kind == _FAILED:
                raise SourceError(message)
            raise RuntimeError(f"the log reader process failed: {message}")
        except BaseException:
            self.close()
            raise

    def _fetch(self, offset: int, size: int) -> bytes:
        """A sparse block read whole, from the file (the child read the same bytes there)."""
        assert self._path is not None  # sparse blocks come from the path's fast path only
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            parts = []
            while size:
                part = os.pread(self._fd, size, offset)
                if not part:
                    raise SourceError(
                        f"cannot read {os.fspath(self._path)}: it shrank as it was read"
                    )
                parts.append(part)
                offset += len(part)
                size -= len(part)
        except OSError as e:
            raise SourceError(f"cannot read {os.fspath(self._path)}: {e.strerror or e}") from e
        return b"".join(parts)

    def _read(self, size: int) -> bytes:
        data = self._msgs.read(size)
        if len(data) < size:
            raise RuntimeError(f"the log reader process ended without a word ({self._wait()})")
        return data

    def _hits(self, count: int) -> list[int] | None:
        if count == _NO_HITS:
            return None
        hits = array("q")
        hits.frombytes(self._read(count * 8))
        return hits.tolist()

    def _count_trimmed(self, lines: int, dropped: int) -> None:
        if self._trimmed is not None:
            self._trimmed.lines += lines
            self._trimmed.bytes += dropped

    def _wait(self) -> str:
        """Reap the child; how it ended, in words."""
        pid, self.pid = self.pid, None
        if pid is None:
            return "already reaped"
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            return f"killed by signal {os.WTERMSIG(status)}"
        return f"exit {os.waitstatus_to_exitcode(status)}"

    def close(self) -> None:
        """Stop the child if it still runs, reap it, and free the pipes and the ring."""
        if self._done:
            return
        self._done = True
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._wait()
        self._msgs.close()
        os.close(self._free)
        if self._fd is not None:
            os.close(self._fd)
        for slot in self._slots:
            slot.close()

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            self.close()


def _child(
    open_chunks: OpenChunks, path: str | PathLike[str] | None, send: _Sender, engine: str | None
) -> None:
    """The child's whole work: every block, then the end or the failure, on ``out``."""
    from sentinel.kernel.search import (  # noqa: PLC0415  (in the child only)
        ENGINE,
        LineBounds,
        Trimmed,
        blocks,
        core_hits,
        dump_databases,
        raw_core_hits,
    )

    engine = engine or ENGINE
    trimmed = Trimmed()

    def progress(n: int) -> None:
        send.done = n

    try:
        if engine == "hyperscan":  # the parent imports the parser meanwhile (50 ms)
            databases = dump_databases()
            send.write(_HEADER.pack(_DATABASES, 0, len(databases), 0, 0) + databases)
        plain = _plain_file(path) if path is not None and engine == "hyperscan" else None
        if plain is not None:
            with plain:
                _read_plain(
                    plain,
                    str(plain.name),
                    send,
                    LineBounds(trimmed=trimmed),
                    raw_search=raw_core_hits(),
                    search=core_hits(),
                )
        else:
            for data, hits in blocks(open_chunks(progress), trimmed, engine=engine):
                send.block(data, hits)
    except SourceError as e:
        send.end(_FAILED, trimmed, str(e))
        return
    except _Gone:
        return
    except Exception as e:  # a bug: the parent raises it as an internal error
        send.end(_BUG, trimmed, f"{type(e).__name__}: {e}")
        return
    with contextlib.suppress(_Gone):
        send.write(_HEADER.pack(_END, 0, trimmed.lines, trimmed.bytes, send.done))


class _Gone(Exception):
    """The parent has gone: its pipes are closed."""


class _Sender:
    """The child's end of the ring and the pipes."""

    def __init__(self, slots: list[mmap.mmap], out: int, free: int) -> None:
        self.slots = slots
        self.out = out
        self.free = free
        self.done = 0
        """Bytes of the source read so far (told the parent with each block)."""

    def write(self, data: bytes) -> None:
        try:
            _write_all(self.out, data)
        except BrokenPipeError:
            raise _Gone from None

    def take(self) -> int:
        """A free slot: waits until the parent has handed one back."""
        token = os.read(self.free, 1)
        if not token:
            raise _Gone
        return token[0]

    def send(self, slot: int, length: int, hits: list[int] | None) -> None:
        """Announce the block already in ``slot``."""
        self._announce(_BLOCK, slot, length, hits)

    def block(self, data: bytes, hits: list[int] | None) -> None:
        """Copy ``data`` into a free slot and announce it (inline if it is too large)."""
        if len(data) > SLOT_BYTES:
            self._announce(_INLINE, 0, len(data), hits, data)
            return
        slot = self.take()
        self.slots[slot][: len(data)] = data
        self.send(slot, len(data), hits)

    def _announce(
        self, kind: int, slot: int, length: int, hits: list[int] | None, inline: bytes = b""
    ) -> None:
        found = array("q", hits).tobytes() if hits is not None else b""
        count = len(hits) if hits is not None else _NO_HITS
        self.write(_HEADER.pack(kind, slot, length, count, self.done) + inline + found)

    def end(self, kind: int, trimmed: Trimmed, message: str) -> None:
        text = message.encode("utf-8", "replace")
        with contextlib.suppress(_Gone):
            self.write(_HEADER.pack(kind, 0, trimmed.lines, trimmed.bytes, len(text)) + text)


def _plain_file(path: str | PathLike[str]) -> io.FileIO | None:
    """``path`` opened, when it is a regular file that is not gzip: the fast path reads it
    straight into the ring. None otherwise, or on any error (the general path then reads
    it, and names the error as it always does). Only a regular file is opened: opening a
    FIFO would take its writer, and closing it again would end the writer's stream."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        f = io.FileIO(path, "r")
    except OSError:
        return None
    try:
        if stat.S_ISREG(os.fstat(f.fileno()).st_mode) and os.pread(f.fileno(), 2, 0) != GZIP_MAGIC:
            return f
    except OSError:
        pass
    f.close()
    return None


def _read_plain(
    f: io.FileIO,
    name: str,
    send: _Sender,
    bounds: LineBounds,
    *,
    raw_search: Callable[[Any], list[int] | None],
    search: Callable[[bytes], list[int] | None],
) -> None:
    """The fast path: each read lands in a slot of the ring, is searched there (with the
    NUL check in the same pass) and announced; only a block that holds a NUL byte or a
    line too long is copied out, bounded and copied back (:class:`LineBounds`)."""
    spare: list[int] = []  # a slot taken for a block that came to nothing
    while True:
        slot = spare.pop() if spare else send.take()
        shm = send.slots[slot]
        with memoryview(shm)[:CHUNK] as view:
            try:
                n = f.readinto(view) or 0
            except OSError as e:
                raise SourceError(f"cannot read {name}: {e.strerror or e}") from e
            if not n:
                return
            send.done += n
            hits = raw_search(view[:n])
        if hits is None or not bounds.fits(shm, 0, n):
            data = bounds.bound(shm[:n])
            if not data:
                spare.append(slot)
                continue
            shm[: len(data)] = data
            n = len(data)
            hits = search(data)
        elif not hits and _sparse(send, shm, n):
            spare.append(slot)  # not copied out: the slot is free again at once
            continue
        send.send(slot, n, hits)


def _sparse(send: _Sender, shm: mmap.mmap, n: int) -> bool:
    """Announce the block in the slot ``shm``, read from the file as it is and with
    no core hit, as sparse: its first line, last line and tail only (see
    :class:`~sentinel.kernel.search.Sparse`). False when it has no two newlines."""
    first = shm.find(b"\n", 0, n)
    last = shm.rfind(b"\n", 0, n)
    before = shm.rfind(b"\n", 0, last) if last > first else -1
    if first < 0 or before < first:
        return False
    parts = (shm[: first + 1], shm[before + 1 : last + 1], shm[last + 1 : n])
    send.write(
        _HEADER.pack(_SPARSE, 0, n, send.done - n, send.done)
        + _PARTS.pack(*map(len, parts))
        + b"".join(parts)
    )
    return True
