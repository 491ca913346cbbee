"""The kill record: one process the kernel OOM killer killed, as its log shows it.

Its own module, beside :mod:`sentinel.model` (which re-exports it): ``sentinel parse``
builds this value only, not the model's others (8 ms of its start-up each way).
Frozen, typed, free of I/O, like everything in the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

TaskRow = Mapping[str, int | str]
"""One row of the kernel's task table: every column the kernel printed, by its header name."""


@dataclass(frozen=True, slots=True)
class KillRecord:
    """One process killed by the kernel OOM killer, as the kernel log shows it.

    Every field but ``pid`` is optional: a field the log does not show is ``None`` and is
    left out of :meth:`to_dict`. Nothing is guessed. Sizes are in KiB, as the kernel
    prints them; task-table columns keep the kernel's own units (pages or bytes).
    """

    pid: int
    comm: str | None = None
    total_vm_kb: int | None = None
    anon_rss_kb: int | None = None
    file_rss_kb: int | None = None
    shmem_rss_kb: int | None = None
    uid: int | None = None
    pgtables_kb: int | None = None
    oom_score_adj: int | None = None
    constraint: str | None = None
    global_: bool | None = None
    oom_memcg: str | None = None
    task_memcg: str | None = None
    invoker: str | None = None
    invoker_pid: int | None = None
    invoker_oom_score_adj: int | None = None
    gfp_mask: str | None = None
    order: int | None = None
    kernel_timestamp: float | None = None
    time: str | None = None
    """ISO 8601 wall-clock time of the kill line, where the source gives a full date."""
    log_time: str | None = None
    """The wall-clock stamp exactly as the log printed it (syslog omits the year)."""
    host: str | None = None
    kmsg_seq: int | None = None
    """Sequence number of the kill line in /dev/kmsg, where read from there."""
    tasks: tuple[TaskRow, ...] = ()
    mem_info: Mapping[str, int] = field(default_factory=dict)
    runtime: str | None = None
    container_id: str | None = None
    pod_uid: str | None = None
    qos_class: str | None = None
    systemd_unit: str | None = None

    @property
    def scope(self) -> str | None:
        """``"host"`` when the whole machine ran out, ``"cgroup"`` for a memcg limit."""
        if self.global_ is None:
            return None
        return "host" if self.global_ else "cgroup"

    @property
    def rss_kb(self) -> int | None:
        """Resident memory the kill freed: anon + file + shmem, as far as printed."""
        parts = [self.anon_rss_kb, self.file_rss_kb, self.shmem_rss_kb]
        if all(p is None for p in parts):
            return None
        return sum(p for p in parts if p is not None)

    def to_dict(self) -> dict[str, Any]:
        """The record under its public snake_case keys; absent values are left out."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name in ("tasks", "mem_info") and not value):
                continue
            key = "global" if f.name == "global_" else f.name
            if f.name == "tasks":
                value = [dict(row) for row in value]
            elif f.name == "mem_info":
                value = dict(value)
            out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KillRecord:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        kwargs = dict(data)
        if "global" in kwargs:
            kwargs["global_"] = kwargs.pop("global")
        if "tasks" in kwargs:
            kwargs["tasks"] = tuple(kwargs["tasks"])
        return cls(**kwargs)
