"""Sidecar mode: the targets are the other processes of sentinel's own PID namespace.

Beside an app with a shared PID namespace (Docker ``--pid=container:APP``, Kubernetes
``shareProcessNamespace: true``), sentinel sees the app's processes. Each memory cgroup
holding visible processes (other than sentinel's own processes) is one target, named after
its main process (the lowest pid in it); Kubernetes' ``pause`` is skipped. The target id is
stable across the app's restarts (its name and cgroup), so cooldowns and restart budgets
hold; a restart is SIGTERM to that main process, and the app's restart policy brings it
back.
"""

from __future__ import annotations

import contextlib
import os

from sentinel.errors import SourceError
from sentinel.model import Target
from sentinel.sources.cgroup import normalize
from sentinel.sources.procfs import Proc, ProcessGoneError

SKIP_COMMS = frozenset({"pause"})


class SidecarTargets:
    def __init__(self, proc: Proc, *, self_pid: int) -> None:
        self.proc = proc
        self.self_pid = self_pid
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

    def targets(self) -> list[Target]:
        mine = self._mine()
        own_cgroup = None
        with contextlib.suppress(ProcessGoneError, SourceError):
            own_cgroup = self.proc.cgroup(self.self_pid).memory_cgroup
        groups: dict[str, list[tuple[int, str]]] = {}
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
            groups.setdefault(normalize(cgroup), []).append((pid, status.name))
        found: dict[str, Target] = {}
        for cgroup, members in groups.items():
            if own_cgroup is not None and normalize(own_cgroup) == cgroup and len(groups) > 1:
                continue  # sentinel's own cgroup, when the app has one of its own
            pid, comm = min(members)
            started = self._started(pid)
            found[cgroup] = Target(
                id=f"process:{comm}:{cgroup}",
                name=comm,
                runtime="process",
                pid=pid,
                cgroup=cgroup,
                started_at=started,
            )
        self._by_cgroup = found
        return list(found.values())

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

    def target_for_cgroup(self, cgroup: str | None) -> Target | None:
        if cgroup is None:
            return None
        return self._by_cgroup.get(normalize(cgroup))
