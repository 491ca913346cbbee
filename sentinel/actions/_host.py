"""This machine as the actions see it: where ``/proc`` and the cgroups are, who sentinel is,
and the safety rail that keeps every action off sentinel, its parents and the host's init.

Processes are signalled through a pidfd (``pidfd_open``, Linux 5.3): the process checked is
the process signalled and waited for, even if its pid is reused meanwhile.
"""

from __future__ import annotations

import errno
import os
import re
import select
import signal
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from sentinel.errors import SentinelError
from sentinel.sources.procfs import Proc, ProcessGoneError

INIT_PID_NS = 0xEFFFFFFC
"""Inode of the kernel's initial pid namespace (``PROC_PID_INIT_INO``): the host's."""

_NS_LINK = re.compile(r"pid:\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class Host:
    """Where the actions read and write. Tests inject a fake ``/proc`` tree, a cgroup root
    and the pid that counts as sentinel itself."""

    proc: Path = Path("/proc")
    cgroup: Path = Path("/sys/fs/cgroup")
    self_pid: int = field(default_factory=os.getpid)
    host_pid_ns: int = INIT_PID_NS
    """The pid namespace whose pid 1 must never be acted on."""

    def reader(self) -> Proc:
        return Proc(self.proc)


def ancestors(host: Host, pid: int) -> list[int]:
    """The parent chain of ``pid`` (its parent first), as far as ``/proc`` shows it."""
    chain: list[int] = []
    proc = host.reader()
    seen = {pid}
    while True:
        try:
            ppid = proc.status(pid).ppid
        except ProcessGoneError:
            return chain
        if ppid <= 0 or ppid in seen:
            return chain
        chain.append(ppid)
        seen.add(ppid)
        pid = ppid


def pid_namespace(host: Host, pid: int) -> int | None:
    """The inode of the pid namespace of ``pid``, or ``None`` when it cannot be read."""
    try:
        link = os.readlink(host.proc / str(pid) / "ns" / "pid")
    except OSError:
        return None
    m = _NS_LINK.fullmatch(link)
    return int(m.group(1)) if m else None


def refusal(host: Host, pid: int, parents: Collection[int] | None = None) -> str | None:
    """Why ``pid`` must not be acted on, or ``None`` when it may be.

    Refused: sentinel itself, any process of its parent chain, and pid 1 when it is the
    host's init (its pid namespace is the host's) or when its namespace cannot be read.
    Pid 1 of another namespace (the app in sidecar mode) is allowed. ``parents``: sentinel's
    parent chain, when the caller read it once for many pids.
    """
    if pid <= 0:
        return f"pid {pid} is not a process"
    if pid == host.self_pid:
        return f"pid {pid} is sentinel itself"
    if pid in (ancestors(host, host.self_pid) if parents is None else parents):
        return f"pid {pid} is an ancestor of sentinel (pid {host.self_pid})"
    if pid == 1:
        ns = pid_namespace(host, 1)
        if ns is None:
            return "pid 1: its pid namespace cannot be read, so it may be the host's init"
        if ns == host.host_pid_ns:
            return "pid 1 is the host's init"
    return None


INIT_WRAPPERS = frozenset({"docker-init", "tini", "dumb-init", "catatonit"})
"""Minimal inits (``docker run --init``, Kubernetes images' ``tini``): they take SIGTERM
(a handler, ``sigwait`` or a signalfd) and forward it to the app they run."""
INIT_FIXES = (
    "run the app with `docker run --init` (its init forwards the signal), give it a SIGTERM"
    " handler, or share a pause container's PID namespace (`--pid container:pause`)"
)


def init_signal_problem(host: Host, pid: int) -> str | None:
    """Why SIGTERM from sentinel cannot stop ``pid``, or ``None`` when it can.

    The kernel delivers a signal sent from inside a PID namespace to that namespace's init
    (PID 1) only when init has a handler for it, and never SIGKILL: ``kill`` succeeds and
    nothing happens. That is the sidecar's case when the app itself is PID 1 of the
    namespace sentinel shares.
    """
    if pid != 1:
        return None
    own = pid_namespace(host, host.self_pid)
    if own is None or own != pid_namespace(host, 1):
        return None
    proc = host.reader()
    try:
        status = proc.status(1)
        if status.catches(signal.SIGTERM) or status.name in INIT_WRAPPERS:
            return None
        # sigtimedwait() unblocks the signals it waits for while it sleeps: SigBlk does not
        # show them, the kernel still delivers them.
        if proc.wchan(1).startswith("do_sigtimedwait"):
            return None
    except SentinelError:
        return None  # gone or unreadable: the action itself says so
    return (
        f"PID 1 ({status.name}) has no SIGTERM handler: the kernel drops signals sent to a"
        " PID namespace's init from inside it, SIGKILL included, so sentinel cannot stop it;"
        f" {INIT_FIXES}"
    )


class Refused(SentinelError):
    """A safety rail refused the action (sentinel itself, its parents, the host's init)."""


def open_process(host: Host, pid: int) -> int:
    """A pidfd for ``pid`` once the safety rail allows it.

    Raises :class:`Refused`, or :class:`ProcessGoneError` when there is no such process.
    The pidfd is opened first, so the process checked is the one later signalled.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError as e:
        raise ProcessGoneError(f"process {pid} is gone") from e
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise Refused(f"pid {pid} is not a process") from e
        raise
    try:
        reason = refusal(host, pid)
    except BaseException:
        os.close(fd)
        raise
    if reason is not None:
        os.close(fd)
        raise Refused(reason)
    return fd


def wait_exit(pidfd: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the process to exit; whether it did."""
    poll = select.poll()
    poll.register(pidfd, select.POLLIN)
    return bool(poll.poll(max(0, int(timeout * 1000))))
