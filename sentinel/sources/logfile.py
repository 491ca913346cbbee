"""Read log files as byte chunks: plain or gzip, whole or followed like ``tail -F``.

The chunks go to :func:`sentinel.kernel.scan.scan_chunks`, which finds the OOM reports in
them. In follow mode an empty chunk is yielded after each quiet ``interval`` so that the
parser can flush a report that is complete but has no closing line. Following survives
rotation (the path now names a new file: the old one is read to its end, then the new one
from its start) and truncation (the file shrank: read again from its start).
"""

from __future__ import annotations

import gzip
import os
import select
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, cast

from sentinel.errors import SourceError

CHUNK = 1 << 20
Progress = Callable[[int], None]
"""Told the number of bytes read so far."""


def is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == b"\x1f\x8b"


def read_chunks(
    path: Path,
    *,
    follow: bool = False,
    interval: float = 0.25,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """The file's bytes in chunks; with ``follow``, then its growth, forever."""
    try:
        compressed = is_gzip(path)
    except OSError as e:
        raise SourceError(f"cannot open {path}: {e.strerror}") from e
    if compressed:
        try:
            with gzip.open(path, "rb") as gz:
                yield from _drain(cast(IO[bytes], gz), progress)
        except (OSError, EOFError) as e:
            raise SourceError(f"cannot read {path}: {e}") from e
        return
    try:
        f: IO[bytes] = path.open("rb")
    except OSError as e:
        raise SourceError(f"cannot open {path}: {e.strerror}") from e
    try:
        yield from _drain(f, progress)
        while follow:
            f, rotated = _reopen_if_rotated(path, f)
            data = f.read(CHUNK)
            if data:
                yield data
                continue
            if rotated:
                continue
            yield b""
            time.sleep(interval)
    finally:
        f.close()


def _drain(f: IO[bytes], progress: Progress | None) -> Iterator[bytes]:
    done = 0
    while True:
        data = f.read(CHUNK)
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
        new = path.open("rb")
    except OSError:
        return f, False
    f.close()
    return new, True


def read_stdin_chunks(*, follow: bool = False, interval: float = 0.25) -> Iterator[bytes]:
    """Standard input in chunks; with ``follow``, idle ticks while nothing arrives."""
    fd = 0
    while True:
        if follow:
            ready, _, _ = select.select([fd], [], [], interval)
            if not ready:
                yield b""
                continue
        data = os.read(fd, CHUNK)
        if not data:
            return
        yield data
