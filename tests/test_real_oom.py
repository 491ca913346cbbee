"""A real kernel OOM kill, read back from the real /dev/kmsg by the real CLI.

The test makes a memory cgroup with a 48 MiB limit below its own cgroup, runs a process
in it that allocates past the limit, and asserts that ``sentinel parse kmsg`` names that
exact process, its cgroup, and a cgroup (not host-wide) OOM. Works on cgroup v1 and v2.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cgroups
from daemon_process import Lines

SENTINEL = str(Path(sys.executable).parent / "sentinel")
LEAK = "x = []\nwhile True:\n    x.append(b'\\x01' * (1 << 20))\n"

pytestmark = pytest.mark.kernel


def _kmsg_records() -> list[dict[str, object]]:
    result = subprocess.run(
        [SENTINEL, "parse", "kmsg", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode in (0, 1), result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_real_memcg_oom_kill_is_parsed_from_kmsg() -> None:
    with cgroups.temporary(limit_bytes=48 * cgroups.MIB) as cg:
        proc = cg.spawn([sys.executable, "-S", "-c", LEAK], stdout=subprocess.DEVNULL)
        assert proc.wait(timeout=60) == -9  # SIGKILL from the kernel's OOM killer
        pid = proc.pid
        deadline = time.monotonic() + 10
        mine: list[dict[str, object]] = []
        while not mine and time.monotonic() < deadline:
            mine = [r for r in _kmsg_records() if r["pid"] == pid]
            if not mine:
                time.sleep(0.2)
    assert len(mine) == 1, mine
    record = mine[0]
    assert record["comm"] == Path(sys.executable).name[:15]
    assert record["constraint"] == "CONSTRAINT_MEMCG"
    assert record["global"] is False
    assert record["task_memcg"] == cg.path
    assert record["oom_memcg"] == cg.path
    assert isinstance(record["anon_rss_kb"], int)
    assert 30 * 1024 < record["anon_rss_kb"] <= 48 * 1024
    assert record["mem_info"]["memory_limit_kb"] == 48 * 1024  # type: ignore[index]
    assert isinstance(record["kernel_timestamp"], float)
    assert isinstance(record["kmsg_seq"], int)


def test_follow_reports_a_kill_as_it_happens() -> None:
    old = len(_kmsg_records())  # kills already in the buffer: --follow prints these first
    follower = subprocess.Popen(
        [SENTINEL, "parse", "kmsg", "--follow", "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    lines = Lines(follower.stdout)
    try:
        for n in range(old):  # caught up with the buffer: the next kill is read as it comes
            assert lines.next(30, f"old kill record {n + 1} of {old}") is not None
        with cgroups.temporary(limit_bytes=48 * cgroups.MIB) as cg:
            proc = cg.spawn([sys.executable, "-S", "-c", LEAK], stdout=subprocess.DEVNULL)
            assert proc.wait(timeout=60) == -9
            pid = proc.pid
        deadline = time.monotonic() + 15
        found = None
        while found is None:
            left = deadline - time.monotonic()
            line = lines.next(max(left, 0.0), f"the kill of pid {pid} from --follow")
            assert line is not None, f"--follow ended (exit {follower.poll()})"
            record = json.loads(line)
            if record["pid"] == pid:
                found = record
        assert found["task_memcg"] == cg.path
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        lines.close()
        if follower.stderr is not None:
            follower.stderr.close()
