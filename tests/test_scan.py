"""The byte scanner gives exactly the records of feeding every line to the parser.

``scan_chunks`` feeds the parser only the lines that hold one of its needles (and the
lines before an unprefixed hit that the decoder takes its host from). These tests hold it
to the plain reference: split on ``\\n``, decode, feed every non-empty line; ``b""`` flushes.
"""

from __future__ import annotations

import itertools
import mmap
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.kernel.lines import PREFIXED_ASCII, LineDecoder
from sentinel.kernel.oom import OomParser
from sentinel.kernel.scan import STALE_BYTES, scan_blocks, scan_chunks
from sentinel.kernel.search import BUSY, ENGINE, IDLE, Block, Lent, blocks
from sentinel.model import KillRecord

SAMPLES = sorted((Path(__file__).parent / "data" / "oom-logs").glob("*.log"))
CORPUS = {p.stem: p.read_bytes() for p in SAMPLES}

# Ordinary lines, some of them holding a needle (they are fed and found unrelated), some
# unprefixed, one with CRLF, one not UTF-8.
NOISE = [
    b"Mar  1 10:00:00 web-01 sshd[4242]: Accepted publickey for deploy from 10.0.0.7 port 50522",
    b"Mar  1 10:00:00 web-02 systemd[1]: session-7.scope: Killing process 4243 (sshd) with signal",
    b"Mar  1 10:00:01 db-01 systemd[1]: logrotate.service: Consumed 12ms CPU time, 1.2M memory.",
    b"Mar  1 10:00:01 db-01 kernel: [ 1234.567890] EXT4-fs (sda1): mounted filesystem r/w.",
    b"Mar  1 10:00:02 web-01 kernel: [ 1234.600000] [UFW BLOCK] IN=eth0 OUT= SRC=1.2.3.4 LEN=40",
    b'Mar  1 10:00:02 web-02 dockerd[812]: level=info msg="free: 12 pages, swap usage 0"',
    b"Mar  1 10:00:03 web-02 kernel: [  99.000001] CPU: 3 is up; 4 pages of Mem-Info follow",
    b"Mar  1 10:00:03 db-01 app[77]: [ 123]  0 123 worker row-like text, pid 5 ] done",
    b"Mar  1 10:00:04 web-01 cron[9]: (root) CMD (run-parts /etc/cron.hourly)\r",
    b"Mar  1 10:00:04 web-01 app[3]: caf\xc3\xa9 \xff\xfe not utf-8 oom-killer mentioned here",
    b"    a continuation line with no prefix at all",
    b"",
    b"2024-03-01T10:00:05.123456+00:00 k8s-1 kubelet[1]: SyncLoop (PLEG): event for pod",
    b"<6>[  100.000000] e1000e: eth0 NIC Link is Up 1000 Mbps Full Duplex",
]


def reference(chunks: Iterable[bytes]) -> Iterator[KillRecord]:
    """What ``scan_chunks`` must equal: every line fed, in order."""
    parser = OomParser()
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


def cut_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def noise(rng: random.Random, n: int) -> bytes:
    return b"".join(rng.choice(NOISE) + b"\n" for _ in range(n))


@pytest.mark.parametrize("name", sorted(CORPUS))
@pytest.mark.parametrize("size", [1, 7, 97, 4096, 1 << 20])
def test_sample_alone_any_chunk_size(name: str, size: int) -> None:
    data = CORPUS[name]
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    want = list(reference(chunks))
    assert list(scan_chunks(chunks)) == want


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_sample_in_noise(name: str) -> None:
    rng = random.Random(name)
    data = noise(rng, 3000) + CORPUS[name] + b"\n" + noise(rng, 3000)
    chunks = cut_at(data, (rng.randrange(len(data)) for _ in range(40)))
    want = list(reference(chunks))
    assert list(scan_chunks(chunks)) == want
    assert len(want) == len(list(reference([CORPUS[name]])))


def test_all_samples_in_one_noisy_log_with_idle_flushes() -> None:
    rng = random.Random(7)
    parts: list[bytes] = []
    for name in sorted(CORPUS):
        parts += [noise(rng, rng.randrange(0, 2000)), CORPUS[name] + b"\n", b""]
    chunks: list[bytes] = []
    for part in parts:
        chunks += (
            cut_at(part, (rng.randrange(max(len(part), 1)) for _ in range(5))) if part else [b""]
        )
    want = list(reference(chunks))
    assert len(want) >= 40
    assert list(scan_chunks(chunks)) == want


SCRIBBLE = b"Mar  1 10:00:00 scribbled kernel: Killed process 1 (stale) total-vm:1kB\n"


def lent(chunks: list[bytes], engine: str) -> Iterator[Block]:
    """The blocks of ``chunks``, each lent in one and the same reused buffer (an mmap, as
    the reader process lends its slots) and scribbled over once the next is asked for."""
    size = max(map(len, chunks), default=0) or 1
    buffer = mmap.mmap(-1, size)
    scribble = (SCRIBBLE * (size // len(SCRIBBLE) + 1))[:size]
    for chunk, hits in blocks(chunks, engine=engine):
        buffer[: len(chunk)] = chunk
        yield Lent(buffer, len(chunk)), hits
        buffer[:] = scribble


@pytest.mark.parametrize("engine", sorted({"re", ENGINE}))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lent_blocks_give_the_same_records_though_their_buffer_is_reused(
    engine: str, seed: int
) -> None:
    """A block lent rather than copied (the reader process's slots) is valid only until
    the next is asked for: what the scanner keeps of it (a skipped line an unprefixed
    report takes its host from; hits found in it) must not be read from the buffer after.
    Every sample, in noise with and without prefixes, cut in small and odd places."""
    rng = random.Random(seed)
    parts: list[bytes] = []
    for name in sorted(CORPUS):
        parts += [noise(rng, rng.randrange(0, 400)), CORPUS[name] + b"\n"]
    data = b"".join(parts)
    chunks = cut_at(data, (rng.randrange(len(data)) for _ in range(len(data) // 3000)))
    chunks.insert(len(chunks) // 2, b"")
    want = list(reference(chunks))
    assert len(want) >= 40
    assert list(scan_blocks(lent(chunks, engine), engine=engine)) == want


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(st.sampled_from(sorted(CORPUS)), min_size=1, max_size=4),
    gaps=st.lists(st.integers(0, 300), min_size=5, max_size=5),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=30),
    flushes=st.lists(st.integers(0, 1 << 20), max_size=3),
    seed=st.integers(0, 1000),
)
def test_random_mix_and_chunk_boundaries(
    names: list[str], gaps: list[int], cuts: list[int], flushes: list[int], seed: int
) -> None:
    rng = random.Random(seed)
    data = noise(rng, gaps[0])
    for name, gap in zip(names, gaps[1:], strict=False):
        data += CORPUS[name] + b"\n" + noise(rng, gap)
    chunks = cut_at(data, (c % (len(data) + 1) for c in cuts))
    for f in flushes:
        chunks.insert(f % (len(chunks) + 1), b"")
    assert list(scan_chunks(chunks)) == list(reference(chunks))


def test_unprefixed_report_takes_the_host_of_the_skipped_line_before_it() -> None:
    report = (
        b"Out of memory: Kill process 4711 (java) score 900 or sacrifice child\n"
        b"Killed process 4711 (java) total-vm:1000kB, anon-rss:500kB, file-rss:0kB\n"
    )
    data = (
        b"Mar  1 10:00:00 other-host sshd[1]: hello\n" * 500
        + b"Mar  1 10:00:01 the-host kernel: [ 1.000000] eth0: link up\n"
        + report
        + b"Mar  1 10:00:00 other-host sshd[1]: hello\n" * 500
    )
    got = list(scan_chunks([data[:30000], data[30000:]]))
    assert [(r.pid, r.host) for r in got] == [(4711, "the-host")]
    assert got == list(reference([data]))


def test_report_lines_far_apart_within_the_stale_window() -> None:
    """Task rows and the kill line of one host, with 50 KB of another host's lines between."""
    rows = CORPUS["101-ubuntu-6.x-global-user-slice-dmesg-T-french-grepped"]
    filler = b"Mar  1 10:00:00 other sshd[1]: Accepted publickey for x from 10.0.0.1\n" * 700
    assert 40_000 < len(filler) < STALE_BYTES
    lines = rows.split(b"\n")
    data = b"\n".join(lines[:3]) + b"\n" + filler + b"\n".join(lines[3:]) + b"\n"
    got = list(scan_chunks([data[i : i + 8192] for i in range(0, len(data), 8192)]))
    assert got == list(reference([data]))
    assert got
    assert got[0].tasks


def _matches(patterns: Iterable[object], raw: bytes) -> bool:
    return any(p.search(raw) for p in patterns)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_needles_cover_every_line_that_changes_the_parser(name: str) -> None:
    """Replay the sample; each line that mattered must hold a needle of the scanner."""
    parser = OomParser()
    checked = 0
    for raw in CORPUS[name].split(b"\n"):
        if not raw:
            continue
        was_busy = parser.busy
        was_wanting = parser.wants_body  # the scanner seeks BUSY's needles, else IDLE's
        was_holding = parser.holding  # the scanner feeds the next line whatever it holds
        records = parser.feed(raw.decode("utf-8", "replace"))
        texts = [ln.text.strip() for ln in LineDecoder().decode(raw.decode("utf-8", "replace"))]
        reaper_only = texts and all(t.startswith("oom_reaper:") for t in texts)
        if was_holding:
            continue
        if not was_wanting and (
            records
            or parser.wants_body
            or parser.busy != was_busy
            or (parser.last_line_related and not reaper_only)
        ):
            assert _matches(IDLE, raw), raw
            checked += 1
        if was_wanting and parser.last_line_related and not reaper_only:
            assert _matches(BUSY, raw), raw
            checked += 1
    if list(reference([CORPUS[name]])):
        assert checked > 0


def test_noise_lines_are_unrelated() -> None:
    """The noise above holds needles but never belongs to a report (of another host)."""
    parser = OomParser()
    parser.feed("Mar  1 09:59:59 z-host kernel: x invoked oom-killer: gfp_mask=0x0, order=0")
    assert parser.busy
    for raw in NOISE:
        if raw:
            parser.feed(raw.decode("utf-8", "replace"))
            assert not parser.last_line_related, raw


@pytest.mark.parametrize("engine", sorted({"re", ENGINE}))
def test_each_engine_reads_all_samples_in_noise_like_the_line_parser(engine: str) -> None:
    """The fallback engine (a pass per needle) and hyperscan's (one pass per mode) find
    the same records as feeding every line, chunks cut anywhere."""
    rng = random.Random(11)
    data = b"".join(noise(rng, 300) + CORPUS[name] + b"\n" for name in sorted(CORPUS))
    chunks = cut_at(data, (rng.randrange(len(data)) for _ in range(200)))
    want = list(reference(chunks))
    assert len(want) >= 60
    assert list(scan_chunks(chunks, engine=engine)) == want


def _decoder_says_prefixed(raw: bytes) -> bool:
    lines = LineDecoder().decode(raw.decode("utf-8", "replace"))
    return bool(lines) and any(
        v is not None
        for v in (lines[0].host, lines[0].kernel_timestamp, lines[0].seq, lines[0].log_time)
    )


def test_the_fast_prefix_check_never_says_prefixed_where_the_decoder_does_not() -> None:
    """``PREFIXED_ASCII`` spares the scanner a decode; it must be a subset of the decoder."""
    seen = 0
    for raw in itertools.chain(NOISE, *(c.split(b"\n") for c in CORPUS.values())):
        if PREFIXED_ASCII.match(raw):
            assert _decoder_says_prefixed(raw), raw
            seen += 1
    assert seen > 500


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(
            [
                b"Mar",
                b"mar",
                "Mär".encode(),
                b" ",
                b"  ",
                b"1",
                b"12",
                b"10:00:00",
                b".5",
                b"host",
                b"kernel",
                b"[12]",
                b":",
                b"[",
                b"]",
                b"2026-03-01",
                b"T",
                b"Z",
                b"+01:00",
                b",",
                b";",
                b"6",
                b"1.5",
                b"\t",
                b"a:b",
                b"kern.err",
            ]
        ),
        max_size=14,
    )
)
def test_the_fast_prefix_check_is_a_subset_of_the_decoder_on_made_up_prefixes(
    parts: list[bytes],
) -> None:
    raw = b"".join(parts) + b" x"
    if PREFIXED_ASCII.match(raw):
        assert _decoder_says_prefixed(raw), raw
