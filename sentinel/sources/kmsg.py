"""Read the kernel's log buffer from ``/dev/kmsg``, one record at a time.

Each ``read()`` of ``/dev/kmsg`` returns exactly one record,
``PRI,SEQ,USEC,FLAGS;message`` followed by dictionary lines (`` KEY=value``). When the
reader falls behind and the kernel overwrites records it has not read, ``read()`` fails
once with ``EPIPE`` and the next read goes on from the oldest record still held; that loss
is counted in :attr:`KmsgReader.lost` and logged, never hidden.
"""

from __future__ import annotations

import errno
import logging
import os
import select
from collections.abc import Iterator
from pathlib import Path

from sentinel.errors import SourceError

log = logging.getLogger(__name__)

KMSG = Path("/dev/kmsg")
_RECORD_MAX = 64 * 1024


class KmsgReader:
    """Iterates over the message lines of ``/dev/kmsg`` (``path`` is injectable for tests).

    ``follow``: after the buffered records, wait for new ones; ``None`` is yielded after
    each ``idle`` seconds without a record, so that callers can flush pending reports.
    ``after_seq``: skip records up to and including this sequence number (resume).
    """

    def __init__(
        self,
        path: Path = KMSG,
        *,
        follow: bool = False,
        idle: float = 0.5,
        after_seq: int | None = None,
    ) -> None:
        self.path = path
        self.follow = follow
        self.idle = idle
        self.after_seq = after_seq
        self.lost = 0
        self.last_seq: int | None = None

    def __iter__(self) -> Iterator[str | None]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            raise SourceError(f"cannot open {self.path}: {e.strerror}") from e
        try:
            yield from self._records(fd)
        finally:
            os.close(fd)

    def _records(self, fd: int) -> Iterator[str | None]:
        while True:
            try:
                data = os.read(fd, _RECORD_MAX)
            except BlockingIOError:
                if not self.follow:
                    return
                ready, _, _ = select.select([fd], [], [], self.idle)
                if not ready:
                    yield None
                continue
            except OSError as e:
                if e.errno == errno.EPIPE:
                    log.warning("kmsg overrun: records were overwritten before they were read")
                    continue
                raise SourceError(f"cannot read {self.path}: {e.strerror}") from e
            if not data:
                if not self.follow:
                    return
                yield None
                continue
            line = data.decode("utf-8", "replace").split("\n", 1)[0]
            seq = _seq(line)
            if seq is not None:
                if self.last_seq is not None and seq > self.last_seq + 1:
                    self.lost += seq - self.last_seq - 1  # overwritten before we read them
                self.last_seq = seq
                if self.after_seq is not None and seq <= self.after_seq:
                    continue
            yield line


def _seq(line: str) -> int | None:
    head = line.split(";", 1)[0].split(",")
    if len(head) < 3 or not head[1].isdigit():
        return None
    return int(head[1])
