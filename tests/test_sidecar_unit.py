"""Sidecar mode's pure parts and readers, on fake ``/proc`` trees: signal masks, whether the
namespace's PID 1 can be stopped from inside, memory from ``/proc`` against the stated
limit, target naming behind a minimal init, and ``SENTINEL_APP_MEMORY_LIMIT``."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from sentinel.actions import init_signal_problem
from sentinel.actions._host import Host
from sentinel.cli import main
from sentinel.policy import load_policy
from sentinel.runtime.daemon import tick_deadline
from sentinel.runtime.sidecar import SidecarTargets, group_sample
from sentinel.sources.procfs import Proc, parse_proc_status

MIB = 1 << 20
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def status_text(
    name: str, pid: int, ppid: int = 0, *, rss_kb: int = 0, cgt: int = 0, blk: int = 0
) -> str:
    return (
        f"Name:\t{name}\nState:\tS (sleeping)\nPid:\t{pid}\nPPid:\t{ppid}\n"
        "Uid:\t0\t0\t0\t0\nThreads:\t1\n"
        f"VmHWM:\t{rss_kb} kB\nVmRSS:\t{rss_kb} kB\nRssAnon:\t{rss_kb} kB\n"
        "RssFile:\t0 kB\nRssShmem:\t0 kB\nVmSwap:\t0 kB\n"
        f"SigBlk:\t{blk:016x}\nSigIgn:\t0000000000000000\nSigCgt:\t{cgt:016x}\n"
    )


def fake_proc(root: Path, procs: dict[int, tuple[str, str, int, int, int]]) -> Path:
    """``/proc`` with ``procs``: pid -> (name, memory cgroup, rss KiB, SigCgt, SigBlk), all
    in one pid namespace, and a ``stat`` with the boot time."""
    (root / "stat").write_text("cpu 0 0 0 0\nbtime 1700000000\n")
    for pid, (name, cgroup, rss, cgt, blk) in procs.items():
        d = root / str(pid)
        (d / "ns").mkdir(parents=True)
        (d / "ns" / "pid").symlink_to("pid:[4026532999]")
        (d / "status").write_text(status_text(name, pid, rss_kb=rss, cgt=cgt, blk=blk))
        (d / "cgroup").write_text(f"4:memory:{cgroup}\n0::/\n")
        fields = ["S", "0"] + ["0"] * 17 + [str(100 * pid)]
        (d / "stat").write_text(f"{pid} ({name}) " + " ".join(fields) + "\n")
        (d / "wchan").write_text("do_nanosleep")
    return root


def test_signal_masks_are_read_from_status() -> None:
    status = parse_proc_status(status_text("app", 1, cgt=SIGTERM_BIT))
    assert status.catches(signal.SIGTERM)
    assert not status.catches(signal.SIGUSR2)
    blocked = parse_proc_status(status_text("catatonit", 1, blk=SIGTERM_BIT))
    assert blocked.catches(signal.SIGTERM)  # a signalfd or sigwait takes it


@pytest.mark.parametrize(
    ("name", "cgt", "blk", "wchan", "stoppable"),
    [
        ("app", 0, 0, "do_nanosleep", False),
        ("app", SIGTERM_BIT, 0, "do_nanosleep", True),
        ("app", 0, SIGTERM_BIT, "do_nanosleep", True),
        ("docker-init", 0, 0, "do_wait", True),
        ("app", 0, 0, "do_sigtimedwait.isra.0", True),  # tini while it waits
    ],
)
def test_init_signal_problem(  # noqa: PLR0917 (parametrized)
    tmp_path: Path, name: str, cgt: int, blk: int, wchan: str, stoppable: bool
) -> None:
    proc = fake_proc(
        tmp_path, {1: (name, "/docker/a", 1024, cgt, blk), 7: ("sentinel", "/", 0, 0, 0)}
    )
    (proc / "1" / "wchan").write_text(wchan)
    host = Host(proc=proc, self_pid=7)
    problem = init_signal_problem(host, 1)
    assert (problem is None) is stoppable
    if problem is not None:
        assert "no SIGTERM handler" in problem
        assert "--init" in problem
    assert init_signal_problem(host, 5) is None  # not an init: signals reach it


def test_init_of_another_namespace_is_not_our_problem(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {1: ("app", "/docker/a", 0, 0, 0), 7: ("sentinel", "/", 0, 0, 0)})
    (proc / "7" / "ns" / "pid").unlink()
    (proc / "7" / "ns" / "pid").symlink_to("pid:[4026531836]")
    assert init_signal_problem(Host(proc=proc, self_pid=7), 1) is None


def test_group_sample_sums_resident_memory_against_the_stated_limit() -> None:
    members = [
        parse_proc_status(status_text("app", 1, rss_kb=100 * 1024)),
        parse_proc_status(status_text("worker", 9, 1, rss_kb=28 * 1024)),
    ]
    sample = group_sample(5.0, "/docker/a", members, 192 * MIB)
    assert sample.usage_bytes == 128 * MIB
    assert sample.limit_bytes == sample.effective_limit_bytes == 192 * MIB
    assert sample.headroom_bytes == 64 * MIB
    assert group_sample(5.0, "/docker/a", members, None).effective_limit_bytes is None


def test_targets_are_named_after_the_app_behind_a_minimal_init(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        {
            1: ("docker-init", "/docker/app", 1024, 0, 0),
            7: ("python3", "/docker/app", 50 * 1024, SIGTERM_BIT, 0),
            8: ("python3", "/docker/app", 10 * 1024, 0, 0),
            20: ("sentinel", "/docker/side", 30 * 1024, SIGTERM_BIT, 0),
        },
    )
    sidecar = SidecarTargets(Proc(proc, clock=lambda: 3.0), self_pid=20, app_limit_bytes=64 * MIB)
    (target,) = sidecar.targets()
    assert target.name == "python3"
    assert target.pid == 1  # signalled through the init, which forwards SIGTERM
    assert target.id == "process:python3:/docker/app"
    assert target.started_at == pytest.approx(1700000000 + 1.0)  # 100 ticks at 100 Hz
    sample = sidecar.sample("/docker/app")
    assert sample is not None
    assert sample.usage_bytes == 61 * MIB  # sentinel's own memory is not the app's
    assert sample.limit_bytes == 64 * MIB
    assert sidecar.sample("/docker/gone") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("192m", "ambiguous"),
        ("lots", "expected a size"),
        ("0", "above 0"),
    ],
)
def test_app_memory_limit_errors_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    monkeypatch.setenv("SENTINEL_APP_MEMORY_LIMIT", value)
    assert main(["run", "--mode", "sidecar"]) == 2
    err = capsys.readouterr().err
    assert "SENTINEL_APP_MEMORY_LIMIT" in err
    assert message in err
    assert "Traceback" not in err


def test_tick_deadline_is_three_intervals_and_at_least_a_minute() -> None:
    policy = load_policy(
        "settings: {sample_interval: 30s}\n"
        "rules:\n"
        "  - name: r\n"
        "    when: {projected_oom_within: 15m}\n"
        "    do: [{restart: {grace_period: 2m}}]\n",
        "policy.yaml",
    )
    assert tick_deadline(policy) == 90  # the restart runs on the worker, not in a tick
    assert tick_deadline(load_policy("version: 1\n", "p.yaml")) == 60
