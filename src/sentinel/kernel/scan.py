"""Kill records from a stream of bytes: the fast path for large log files.

Pure: byte chunks in, records out. An empty chunk means "the source is idle": the parser
is flushed so that a report whose only kill evidence is the ``oom-kill:`` summary line is
emitted without waiting for more input.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sentinel.kernel.oom import OomParser
from sentinel.model import KillRecord


def scan_chunks(chunks: Iterable[bytes], parser: OomParser | None = None) -> Iterator[KillRecord]:
    """All kill records in a byte stream cut at arbitrary places, in log order."""
    parser = parser if parser is not None else OomParser()
    tail = b""
    for chunk in chunks:
        if not chunk:
            yield from parser.flush()
            continue
        data = tail + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            tail = data
            continue
        tail = data[cut + 1 :]
        for raw in data[: cut + 1].split(b"\n"):
            if raw:
                yield from parser.feed(raw.decode("utf-8", "replace"))
    if tail:
        yield from parser.feed(tail.decode("utf-8", "replace"))
    yield from parser.flush()
