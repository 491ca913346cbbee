"""The values that flow through sentinel: frozen, typed, and free of I/O.

A value here is what the rest of the program reads, stores and reports. Parsers make
them, stores keep them, notifiers and the CLI render them. Nothing in this module reads
a file, a clock or the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from sentinel.record import KillRecord, TaskRow

__all__ = [
    "ActionResult",
    "HostMemorySample",
    "KillRecord",
    "MemoryPressure",
    "MemorySample",
    "ProcessSample",
    "Target",
    "TaskRow",
]


# --- Memory samples (cgroup, host, process): what the sources read at every tick. ---


@dataclass(frozen=True, slots=True)
class MemoryPressure:
    """Pressure stall information (PSI) for memory, as in ``memory.pressure``.

    ``some``: share of wall time in which at least one task stalled on memory; ``full``:
    in which all non-idle tasks stalled at once. Averages are percentages over 10, 60 and
    300 s; totals are cumulative stall time in microseconds.
    """

    some_avg10: float
    some_avg60: float
    some_avg300: float
    some_total_us: int
    full_avg10: float
    full_avg60: float
    full_avg300: float
    full_total_us: int


@dataclass(frozen=True, slots=True)
class MemorySample:
    """One reading of one memory cgroup (v1 or v2), taken at monotonic time ``t`` (s).

    Sizes are bytes. A limit of ``None`` means unlimited (v1's 9223372036854771712, v2's
    ``max``). ``effective_limit_bytes`` is the tightest limit on the path from the cgroup to
    the root and ``effective_limit_cgroup`` the cgroup that sets it (the innermost one when
    several share the value). ``None`` where the cgroup version does not have the figure.
    """

    t: float
    cgroup: str
    """The cgroup path as ``/proc/PID/cgroup`` shows it (``/`` is the hierarchy root)."""
    usage_bytes: int
    """v1 ``memory.usage_in_bytes``, v2 ``memory.current``: what the limit is checked against."""
    working_set_bytes: int
    """Usage minus inactive file cache, floored at 0 (what kubelet evicts and reports on)."""
    anon_bytes: int | None
    """Anonymous memory: v1 ``total_rss``, v2 ``anon``."""
    cache_bytes: int | None
    """Page cache: v1 ``total_cache``, v2 ``file``."""
    limit_bytes: int | None
    effective_limit_bytes: int | None
    effective_limit_cgroup: str | None
    limit_hits: int | None
    """Times usage hit the limit: v1 ``memory.failcnt``, v2 ``memory.events`` ``max``."""
    oom: int | None
    """v2 ``memory.events`` ``oom`` (the limit was hit and reclaim failed); v1 has no count."""
    oom_kill: int | None
    """Processes killed by the OOM killer in this cgroup: v1 ``memory.oom_control``
    ``oom_kill`` (this cgroup only, kernel 4.13+), v2 ``memory.events`` (with descendants)."""
    pressure: MemoryPressure | None = None

    @property
    def headroom_bytes(self) -> int | None:
        """Bytes left before the effective limit; ``None`` when nothing limits the cgroup."""
        if self.effective_limit_bytes is None:
            return None
        return self.effective_limit_bytes - self.usage_bytes


@dataclass(frozen=True, slots=True)
class HostMemorySample:
    """The machine as a whole, from ``/proc/meminfo``, ``/proc/vmstat`` and PSI (bytes)."""

    t: float
    total_bytes: int
    available_bytes: int
    """``MemAvailable``: what can be allocated without swapping; what the host forecast uses."""
    free_bytes: int
    swap_total_bytes: int
    swap_free_bytes: int
    oom_kill: int | None
    """``/proc/vmstat`` ``oom_kill``: every OOM kill since boot, host and cgroup (4.13+)."""
    pressure: MemoryPressure | None = None


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One process's memory and OOM-killer standing, from ``/proc/PID`` (sizes in bytes).

    Memory fields are ``None`` for kernel threads, which have no address space.
    """

    t: float
    pid: int
    comm: str
    uid: int | None
    rss_bytes: int | None
    anon_bytes: int | None
    file_bytes: int | None
    shmem_bytes: int | None
    swap_bytes: int | None
    peak_rss_bytes: int | None
    oom_score: int
    """The kernel's current badness score (0 to 2000); the highest is killed first."""
    oom_score_adj: int
    """-1000 (never kill) to 1000 (kill first)."""
    cgroup: str | None
    """The process's memory cgroup path (v1 memory line, else the v2 ``0::`` line)."""


# --- Targets: what a policy can act on. ---


@dataclass(frozen=True, slots=True)
class Target:
    """One thing sentinel watches and a policy may act on: a container or a process.

    ``id`` is stable across restarts of the same container (Docker's full container id; a
    process is ``pid:N``). ``started_at`` is when the current instance started, on the
    caller's clock (wall-clock seconds); ``None`` when unknown. ``is_self`` marks sentinel's
    own container or process: policies never select it.
    """

    id: str
    name: str
    runtime: str
    """``"docker"`` for a Docker container, ``"kubernetes"`` for a container of a pod (by its
    cgroup, ``--mode kubernetes``), ``"process"`` for a plain process (sidecar mode, or a
    host process the kernel killed outside any known container)."""
    image: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    started_at: float | None = None
    is_self: bool = False
    pid: int | None = None
    """The container's init process (or the process itself) on this host, when known."""
    cgroup: str | None = None
    """The memory cgroup path, as ``/proc/PID/cgroup`` shows it, when known."""
    node: str | None = None
    """Kubernetes: the node; the rest name the container of a pod (``labels`` are then the
    pod's labels). ``owner_kind``/``owner_name``: the pod's controller (a ReplicaSet's pod
    is its Deployment's)."""
    namespace: str | None = None
    pod: str | None = None
    pod_uid: str | None = None
    container: str | None = None
    owner_kind: str | None = None
    owner_name: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Target:
        """The target :meth:`to_dict` wrote (unknown keys ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["labels"] = dict(values.get("labels") or {})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Identity for logs and evidence; absent values are left out."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "runtime": self.runtime}
        if self.image is not None:
            out["image"] = self.image
        if self.labels:
            out["labels"] = dict(self.labels)
        for key in KUBE_KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        for key in ("started_at", "pid", "cgroup"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.is_self:
            out["is_self"] = True
        return out


KUBE_KEYS = ("node", "namespace", "pod", "pod_uid", "container", "owner_kind", "owner_name")
"""What names a Kubernetes target, in records, messages and payloads whenever known."""


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What came of one action on one target. ``detail`` is the evidence (pids written,
    exit codes, signal sent, hook output); ``error`` says what went wrong when ``ok`` is
    false."""

    action: str
    """``restart``, ``oom_score_adj``, ``signal``, ``run`` (or ``notify``, ``escalate``)."""
    target_id: str
    ok: bool
    dry_run: bool = False
    detail: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    outcome: str = "done"
    """``done``; ``dry_run`` (decided and logged, nothing changed); ``dropped`` (the
    re-check just before acting found the decision no longer holds); ``refused`` (a
    safety rail: sentinel itself, its parents, the host's init); ``failed`` (``error``)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the action log line and the state file."""
        out: dict[str, Any] = {
            "action": self.action,
            "target_id": self.target_id,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "outcome": self.outcome,
            "detail": dict(self.detail),
        }
        if self.error is not None:
            out["error"] = self.error
        return out
