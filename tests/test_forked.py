"""``ForkedBlocks``: a log read and searched by a child process gives the parser the same
blocks, records, trims, failures and ends as reading it in this process, and the child
never outlives its reader."""

from __future__ import annotations

import errno
import gzip
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from sentinel.cli import main
from sentinel.errors import SourceError
from sentinel.kernel import search
from sentinel.kernel.scan import scan_blocks, scan_chunks
from sentinel.kernel.search import ENGINE, MAX_LINE_BYTES, Block, Lent, Sparse, Trimmed, blocks
from sentinel.sources import forked
from sentinel.sources.forked import ForkedBlocks
from sentinel.sources.logfile import read_chunks
from test_scan import CORPUS, noise

pytestmark = pytest.mark.skipif(not forked.available(), reason="needs os.fork")


def _opener(path: Path) -> forked.OpenChunks:
    return lambda progress: read_chunks(path, progress=progress)


def _whole(items: Iterable[Block]) -> Iterator[tuple[bytes, list[int] | None]]:
    """The blocks with each sparse one read whole and each lent one copied out: what an
    in-process scan reads."""
    for item, hits in _kept(items):
        if isinstance(item, Sparse):
            yield item.fetch(), []
        else:
            assert isinstance(item, bytes)
            yield item, hits


def _kept(items: Iterable[Block]) -> Iterator[Block]:
    """The blocks with each lent one copied out, so they may be kept past the next."""
    for item, hits in items:
        yield (bytes(item) if isinstance(item, Lent) else item), hits


def _alive(pid: int) -> bool:
    """Whether ``pid`` still exists as a process of ours (a zombie counts: not reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _log(tmp_path: Path, data: bytes, name: str = "syslog") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _corpus_log(seed: int = 7, filler: int = 3000) -> bytes:
    """Every sample, in a random order, between runs of ordinary lines."""
    rng = random.Random(seed)
    names = sorted(CORPUS)
    rng.shuffle(names)
    return b"".join(noise(rng, rng.randrange(filler)) + CORPUS[n] + b"\n" for n in names)


@pytest.mark.parametrize("fast", [True, False], ids=["read-into-the-ring", "any-source"])
def test_the_same_blocks_and_records_as_in_this_process(tmp_path: Path, fast: bool) -> None:
    path = _log(tmp_path, _corpus_log())
    assert path.stat().st_size > 3 << 20  # several blocks, a ring's worth of them
    want_blocks = list(blocks(read_chunks(path)))
    got_blocks = list(_whole(ForkedBlocks(_opener(path), path=path if fast else None)))
    assert got_blocks == want_blocks
    want = list(scan_chunks(read_chunks(path)))
    assert len(want) >= 60
    got = list(scan_blocks(ForkedBlocks(_opener(path), path=path if fast else None)))
    assert got == want


def test_nul_holes_and_overlong_lines_are_bounded_the_same(tmp_path: Path) -> None:
    """The fast path's fallback: a block with a NUL run (a crash's hole) or a line longer
    than the limit, across block boundaries, is bounded as bounded_lines bounds it."""
    rng = random.Random(3)
    parts = []
    for name in sorted(CORPUS)[:30]:
        parts.append(noise(rng, rng.randrange(2000)))
        parts.append(rng.choice([b"", b"\x00" * rng.randrange(1, 5000)]))
        parts.append(rng.choice([b"", b"x" * rng.randrange(MAX_LINE_BYTES, 3 * (1 << 20))]))
        parts.append(b"\n" + CORPUS[name] + b"\n")
    path = _log(tmp_path, b"".join(parts))
    want_trimmed, got_trimmed = Trimmed(), Trimmed()
    want = list(scan_chunks(read_chunks(path), trimmed=want_trimmed))
    got = list(scan_blocks(ForkedBlocks(_opener(path), path=path, trimmed=got_trimmed)))
    assert got == want
    assert len(want) >= 20
    assert got_trimmed == want_trimmed
    assert want_trimmed.lines >= 3


def test_gzip_is_read_by_the_child_too(tmp_path: Path) -> None:
    data = _corpus_log(seed=11, filler=200)
    path = _log(tmp_path, gzip.compress(data), "syslog.1.gz")
    want = list(scan_chunks([data]))
    assert list(scan_blocks(ForkedBlocks(_opener(path), path=path))) == want


def test_a_failed_read_comes_after_every_record_before_it(tmp_path: Path) -> None:
    data = _corpus_log(seed=5, filler=100)
    packed = gzip.compress(data)
    path = _log(tmp_path, packed[: len(packed) * 2 // 3], "cut.gz")
    with pytest.raises(SourceError) as in_process:
        list(scan_chunks(read_chunks(path)))
    got: list[tuple[bytes, list[int] | None]] = []
    reader = ForkedBlocks(_opener(path), path=path)
    with pytest.raises(SourceError) as forked_error:
        got.extend(_whole(reader))
    assert str(forked_error.value) == str(in_process.value)
    assert "gzip data cut short" in str(forked_error.value)
    assert got == list(_blocks_until_failure(path))
    assert reader.pid is None  # reaped


def _blocks_until_failure(path: Path) -> Iterator[tuple[bytes, list[int] | None]]:
    try:
        yield from blocks(read_chunks(path))
    except SourceError:
        return


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.log"
    with pytest.raises(SourceError, match=r"cannot open .*nope\.log: No such file"):
        list(ForkedBlocks(_opener(path), path=path))


def test_a_bug_in_the_child_is_an_internal_error_not_a_source_error() -> None:
    def broken(_progress: object) -> Iterator[bytes]:
        yield b"one line\n"
        raise ValueError("a bug")

    reader = ForkedBlocks(broken)
    first = next(reader)[0]
    assert isinstance(first, Lent)
    assert bytes(first) == b"one line\n"
    with pytest.raises(RuntimeError, match="ValueError: a bug"):
        next(reader)


def test_progress_counts_the_bytes_read(tmp_path: Path) -> None:
    path = _log(tmp_path, _corpus_log(seed=2, filler=2000))
    seen: list[int] = []
    list(ForkedBlocks(_opener(path), path=path, progress=seen.append))
    assert seen == sorted(seen)
    assert seen[-1] == path.stat().st_size


def _big_log(tmp_path: Path) -> Path:
    """A log larger than the ring: the child waits for slots while the test holds it."""
    line = b"Mar  1 10:00:00 web-01 app[1]: ordinary line of an ordinary log\n"
    path = tmp_path / "big.log"
    path.write_bytes(line * ((forked.SLOTS + 8) * forked.CHUNK // len(line)))
    return path


def test_a_reader_closed_early_stops_and_reaps_the_child(tmp_path: Path) -> None:
    reader = ForkedBlocks(_opener(_big_log(tmp_path)), path=_big_log(tmp_path))
    pid = reader.pid
    assert pid is not None
    next(reader)
    assert _alive(pid)  # waiting for a slot
    reader.close()
    assert reader.pid is None
    assert not _alive(pid)


def test_a_child_killed_from_outside_is_an_error_not_an_end(tmp_path: Path) -> None:
    path = _big_log(tmp_path)
    reader = ForkedBlocks(_opener(path), path=path)
    assert reader.pid is not None
    next(reader)
    os.kill(reader.pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="ended without a word \\(killed by signal 9\\)"):
        for _ in reader:
            pass


def test_an_interrupted_parse_leaves_no_reader_behind(tmp_path: Path) -> None:
    """^C on ``sentinel parse BIG``: exit 130, and the reader process is gone with it."""
    path = tmp_path / "huge.log"
    line = b"Mar  1 10:00:00 web-01 app[1]: ordinary line of an ordinary log\n"
    with path.open("wb") as f:
        block = line * (forked.CHUNK // len(line))
        for _ in range(256):  # 256 MiB: more than the parse gets through before ^C
            f.write(block)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from sentinel.cli import main; raise SystemExit(main())",
            *("parse", str(path), "--format", "json"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 30
    kids: list[int] = []
    while not kids:
        assert time.monotonic() < deadline, "no reader process started"
        assert proc.poll() is None, "the parse ended before it could be interrupted"
        kids = [int(p) for p in children.read_text().split()]
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    for kid in kids:
        assert not Path(f"/proc/{kid}").exists(), "the reader outlived its parse"


@pytest.mark.timeout(60)
def test_a_fifo_is_read_whole_not_probed(tmp_path: Path) -> None:
    """A FIFO is no regular file: the child reads it once, the way read_chunks does. (To
    open it to look would take its writer, and to close it again would end its stream.)"""
    fifo = tmp_path / "kern.fifo"
    os.mkfifo(fifo)
    data = _corpus_log(seed=9, filler=50)

    def write() -> None:
        with fifo.open("wb") as f:
            f.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    got = b"".join(block for block, _ in _whole(ForkedBlocks(_opener(fifo), path=fifo)))
    writer.join(10)
    assert got == data


def _counting(items: Iterable[Block], sparse: list[int], fetched: list[int]) -> Iterator[Block]:
    """The same blocks; each sparse one counts in ``sparse``, and in ``fetched`` when it
    is read whole."""
    for item, hits in items:
        if isinstance(item, Sparse):
            sparse.append(1)
            fetch = item.fetch

            def counted(fetch: Callable[[], bytes] = fetch) -> bytes:
                fetched.append(1)
                return fetch()

            item.fetch = counted
        yield item, hits


@pytest.mark.parametrize("prefixed", [True, False], ids=["syslog", "unprefixed-noise"])
def test_sparse_blocks_are_skipped_or_read_whole_to_the_same_records(
    tmp_path: Path, prefixed: bool
) -> None:
    """Past the opener window, a block with no core hit comes as its first line, last
    line and tail; the parser reads it whole only when a report is still open, a line is
    held, or the last line has no prefix (a walk back could go past it)."""
    rng = random.Random(13)
    filler = (
        b"Mar  1 10:00:00 web-01 sshd[4242]: Accepted publickey for deploy from 10.0.0.7\n"
        if prefixed
        else b"plain text with no prefix at all, as a pasted excerpt has\n"
    )
    parts = [filler * 60_000]  # past the opener window (4 MiB)
    names = sorted(CORPUS)
    for name in rng.sample(names, 12):
        parts.append(filler * rng.randrange(10_000, 30_000))
        parts.append(CORPUS[name] + b"\n")
    path = _log(tmp_path, b"".join(parts))
    sparse: list[int] = []
    fetched: list[int] = []
    got = list(scan_blocks(_counting(ForkedBlocks(_opener(path), path=path), sparse, fetched)))
    assert got == list(scan_chunks(read_chunks(path)))
    assert len(got) >= 12
    assert len(sparse) >= 4
    if prefixed:
        assert 0 < len(fetched) < len(sparse)  # most skipped, those in a report read whole
    else:
        assert len(fetched) == len(sparse)  # no prefixed last line: every one read whole


def test_without_a_process_to_spare_the_parse_reads_in_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """fork fails (EAGAIN: a process limit): the same records, read in this process, and
    the descriptors the reader had made are closed again."""
    path = _log(tmp_path, _corpus_log(seed=4, filler=100))
    want = [json.dumps(r.to_dict(), ensure_ascii=False) for r in scan_chunks(read_chunks(path))]

    def no_fork() -> int:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(BlockingIOError):
        ForkedBlocks(_opener(path), path=path)
    assert len(os.listdir("/proc/self/fd")) == fds
    assert main(["parse", str(path), "--format", "json"]) == 0
    assert capsys.readouterr().out.splitlines() == want
    assert len(want) >= 60


@pytest.mark.skipif(ENGINE != "hyperscan", reason="needs hyperscan")
def test_the_parent_loads_the_needle_databases_the_child_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child compiles the scanner's databases while the parent imports the parser;
    the parent loads them with the first block and compiles none itself."""
    monkeypatch.setattr(search, "_compiled", {})
    path = _log(tmp_path, _corpus_log(seed=3, filler=100))
    reader = ForkedBlocks(_opener(path), path=path)
    first = next(reader)
    assert sorted(search._compiled) == [0, 1, 2]  # nothing in this process compiled them
    got = list(scan_blocks(itertools.chain([first], reader)))
    assert got == list(scan_chunks(read_chunks(path)))
    assert len(got) >= 10
