"""Host and process memory from /proc, on the checked-in tree and on this machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sentinel.errors import SourceError
from sentinel.sources.procfs import (
    Proc,
    ProcessGoneError,
    parse_meminfo,
    parse_pressure,
    parse_proc_cgroup,
    parse_proc_status,
    parse_vmstat_oom_kill,
)

PROC = Path(__file__).parent / "data" / "proc"
KIB = 1024


def test_parse_meminfo_scales_kib() -> None:
    info = parse_meminfo((PROC / "meminfo").read_text())
    assert info["MemTotal"] == 24684096 * KIB
    assert info["MemAvailable"] > 0
    assert "HugePages_Total" in info  # unit-less counts are kept as they are
    assert info["Hugepagesize"] == 2048 * KIB


def test_parse_vmstat_oom_kill() -> None:
    assert parse_vmstat_oom_kill((PROC / "vmstat").read_text()) is not None
    assert parse_vmstat_oom_kill("nr_free_pages 1\noom_kill 7\nnuma_hit 2\n") == 7
    assert parse_vmstat_oom_kill("oom_kill 3\n") == 3
    assert parse_vmstat_oom_kill("nr_free_pages 1\n") is None


def test_parse_pressure() -> None:
    psi = parse_pressure(
        "some avg10=1.50 avg60=0.25 avg300=0.05 total=12345\n"
        "full avg10=0.75 avg60=0.10 avg300=0.00 total=6789\n"
    )
    assert (psi.some_avg10, psi.some_avg60, psi.some_avg300) == (1.5, 0.25, 0.05)
    assert (psi.some_total_us, psi.full_total_us) == (12345, 6789)
    with pytest.raises(ValueError, match="full"):
        parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")


def test_parse_proc_status_user_process() -> None:
    status = parse_proc_status((PROC / "4242" / "status").read_text())
    assert (status.name, status.pid, status.uid, status.state) == ("python", 4242, 0, "S")
    assert status.rss_bytes == 74164 * KIB
    assert status.anon_bytes == 68164 * KIB
    assert status.file_bytes == 6000 * KIB
    assert status.swap_bytes == 0


def test_parse_proc_status_kernel_thread_has_no_memory() -> None:
    status = parse_proc_status((PROC / "2" / "status").read_text())
    assert status.rss_bytes is None
    assert status.anon_bytes is None


def test_parse_proc_status_unescapes_the_name() -> None:
    text = (
        "Name:\ta\\nb\\\\c\nState:\tR (running)\nPid:\t9\nPPid:\t1\nUid:\t5\t5\t5\t5\nThreads:\t1\n"
    )
    assert parse_proc_status(text).name == "a\nb\\c"
    with pytest.raises(ValueError, match="Pid"):
        parse_proc_status("Name:\tx\n")


def test_parse_proc_cgroup() -> None:
    v1 = parse_proc_cgroup((PROC / "4242" / "cgroup").read_text())
    assert v1.memory == "/docker/4c01db0b339c4b6e6d2f1a0d3c8e7f29b5a6c7d8e9f0a1b2c3d4e5f60718293a"
    assert v1.unified == "/"
    assert v1.memory_cgroup == v1.memory
    v2 = parse_proc_cgroup("0::/system.slice/foo.service\n")
    assert (v2.memory, v2.memory_cgroup) == (None, "/system.slice/foo.service")
    combined = parse_proc_cgroup("4:cpu,memory:/lxc/web\n")
    assert combined.memory == "/lxc/web"
    assert parse_proc_cgroup("4:memory:/a:b\n").memory == "/a:b"  # colons in the path
    with pytest.raises(ValueError, match="not a /proc/PID/cgroup line"):
        parse_proc_cgroup("garbage\n")


def test_host_from_fixture() -> None:
    host = Proc(PROC, clock=lambda: 7.0).host()
    assert host.t == 7.0
    assert host.total_bytes == 24684096 * KIB
    assert host.available_bytes <= host.total_bytes
    assert host.swap_total_bytes == 0
    assert host.oom_kill is not None
    assert host.pressure is not None


def test_host_without_psi(tmp_path: Path) -> None:
    for name in ("meminfo", "vmstat"):
        (tmp_path / name).write_bytes((PROC / name).read_bytes())
    assert Proc(tmp_path).host().pressure is None
    (tmp_path / "meminfo").write_text("MemTotal: 1 kB\n")
    with pytest.raises(SourceError, match="MemAvailable"):
        Proc(tmp_path).host()


def test_process_from_fixture() -> None:
    proc = Proc(PROC, clock=lambda: 3.0)
    sample = proc.process(4242)
    assert (sample.t, sample.pid, sample.comm) == (3.0, 4242, "python")
    assert sample.oom_score == 1002
    assert sample.oom_score_adj == 500
    assert sample.rss_bytes == 74164 * KIB
    assert (
        sample.cgroup == "/docker/4c01db0b339c4b6e6d2f1a0d3c8e7f29b5a6c7d8e9f0a1b2c3d4e5f60718293a"
    )
    v2 = proc.process(5151)
    assert v2.cgroup == (
        "/system.slice/docker-70d4b2a9e1c84f3b9a6d5c2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a.scope"
    )
    assert sorted(proc.pids()) == [1, 2, 4242, 5151]


def test_gone_process() -> None:
    with pytest.raises(ProcessGoneError, match="process 999999 is gone"):
        Proc(PROC).process(999999)


def test_this_machine() -> None:
    proc = Proc()
    me = proc.process(os.getpid())
    assert me.comm
    assert me.rss_bytes is not None
    assert me.rss_bytes > 0
    assert me.cgroup is not None
    assert me.cgroup.startswith("/")
    host = proc.host()
    assert 0 < host.available_bytes <= host.total_bytes
