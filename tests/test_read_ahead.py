"""``read_ahead``: a source read by a thread of its own gives the same items, failures
and ends as reading it in line, and a consumer that stops early stops the thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from sentinel.errors import SourceError
from sentinel.kernel.scan import scan_chunks
from sentinel.sources.logfile import read_ahead
from test_scan import CORPUS, cut_at, reference


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "sentinel-read-ahead"}


def _wait_until_no_thread(before: set[threading.Thread], deadline: float = 10.0) -> None:
    """Until every read-ahead thread started since ``before`` was taken has ended (one
    of another test's may still be blocked in a read)."""
    end = time.monotonic() + deadline
    while _threads() - before:
        assert time.monotonic() < end, "the read-ahead thread is still running"
        time.sleep(0.01)


def test_items_come_in_order_and_all_of_them() -> None:
    before = _threads()
    assert list(read_ahead(iter(range(1000)), depth=3)) == list(range(1000))
    _wait_until_no_thread(before)


def test_a_failure_comes_after_every_item_before_it() -> None:
    before = _threads()

    def source() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise SourceError("gzip cut short")

    items = read_ahead(source())
    assert [next(items), next(items)] == [b"a", b"b"]
    with pytest.raises(SourceError, match="gzip cut short"):
        next(items)
    _wait_until_no_thread(before)


def test_a_consumer_that_stops_early_stops_the_thread() -> None:
    before = _threads()
    produced: list[int] = []

    def endless() -> Iterator[int]:
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    items = read_ahead(endless(), depth=2)
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    items.close()
    _wait_until_no_thread(before)
    assert len(produced) <= 5 + 2 + 2  # what was taken, the queue, one in hand


def test_scan_chunks_finds_the_same_records_with_the_reads_ahead() -> None:
    before = _threads()
    data = b"".join(CORPUS[name] + b"\n" for name in sorted(CORPUS))
    chunks = cut_at(data, range(0, len(data), 4093))
    want = list(reference(chunks))
    assert len(want) >= 60
    assert list(scan_chunks(chunks, ahead=read_ahead)) == want
    _wait_until_no_thread(before)
