"""Kubernetes mode (``sentinel run --mode kubernetes``, the DaemonSet): the containers of the
pods on this node, named.

The API says which pods run here (one list+watch of ``spec.nodeName=NODE``, kept in a
:class:`~sentinel.kube.pods.PodIndex`); the cgroup tree says where their containers are
(kubelet names each container's cgroup after its pod uid and container id, whatever the
cgroup driver: :func:`~sentinel.kube.paths.parse_cgroup`). A container is a target when
both agree: memory from its cgroup files, names from the API. A kernel kill is named the
same way from the record's cgroup path, also for a pod deleted a moment ago.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from sentinel.errors import SentinelError, SourceError
from sentinel.kube.paths import KubeCgroup, parse_cgroup
from sentinel.kube.pods import PodIndex, PodRef
from sentinel.model import Target
from sentinel.sources.cgroup import CgroupFS

log = logging.getLogger(__name__)

RELIST_PAUSE_S = 1.0
"""After the pod watch fails, wait this long (doubling to 30 s) before listing again."""


class PodSource(Protocol):
    """What the node needs of the API (:class:`sentinel.clients.kubernetes.KubeClient`)."""

    node: str

    def list_pods(self) -> tuple[list[dict[str, Any]], str]: ...

    def watch_pods(
        self, resource_version: str, stop: threading.Event
    ) -> Iterator[tuple[str, dict[str, Any]]]: ...


class KubeNode:
    """The pods of this node and the containers of them in the cgroup tree."""

    def __init__(
        self,
        api: PodSource,
        fs: CgroupFS,
        *,
        proc: Path = Path("/proc"),
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.api = api
        self.on_change = on_change
        """Called when the pods changed (a container may have come or gone)."""
        self.node = api.node
        self.fs = fs
        self.proc = proc
        self.clock = clock
        self.index = PodIndex(node=api.node)
        self.synced = threading.Event()
        """Set once the first list is in: until then no container can be named."""
        self.error: str | None = None
        self._limit_checked: set[str] = set()

    # -- the API --------------------------------------------------------------------------

    def follow(self, stop: threading.Event) -> None:
        """List the node's pods, then watch them until ``stop`` (resuming after a dropped
        watch; listing again after a failure). Runs on a thread of its own."""
        pause = RELIST_PAUSE_S
        while not stop.is_set():
            try:
                pods, version = self.api.list_pods()
                self.index.replace(pods, self.clock())
                self.synced.set()
                self._changed()
                self.error = None
                pause = RELIST_PAUSE_S
                for kind, obj in self.api.watch_pods(version, stop):
                    now = self.clock()
                    if kind == "RESYNC":
                        self.index.replace(obj.get("items") or [], now)
                    else:
                        self.index.apply(kind, obj, now)
                    self.index.expire(now)
                    self._changed()
            except SentinelError as e:
                if self.error != str(e):
                    log.warning("kubernetes: %s (listing again in %.0fs)", e, pause)
                self.error = str(e)
                if stop.wait(pause):
                    return
                pause = min(pause * 2, 30.0)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- the cgroup tree ------------------------------------------------------------------

    def targets(self) -> list[Target]:
        """Every running container of this node's pods that has a memory cgroup here."""
        out: list[Target] = []
        now = self.clock()
        try:
            cgroups = list(self.fs.walk("/"))
        except SourceError as e:
            log.warning("cgroups: %s", e)
            return out
        for cgroup in cgroups:
            found = parse_cgroup(cgroup)
            if found is None or not found.is_container:
                continue
            ref = self.index.lookup(found.container_id, found.pod_uid, now=now)
            if ref is None or ref.container is None or ref.deleted:
                continue
            pid = self._main_pid(cgroup)
            if pid is None:
                continue  # no process: the pause container's sibling that exited, a stopped one
            self._check_limit(ref, cgroup)
            out.append(self._target(ref, found, cgroup, pid))
        return out

    def _check_limit(self, ref: PodRef, cgroup: str) -> None:
        """The cgroup's limit is what the kernel enforces; say so once when the pod spec
        says otherwise (a resize not applied yet, a runtime that ignores it)."""
        if ref.memory_limit is None or ref.container_id in self._limit_checked:
            return
        self._limit_checked.add(ref.container_id or "")
        try:
            limit = self.fs.limit(cgroup)
        except SourceError:
            return
        if limit is not None and abs(limit - ref.memory_limit) > 4096:
            log.warning(
                "kubernetes: %s/%s container %s: the cgroup's memory limit is %d bytes, the "
                "pod spec says %d: forecasting against the cgroup's",
                ref.namespace,
                ref.pod,
                ref.container,
                limit,
                ref.memory_limit,
            )

    def target_for(self, cgroup: str | None, container_id: str | None = None) -> Target | None:
        """The pod's container a kill record's cgroup (or container id) names, with the
        pod-level answer when only the pod is known; ``None`` outside any pod."""
        found = parse_cgroup(cgroup) if cgroup else None
        uid = found.pod_uid if found is not None else None
        cid = container_id or (found.container_id if found is not None else None)
        if uid is None and cid is None:
            return None
        ref = self.index.lookup(cid, uid, now=self.clock())
        if ref is None:
            return None
        return self._target(ref, found, cgroup, None)

    def node_target(self) -> Target:
        """The node itself: what a kill outside any pod is about (an Event on the Node)."""
        return Target(id=f"node:{self.node}", name=self.node, runtime="kubernetes", node=self.node)

    def _target(
        self, ref: PodRef, found: KubeCgroup | None, cgroup: str | None, pid: int | None
    ) -> Target:
        container = ref.container
        cid = ref.container_id or (found.container_id if found is not None else None)
        name = f"{ref.namespace}/{ref.pod}" + (f"/{container}" if container else "")
        return Target(
            id=cid or f"pod:{ref.pod_uid}",
            name=name,
            runtime="kubernetes",
            labels=dict(ref.labels),
            started_at=self._started_at(pid) if pid is not None else None,
            pid=pid,
            cgroup=cgroup,
            node=ref.node or self.node,
            namespace=ref.namespace,
            pod=ref.pod,
            pod_uid=ref.pod_uid,
            container=container,
            owner_kind=ref.owner_kind,
            owner_name=ref.owner_name,
        )

    def _main_pid(self, cgroup: str) -> int | None:
        """The container's main process on this host: the one whose parent is outside the
        cgroup (the runtime's shim started it), the lowest pid when several are."""
        try:
            text = (self.fs.path(cgroup) / "cgroup.procs").read_text()
        except OSError:
            return None
        pids = {int(p) for p in text.split()}
        if not pids:
            return None
        roots = []
        for pid in pids:
            ppid = _ppid(self.proc, pid)
            if ppid is not None and ppid not in pids:
                roots.append(pid)
        return min(roots) if roots else min(pids)

    def _started_at(self, pid: int) -> float | None:
        """When the process started, in wall-clock seconds (``/proc/PID/stat`` field 22
        after the boot time): a new value means the container was restarted."""
        return process_start(self.proc, pid)


def _stat_field(proc: Path, pid: int, index: int) -> int | None:
    """Field ``index`` (0 = the state, after the command's parentheses) of
    ``/proc/PID/stat``, or ``None`` when the process is gone or the field unreadable."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[index])
    except (IndexError, ValueError):
        return None


def _ppid(proc: Path, pid: int) -> int | None:
    return _stat_field(proc, pid, 1)


_BOOT: dict[str, float] = {}


def process_start(proc: Path, pid: int) -> float | None:
    """When ``pid`` started, in wall-clock seconds (``starttime`` after ``btime``)."""
    ticks = _stat_field(proc, pid, 19)
    if ticks is None:
        return None
    key = str(proc)
    if key not in _BOOT:
        try:
            for line in (proc / "stat").read_text().splitlines():
                if line.startswith("btime "):
                    _BOOT[key] = float(line.split()[1])
                    break
        except OSError:
            return None
    boot = _BOOT.get(key)
    if boot is None:
        return None
    return round(boot + ticks / os.sysconf("SC_CLK_TCK"), 2)


def describe(target: Target) -> Mapping[str, str]:
    """The Kubernetes names of a target, for messages (only those known)."""
    keys = ("node", "namespace", "pod", "container", "owner_kind", "owner_name")
    return {k: str(getattr(target, k)) for k in keys if getattr(target, k) is not None}
