"""Read log files as byte chunks: plain or gzip, whole or followed like ``tail -F``.

The chunks go to :func:`sentinel.kernel.scan.scan_chunks`, which finds the OOM reports in
them. In follow mode an empty chunk is yielded after each quiet ``interval`` so that the
parser can flush a report that is complete but has no closing line. Following survives
rotation (the path now names a new file: the old one is read to its end, then the new one
from its start) and truncation (the file shrank: read again from its start).

Every source is opened once and read from its start: gzip is told by the first bytes read,
which then go to the decompressor, so pipes, FIFOs, ``/dev/stdin`` and standard input
work as files do, compressed or not. A read that fails (a gzip cut short or corrupt, an
I/O error) raises :class:`~sentinel.errors.SourceError` after every chunk read before it.
"""

from __future__ import annotations

import gzip
import io
import os
import select
import stat
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from sentinel.errors import SourceError
from sentinel.sources import CHUNK, GZIP_MAGIC, STDIN

Progress = Callable[[int], None]
"""Told the number of bytes read so far."""
Read = Callable[[int], bytes]


def read_chunks(
    path: Path,
    *,
    follow: bool = False,
    interval: float = 0.25,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """The file's bytes in chunks; with ``follow``, then its growth, forever.

    A FIFO, a pipe (``/dev/stdin``) or a character device is read to its end like
    standard input; ``follow`` then waits for more only where the file is a regular one.
    """
    try:
        f: IO[bytes] = path.open("rb", buffering=0)
        regular = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
    except OSError as e:
        raise SourceError(f"cannot open {path}: {e.strerror}") from e
    try:
        head = _head(f.read, path)
        if head[:2] == GZIP_MAGIC:
            yield from _gunzip(head, f.read, path, progress)
            return
        if not regular:
            yield from _stream(f.fileno(), head, str(path), follow=follow, interval=interval)
            return
        if head:
            if progress is not None:
                progress(len(head))
            yield head
        yield from _drain(f, progress, path, done=len(head))
        while follow:
            f, rotated = _reopen_if_rotated(path, f)
            data = _read(f.read, path)
            if data:
                yield data
                continue
            if rotated:
                continue
            yield b""
            time.sleep(interval)
    finally:
        f.close()


def read_stdin_chunks(*, follow: bool = False, interval: float = 0.25) -> Iterator[bytes]:
    """Standard input in chunks, gunzipped if it is gzip; with ``follow``, idle ticks
    while nothing arrives (plain input only: a gzip stream is read to its end)."""
    fd = 0

    def read(size: int) -> bytes:
        return os.read(fd, size)

    head = _head(read, STDIN)
    if head[:2] == GZIP_MAGIC:
        yield from _gunzip(head, read, STDIN, None)
        return
    yield from _stream(fd, head, STDIN, follow=follow, interval=interval)


def _read(read: Read, name: object, size: int = CHUNK) -> bytes:
    try:
        return read(size)
    except OSError as e:
        raise SourceError(f"cannot read {name}: {e.strerror or e}") from e


def _head(read: Read, name: object) -> bytes:
    """The first chunk, at least two bytes long unless the stream is shorter: enough to
    tell gzip, whatever size the first read of a pipe returns."""
    head = _read(read, name)
    while 0 < len(head) < len(GZIP_MAGIC):
        more = _read(read, name)
        if not more:
            break
        head += more
    return head


class _Replay:
    """A stream that gives back the bytes read to sniff it, then the rest: for
    :class:`gzip.GzipFile` on a stream that cannot seek back."""

    def __init__(self, head: bytes, read: Read) -> None:
        self._head = head
        self._read = read

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0 or size >= len(self._head):
                data, self._head = self._head, b""
            else:
                data, self._head = self._head[:size], self._head[size:]
            return data
        return self._read(size if size >= 0 else CHUNK)

    def seek(self, offset: int, /) -> int:
        raise io.UnsupportedOperation("a stream read once cannot seek")


def _gunzip(head: bytes, read: Read, name: object, progress: Progress | None) -> Iterator[bytes]:
    """The decompressed stream, a chunk at most each step; what came before a cut or a
    corrupt block is yielded before the :class:`SourceError` that names it."""
    gz = gzip.GzipFile(fileobj=_Replay(head, read), mode="rb")
    done = 0
    while True:
        try:
            data = gz.read1(CHUNK)  # read1: a failure loses no byte decompressed before it
        except EOFError as e:
            raise SourceError(f"cannot read {name}: gzip data cut short ({e})") from e
        except (gzip.BadGzipFile, zlib.error) as e:
            raise SourceError(f"cannot read {name}: corrupt gzip data ({e})") from e
        except OSError as e:
            raise SourceError(f"cannot read {name}: {e.strerror or e}") from e
        if not data:
            return
        done += len(data)
        if progress is not None:
            progress(done)
        yield data


def _stream(fd: int, head: bytes, name: str, *, follow: bool, interval: float) -> Iterator[bytes]:
    """A pipe, FIFO or terminal after its first chunk, to its end; with ``follow``, an
    empty chunk after each quiet ``interval``."""
    if head:
        yield head
    else:
        return
    while True:
        if follow:
            ready, _, _ = select.select([fd], [], [], interval)
            if not ready:
                yield b""
                continue
        data = _read(lambda size: os.read(fd, size), name)
        if not data:
            return
        yield data


def _drain(f: IO[bytes], progress: Progress | None, name: object, done: int = 0) -> Iterator[bytes]:
    while True:
        data = _read(f.read, name)
        if not data:
            return
        done += len(data)
        if progress is not None:
            progress(done)
        yield data


def _reopen_if_rotated(path: Path, f: IO[bytes]) -> tuple[IO[bytes], bool]:
    """``tail -F``: a truncated file is read again from 0; a replaced one is reopened."""
    st = os.fstat(f.fileno())
    if st.st_size < f.tell():
        f.seek(0)
        return f, True
    try:
        now = path.stat()
    except FileNotFoundError:
        return f, False  # rotated away and not yet recreated: keep the old one
    if (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
        return f, False
    if f.tell() < st.st_size:
        return f, False  # finish the old file first; the new one is opened after
    try:
        new = path.open("rb", buffering=0)
    except OSError:
        return f, False
    f.close()
    return new, True
