"""Sidecar mode: the targets are the other processes of sentinel's own PID namespace.

Beside an app with a shared PID namespace (Docker ``--pid=container:APP``, Kubernetes
``shareProcessNamespace: true``), sentinel sees the app's processes. Each memory cgroup
holding visible processes (other than sentinel's own processes) is one target, named after
its main process (the lowest pid in it, or the app a minimal init such as ``docker run
--init`` runs); Kubernetes' ``pause`` is skipped. The target id is
stable across the app's restarts (its name and cgroup), so cooldowns and restart budgets
hold; a restart is SIGTERM to that main process, and the app's restart policy brings it
back.

A sidecar container usually cannot see the host's cgroup tree (its ``/sys/fs/cgroup`` is
its own cgroup). Then a target's memory comes from ``/proc``: the resident memory of its
processes, summed (:func:`group_sample`), against the limit the operator states in
``SENTINEL_APP_MEMORY_LIMIT`` (Kubernetes sets it from the Downward API). When the app's
cgroup is visible (the host's ``/sys/fs/cgroup`` mounted in), its own files are read.

The kernel delivers a signal to a PID namespace's init from inside that namespace only
when init has a handler for it, and never SIGKILL: an app that is PID 1 without a SIGTERM
handler cannot be stopped from the sidecar.
:func:`~sentinel.actions.init_signal_problem` says so, for the self-test and the restart's
result.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

from sentinel.actions._host import INIT_WRAPPERS
from sentinel.errors import SourceError
from sentinel.model import MemorySample, Target
from sentinel.sources.cgroup import normalize
from sentinel.sources.procfs import Proc, ProcessGoneError, ProcStatus

SKIP_COMMS = frozenset({"pause"})
APP_LIMIT_ENV = "SENTINEL_APP_MEMORY_LIMIT"


def group_sample(
    t: float, cgroup: str, members: Iterable[ProcStatus], limit_bytes: int | None
) -> MemorySample:
    """One reading of a cgroup made from its processes' ``/proc/PID/status`` (pure).

    Usage is the sum of their resident memory (``VmRSS``), an estimate of what the cgroup
    is charged: it leaves out page cache that no process maps, and counts pages shared by
    several processes once per process. The limit is the one the operator stated.
    """
    rss = anon = 0
    for status in members:
        rss += status.rss_bytes or 0
        anon += (status.anon_bytes or 0) + (status.shmem_bytes or 0)
    return MemorySample(
        t=t,
        cgroup=cgroup,
        usage_bytes=rss,
        working_set_bytes=rss,
        anon_bytes=anon,
        cache_bytes=None,
        limit_bytes=limit_bytes,
        effective_limit_bytes=limit_bytes,
        effective_limit_cgroup=cgroup if limit_bytes is not None else None,
        limit_hits=None,
        oom=None,
        oom_kill=None,
    )


class SidecarTargets:
    """Finds the targets of the namespace and samples those whose cgroup is not visible."""

    def __init__(self, proc: Proc, *, self_pid: int, app_limit_bytes: int | None = None) -> None:
        self.proc = proc
        self.self_pid = self_pid
        self.app_limit_bytes = app_limit_bytes
        self._by_cgroup: dict[str, Target] = {}

    def _mine(self) -> set[int]:
        """sentinel and its parent chain: never targets."""
        mine = {self.self_pid}
        pid = self.self_pid
        while pid > 1:
            try:
                pid = self.proc.status(pid).ppid
            except (ProcessGoneError, SourceError):
                break
            mine.add(pid)
        return mine

    def _groups(self) -> dict[str, list[ProcStatus]]:
        """The processes of the namespace (not sentinel's), by memory cgroup."""
        mine = self._mine()
        own_cgroup = None
        with contextlib.suppress(ProcessGoneError, SourceError):
            own_cgroup = self.proc.cgroup(self.self_pid).memory_cgroup
        groups: dict[str, list[ProcStatus]] = {}
        for pid in self.proc.pids():
            if pid in mine:
                continue
            try:
                status = self.proc.status(pid)
                cgroup = self.proc.cgroup(pid).memory_cgroup
            except (ProcessGoneError, SourceError):
                continue
            if cgroup is None or status.name in SKIP_COMMS:
                continue
            groups.setdefault(normalize(cgroup), []).append(status)
        if own_cgroup is not None and len(groups) > 1:
            groups.pop(normalize(own_cgroup), None)  # sentinel's own, when the app has one
        return groups

    def targets(self) -> list[Target]:
        found: dict[str, Target] = {}
        for cgroup, members in self._groups().items():
            main = min(members, key=lambda s: s.pid)
            app = min(
                (m for m in members if m.name not in INIT_WRAPPERS),
                key=lambda s: s.pid,
                default=main,
            )
            found[cgroup] = Target(
                id=f"process:{app.name}:{cgroup}",
                name=app.name,
                runtime="process",
                pid=main.pid,
                cgroup=cgroup,
                started_at=self._started(main.pid),
            )
        self._by_cgroup = found
        return list(found.values())

    def sample(self, cgroup: str) -> MemorySample | None:
        """The cgroup's memory from its processes in ``/proc``; ``None`` when none is left."""
        t = self.proc.clock()
        members = self._groups().get(normalize(cgroup))
        if not members:
            return None
        return group_sample(t, normalize(cgroup), members, self.app_limit_bytes)

    def _started(self, pid: int) -> float | None:
        """Process start as wall-clock seconds (from /proc/PID/stat and the boot time)."""
        try:
            stat = (self.proc.root / str(pid) / "stat").read_text()
            uptime_line = (self.proc.root / "stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[-1].split()
        btime = next(
            (int(line.split()[1]) for line in uptime_line.splitlines() if line.startswith("btime")),
            None,
        )
        if btime is None or len(fields) < 20:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        return btime + int(fields[19]) / ticks

    def target_in(self, cgroup: str) -> Target | None:
        """The target now running in ``cgroup`` (a fresh look at ``/proc``), if any."""
        return next((t for t in self.targets() if t.cgroup == normalize(cgroup)), None)

    def target_for_cgroup(self, cgroup: str | None) -> Target | None:
        if cgroup is None:
            return None
        return self._by_cgroup.get(normalize(cgroup))
