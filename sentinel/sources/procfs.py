"""The host and its processes, from ``/proc``: memory totals, OOM kills, PSI, per-process memory.

Pure ``parse_*`` functions (text in, values out) and a thin :class:`Proc` reader whose
root is injectable, so tests run it on the checked-in tree under ``tests/data/proc``.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sentinel.errors import SourceError
from sentinel.model import HostMemorySample, MemoryPressure, ProcessSample
from sentinel.sources._fd import field, read_bytes

Clock = Callable[[], float]
T = TypeVar("T")
KIB = 1024


class ProcessGoneError(SourceError):
    """The process exited before (or while) it was read."""


# --- pure parsers ---------------------------------------------------------------------


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as ``{key: bytes}`` (``kB`` values scaled; unit-less ones kept)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts:
            raise ValueError(f"meminfo line without a value: {line!r}")
        value = int(parts[0])
        out[key] = value * KIB if len(parts) > 1 and parts[1] == "kB" else value
    return out


def parse_vmstat_oom_kill(text: str) -> int | None:
    """The ``oom_kill`` counter of ``/proc/vmstat`` (``None`` before kernel 4.13)."""
    return field(text.encode(), b"oom_kill ")


def parse_pressure(text: str) -> MemoryPressure:
    """A PSI file (``memory.pressure``, ``/proc/pressure/memory``)::

    some avg10=0.00 avg60=0.00 avg300=0.00 total=875
    full avg10=0.00 avg60=0.00 avg300=0.00 total=604
    """
    rows: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        rows[kind] = dict(item.split("=", 1) for item in rest.split())
    try:
        some, full = rows["some"], rows["full"]
        return MemoryPressure(
            some_avg10=float(some["avg10"]),
            some_avg60=float(some["avg60"]),
            some_avg300=float(some["avg300"]),
            some_total_us=int(some["total"]),
            full_avg10=float(full["avg10"]),
            full_avg60=float(full["avg60"]),
            full_avg300=float(full["avg300"]),
            full_total_us=int(full["total"]),
        )
    except KeyError as e:
        raise ValueError(f"pressure file lacks {e.args[0]!r}: {text!r}") from None


@dataclass(frozen=True, slots=True)
class ProcStatus:
    """The fields of ``/proc/PID/status`` that sentinel uses (sizes in bytes).

    Memory fields are ``None`` for kernel threads (no ``Vm*`` lines).
    """

    name: str
    pid: int
    ppid: int
    uid: int
    state: str
    threads: int
    rss_bytes: int | None
    anon_bytes: int | None
    file_bytes: int | None
    shmem_bytes: int | None
    swap_bytes: int | None
    peak_rss_bytes: int | None
    signals_caught: int = 0
    """``SigCgt``: bit ``n - 1`` set when the process has a handler for signal ``n``."""
    signals_ignored: int = 0
    """``SigIgn``: bit ``n - 1`` set when the process ignores signal ``n``."""
    signals_blocked: int = 0
    """``SigBlk``: bit ``n - 1`` set when the (main thread of the) process blocks signal
    ``n``, e.g. to take it with ``sigwait`` as tini does."""

    def catches(self, signum: int) -> bool:
        """Whether the process takes ``signum`` itself: a handler, or blocked to be waited
        for (``sigwait``). The kernel delivers such a signal even to a namespace's init."""
        bit = 1 << (signum - 1)
        return bool((self.signals_caught | self.signals_blocked) & bit)


def parse_proc_status(text: str) -> ProcStatus:
    """``/proc/PID/status``. The name is unescaped as the kernel escapes it (``\\n``, ``\\\\``)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if sep:
            values[key] = rest.strip()

    def kib(key: str) -> int | None:
        raw = values.get(key)
        return None if raw is None else int(raw.split()[0]) * KIB

    try:
        return ProcStatus(
            name=values["Name"].replace("\\n", "\n").replace("\\\\", "\\"),
            pid=int(values["Pid"]),
            ppid=int(values["PPid"]),
            uid=int(values["Uid"].split()[0]),
            state=values["State"].split()[0],
            threads=int(values["Threads"]),
            rss_bytes=kib("VmRSS"),
            anon_bytes=kib("RssAnon"),
            file_bytes=kib("RssFile"),
            shmem_bytes=kib("RssShmem"),
            swap_bytes=kib("VmSwap"),
            peak_rss_bytes=kib("VmHWM"),
            signals_caught=int(values.get("SigCgt", "0"), 16),
            signals_ignored=int(values.get("SigIgn", "0"), 16),
            signals_blocked=int(values.get("SigBlk", "0"), 16),
        )
    except KeyError as e:
        raise ValueError(f"/proc/PID/status lacks {e.args[0]!r}") from None


@dataclass(frozen=True, slots=True)
class ProcCgroup:
    """Where a process sits: its v1 memory cgroup and its v2 (unified) cgroup, if any."""

    memory: str | None
    """Path in the v1 memory hierarchy (``N:memory:/path``; controllers may be combined)."""
    unified: str | None
    """Path in the v2 hierarchy (``0::/path``)."""

    @property
    def memory_cgroup(self) -> str | None:
        """The cgroup whose memory limit applies: v1's memory line, else the v2 path."""
        return self.memory if self.memory is not None else self.unified


def parse_proc_cgroup(text: str) -> ProcCgroup:
    """``/proc/PID/cgroup``: ``hierarchy-ID:controller-list:path`` lines (v1 and v2)."""
    memory: str | None = None
    unified: str | None = None
    for line in text.splitlines():
        if not line:
            continue
        parts = line.split(":", 2)
        if len(parts) != 3:
            raise ValueError(f"not a /proc/PID/cgroup line: {line!r}")
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            unified = path
        elif "memory" in controllers.split(","):
            memory = path
    return ProcCgroup(memory=memory, unified=unified)


def host_sample(
    t: float, meminfo: dict[str, int], oom_kill: int | None, pressure: MemoryPressure | None
) -> HostMemorySample:
    """Combine parsed ``/proc`` files into one host sample (pure)."""
    try:
        return HostMemorySample(
            t=t,
            total_bytes=meminfo["MemTotal"],
            available_bytes=meminfo["MemAvailable"],
            free_bytes=meminfo["MemFree"],
            swap_total_bytes=meminfo.get("SwapTotal", 0),
            swap_free_bytes=meminfo.get("SwapFree", 0),
            oom_kill=oom_kill,
            pressure=pressure,
        )
    except KeyError as e:
        raise ValueError(f"/proc/meminfo lacks {e.args[0]!r} (kernel older than 3.14?)") from None


# --- reader ---------------------------------------------------------------------------


class Proc:
    """Reads ``/proc`` (``root`` is injectable; ``clock`` stamps samples, monotonic seconds)."""

    def __init__(self, root: Path = Path("/proc"), *, clock: Clock = time.monotonic) -> None:
        self.root = root
        self.clock = clock
        self._prefix = str(root) + "/"

    def _text(self, rel: str) -> str:
        path = self._prefix + rel
        try:
            return read_bytes(path).decode("utf-8", "replace")
        except OSError as e:
            raise SourceError(f"cannot read {path}: {e.strerror}") from e

    def host(self) -> HostMemorySample:
        """``/proc/meminfo``, ``/proc/vmstat`` ``oom_kill`` and ``/proc/pressure/memory``."""
        t = self.clock()
        meminfo = self._text("meminfo")
        vmstat = self._text("vmstat")
        pressure: MemoryPressure | None = None
        if os.path.exists(self._prefix + "pressure/memory"):
            pressure = self._parsed("pressure/memory", parse_pressure)
        try:
            return host_sample(t, parse_meminfo(meminfo), parse_vmstat_oom_kill(vmstat), pressure)
        except ValueError as e:
            raise SourceError(f"{self._prefix}meminfo: {e}") from e

    def _parsed(self, rel: str, parse: Callable[[str], T]) -> T:
        text = self._text(rel)
        try:
            return parse(text)
        except ValueError as e:
            raise SourceError(f"{self._prefix}{rel}: {e}") from e

    def pids(self) -> list[int]:
        """The ids of all processes (not threads) now in ``/proc``."""
        return [int(name) for name in os.listdir(self.root) if name.isdigit()]

    def cgroup(self, pid: int) -> ProcCgroup:
        return self._process_file(pid, "cgroup", parse_proc_cgroup)

    def status(self, pid: int) -> ProcStatus:
        return self._process_file(pid, "status", parse_proc_status)

    def wchan(self, pid: int) -> str:
        """The kernel function ``pid`` sleeps in (``/proc/PID/wchan``; ``0`` when running
        or not readable)."""
        return self._process_file(pid, "wchan", str.strip)

    def oom_score(self, pid: int) -> int:
        return self._process_file(pid, "oom_score", int)

    def oom_score_adj(self, pid: int) -> int:
        return self._process_file(pid, "oom_score_adj", int)

    def process(self, pid: int) -> ProcessSample:
        """Memory, OOM standing and memory cgroup of one process.

        Raises :class:`ProcessGoneError` when the process has exited.
        """
        t = self.clock()
        status = self.status(pid)
        cgroup = self.cgroup(pid)
        return ProcessSample(
            t=t,
            pid=pid,
            comm=status.name,
            uid=status.uid,
            rss_bytes=status.rss_bytes,
            anon_bytes=status.anon_bytes,
            file_bytes=status.file_bytes,
            shmem_bytes=status.shmem_bytes,
            swap_bytes=status.swap_bytes,
            peak_rss_bytes=status.peak_rss_bytes,
            oom_score=self.oom_score(pid),
            oom_score_adj=self.oom_score_adj(pid),
            cgroup=cgroup.memory_cgroup,
        )

    def _process_file(self, pid: int, name: str, parse: Callable[[str], T]) -> T:
        path = f"{self._prefix}{pid}/{name}"
        try:
            text = read_bytes(path).decode("utf-8", "replace")
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ESRCH):
                raise ProcessGoneError(f"process {pid} is gone ({path})") from e
            raise SourceError(f"cannot read {path}: {e.strerror}") from e
        try:
            return parse(text)
        except ValueError as e:
            raise SourceError(f"{path}: {e}") from e
