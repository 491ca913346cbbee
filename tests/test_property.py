"""Random, truncated and shuffled input never raises and never yields a record without a pid."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.kernel.oom import parse_lines
from sentinel.kernel.scan import scan_chunks
from sentinel.model import KillRecord

SAMPLES = sorted((Path(__file__).parent / "data" / "oom-logs").glob("*.log"))
CORPUS = [p.read_bytes() for p in SAMPLES]
LINES = [line for blob in CORPUS for line in blob.decode("utf-8", "replace").splitlines()]

# Fragments of real OOM report lines, recombined with random values and prefixes.
FRAGMENTS = [
    "invoked oom-killer: gfp_mask=",
    "order=",
    ", oom_score_adj=",
    "Out of memory: Killed process ",
    "Memory cgroup out of memory: Killed process ",
    "Out of memory (oom_kill_allocating_task): ",
    "Killed process ",
    "Kill process ",
    " score 1000 or sacrifice child",
    "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,",
    "global_oom,",
    "oom_memcg=/docker/",
    "task_memcg=/kubepods/burstable/pod",
    ",task=",
    ",pid=",
    ",uid=",
    "Task in /docker/a killed as a result of limit of /docker/a",
    "total-vm:",
    "kB, anon-rss:",
    "UID:",
    "pgtables:",
    "oom_score_adj:",
    "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
    "[ ",
    "]",
    "(",
    ")",
    "Mem-Info:",
    "memory: usage 1kB, limit 2kB, failcnt 3",
    "Out of memory and no killable processes...",
    "oom_reaper: reaped process ",
    "#012",
    "Sep 30 13:00:20 host kernel: ",
    "[ 12.345678] ",
    "[Tue Sep 28 10:00:00 2021] ",
    "6,123,456789,-;",
    "2021-09-30T13:00:20.123456+00:00 host kernel: ",
    "CPU: 1 PID: ",
    " Comm: ",
]
pieces = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.integers(min_value=-1000, max_value=2**40).map(str),
    st.text(max_size=12),
)
fragment_lines = st.lists(pieces, max_size=12).map("".join)


def _check(records: list[KillRecord]) -> None:
    for record in records:
        assert isinstance(record.pid, int)
        assert record.to_dict()["pid"] == record.pid


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(), fragment_lines), max_size=60))
def test_random_lines_never_raise(lines: list[str]) -> None:
    _check(list(parse_lines(lines)))


@settings(max_examples=200)
@given(st.binary(max_size=4000), st.integers(min_value=1, max_value=64))
def test_random_bytes_never_raise(data: bytes, step: int) -> None:
    _check(list(scan_chunks([data[i : i + step] for i in range(0, len(data), step)])))


@settings(max_examples=200)
@given(st.sampled_from(CORPUS), st.data())
def test_truncated_samples_never_raise(blob: bytes, data: st.DataObject) -> None:
    start = data.draw(st.integers(min_value=0, max_value=len(blob)))
    end = data.draw(st.integers(min_value=start, max_value=len(blob)))
    _check(list(scan_chunks([blob[start:end]])))


@settings(max_examples=200)
@given(st.permutations(LINES[:400]))
def test_shuffled_lines_never_raise(lines: list[str]) -> None:
    _check(list(parse_lines(lines)))


@settings(max_examples=100)
@given(st.lists(st.sampled_from(LINES), max_size=200), st.data())
def test_lines_with_random_corruption_never_raise(lines: list[str], data: st.DataObject) -> None:
    out = []
    for line in lines:
        cut = data.draw(st.integers(min_value=0, max_value=len(line)))
        out.append(line[:cut] if data.draw(st.booleans()) else line)
    _check(list(parse_lines(out)))
