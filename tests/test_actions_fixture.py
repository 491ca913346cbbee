"""oom_score_adj and the safety rail on a fake ``/proc`` and cgroup tree (injected roots):
cgroup v1 and v2 containers, process trees, vanished processes, sentinel itself, its
parents, and pid 1 of the host versus pid 1 of a sidecar's namespace."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sentinel.actions._host import INIT_PID_NS, Host, refusal
from sentinel.actions.oom_score_adj import apply, processes, reapply
from sentinel.model import Target

CID = "3f" * 32
SIDECAR_NS = 4026532180


@dataclass
class Tree:
    proc: Path
    cgroup: Path

    def process(
        self, pid: int, ppid: int, *, cgroup: str = "/", adj: int = 0, v2: bool = False
    ) -> None:
        d = self.proc / str(pid)
        d.mkdir(parents=True)
        (d / "status").write_text(
            f"Name:\tp{pid}\nState:\tS (sleeping)\nPid:\t{pid}\nPPid:\t{ppid}\n"
            "Uid:\t0\t0\t0\t0\nThreads:\t1\n"
        )
        lines = f"0::{cgroup}\n" if v2 else f"4:memory:{cgroup}\n1:cpu:{cgroup}\n0::/\n"
        (d / "cgroup").write_text(lines)
        (d / "oom_score_adj").write_text(f"{adj}\n")

    def pid_ns(self, pid: int, inode: int) -> None:
        (self.proc / str(pid) / "ns").mkdir()
        os.symlink(f"pid:[{inode}]", self.proc / str(pid) / "ns" / "pid")

    def cgroup_procs(self, path: str, pids: Iterable[int], *, v2: bool = False) -> None:
        base = self.cgroup if v2 else self.cgroup / "memory"
        d = base / path.strip("/")
        d.mkdir(parents=True)
        (d / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))

    def adj(self, pid: int) -> int:
        return int((self.proc / str(pid) / "oom_score_adj").read_text())

    def host(self, self_pid: int = 50) -> Host:
        return Host(proc=self.proc, cgroup=self.cgroup, self_pid=self_pid)


def make_tree(tmp_path: Path, *, v2: bool = False) -> Tree:
    tree = Tree(tmp_path / "proc", tmp_path / "sys-fs-cgroup")
    tree.proc.mkdir()
    if v2:
        tree.cgroup.mkdir()
        (tree.cgroup / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    else:
        (tree.cgroup / "memory").mkdir(parents=True)
        (tree.cgroup / "memory" / "memory.usage_in_bytes").write_text("0\n")
    tree.process(1, 0, v2=v2)
    tree.pid_ns(1, INIT_PID_NS)
    tree.process(40, 1, v2=v2)  # sentinel's parent
    tree.process(50, 40, v2=v2)  # sentinel
    return tree


def container(pid: int | None = 100, cgroup: str | None = None) -> Target:
    return Target(id=CID, name="db", runtime="docker", image="postgres:16", pid=pid, cgroup=cgroup)


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_apply_writes_every_process_of_the_container(tmp_path: Path, v2: bool) -> None:
    tree = make_tree(tmp_path, v2=v2)
    path = f"/system.slice/docker-{CID}.scope" if v2 else f"/docker/{CID}"
    for pid, ppid in ((100, 90), (101, 100), (102, 101)):
        tree.process(pid, ppid, cgroup=path, v2=v2)
    tree.cgroup_procs(path, [100, 101, 102], v2=v2)

    result = apply(container(), -900, dry_run=False, host=tree.host())
    assert result.ok, result
    assert result.detail["cgroup"] == path
    assert result.detail["processes"] == [
        {"pid": p, "before": 0, "after": -900} for p in (100, 101, 102)
    ]
    assert result.detail["changed"] == [100, 101, 102]
    assert [tree.adj(p) for p in (100, 101, 102)] == [-900, -900, -900]


def test_reapply_writes_only_where_it_differs(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    path = f"/docker/{CID}"
    tree.process(100, 90, cgroup=path, adj=500)
    tree.process(101, 100, cgroup=path, adj=500)
    tree.process(102, 100, cgroup=path, adj=0)  # started after the first apply
    tree.cgroup_procs(path, [100, 101, 102])
    mtime = (tree.proc / "100" / "oom_score_adj").stat().st_mtime_ns

    result = reapply(container(), 500, host=tree.host())
    assert result.ok, result
    assert result.detail["changed"] == [102]
    assert tree.adj(102) == 500
    assert (tree.proc / "100" / "oom_score_adj").stat().st_mtime_ns == mtime  # not rewritten


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    tree.process(100, 90, cgroup=f"/docker/{CID}")
    tree.cgroup_procs(f"/docker/{CID}", [100])
    result = apply(container(), 300, dry_run=True, host=tree.host())
    assert result.outcome == "dry_run"
    assert result.detail["changed"] == [100]
    assert result.detail["processes"] == [{"pid": 100, "before": 0, "would": 300}]
    assert tree.adj(100) == 0


def test_vanished_process_is_reported_not_failed(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    tree.process(100, 90, cgroup=f"/docker/{CID}")
    tree.cgroup_procs(f"/docker/{CID}", [100, 103])  # 103 exited after cgroup.procs was read
    result = apply(container(), 200, dry_run=False, host=tree.host())
    assert result.ok, result
    assert result.detail["gone"] == [103]
    assert not (tree.proc / "103").exists()  # nothing created for it


def test_sentinel_and_its_parents_are_skipped(tmp_path: Path) -> None:
    """A cgroup shared with sentinel (sidecar in the app's cgroup): sentinel, its parent
    and the host's init keep their values."""
    tree = make_tree(tmp_path)
    tree.process(100, 90, cgroup="/shared")
    tree.cgroup_procs("/shared", [1, 40, 50, 100])
    result = apply(container(100), 700, dry_run=False, host=tree.host())
    assert result.ok, result
    assert [s["pid"] for s in result.detail["skipped"]] == [1, 40, 50]
    assert [tree.adj(p) for p in (1, 40, 50, 100)] == [0, 0, 0, 700]


def test_cgroup_from_target_when_pid_unknown(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    tree.process(100, 90, cgroup=f"/docker/{CID}")
    tree.cgroup_procs(f"/docker/{CID}", [100])
    pids, cgroup = processes(container(pid=None, cgroup=f"/docker/{CID}"), host=tree.host())
    assert (pids, cgroup) == ([100], f"/docker/{CID}")


def test_process_target_is_the_process_and_its_descendants(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    for pid, ppid in ((200, 1), (201, 200), (202, 201), (300, 1)):
        tree.process(pid, ppid)
    target = Target(id="pid:200", name="app", runtime="process", pid=200)
    result = apply(target, 100, dry_run=False, host=tree.host())
    assert result.ok, result
    assert [p["pid"] for p in result.detail["processes"]] == [200, 201, 202]
    assert tree.adj(300) == 0


@pytest.mark.parametrize(
    "target",
    [container(pid=None), Target(id="x", name="x", runtime="process")],
    ids=["container-without-pid-or-cgroup", "process-without-pid"],
)
def test_nothing_to_write_to_is_a_failed_result(tmp_path: Path, target: Target) -> None:
    tree = make_tree(tmp_path)
    result = apply(target, 100, dry_run=False, host=tree.host())
    assert not result.ok
    assert result.outcome == "failed"


def test_empty_cgroup_is_a_failed_result(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    tree.process(100, 90, cgroup=f"/docker/{CID}")
    tree.cgroup_procs(f"/docker/{CID}", [])
    result = apply(container(), 100, dry_run=False, host=tree.host())
    assert not result.ok
    assert "no process" in (result.error or "")


# --- the safety rail ---------------------------------------------------------------------


def test_refusal_self_and_ancestors(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    tree.process(100, 1)
    host = tree.host(self_pid=50)
    assert refusal(host, 50) == "pid 50 is sentinel itself"
    assert "ancestor" in (refusal(host, 40) or "")
    assert refusal(host, 100) is None
    assert refusal(host, 0) is not None


def test_pid1_of_the_host_is_refused(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    tree.process(60, 0)  # sentinel's parent chain does not reach pid 1 here
    host = tree.host(self_pid=60)
    assert refusal(host, 1) == "pid 1 is the host's init"


def test_pid1_of_a_sidecar_namespace_is_allowed(tmp_path: Path) -> None:
    """Sidecar mode: sentinel shares the app's pid namespace; the app is pid 1 there."""
    tree = Tree(tmp_path / "proc", tmp_path / "cg")
    tree.proc.mkdir()
    tree.process(1, 0)
    tree.pid_ns(1, SIDECAR_NS)
    tree.process(7, 0)  # sentinel, started by the runtime into the app's namespace
    assert refusal(tree.host(self_pid=7), 1) is None


def test_pid1_with_unreadable_namespace_is_refused(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "proc", tmp_path / "cg")
    tree.proc.mkdir()
    tree.process(1, 0)  # no ns/pid: cannot tell whose init it is
    tree.process(7, 0)
    assert "cannot be read" in (refusal(tree.host(self_pid=7), 1) or "")
