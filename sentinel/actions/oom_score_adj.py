"""``oom_score_adj``: how willing the kernel is to kill the target's processes (-1000 never,
1000 first), written to ``/proc/PID/oom_score_adj`` of every one of them and read back.

Every process of a container is every pid in its memory cgroup's ``cgroup.procs`` (the
cgroup is found from ``/proc/<init pid>/cgroup``, v1 or v2); every process of a process
target is the process and its descendants. A process started later, or a container
restarted, does not inherit the value from sentinel: the daemon calls :func:`reapply` every
sample tick, which writes only where the value differs.

Sentinel itself, its parent chain and the host's init are skipped (and reported).
``/proc`` and the cgroup root are injectable (:class:`~._host.Host`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from typing import Any

from sentinel.actions._host import Host, ancestors, refusal
from sentinel.actions._result import DockerControl, done, failed, would
from sentinel.clients.docker import ContainerGone
from sentinel.errors import SentinelError, SourceError
from sentinel.model import ActionResult, Target
from sentinel.sources.cgroup import CgroupFS
from sentinel.sources.procfs import ProcessGoneError

ACTION = "oom_score_adj"


class _NoProcesses(SentinelError):
    """The target has no process to write to (a stopped container, no pid)."""


def apply(
    target: Target,
    value: int,
    *,
    dry_run: bool,
    host: Host | None = None,
    docker: DockerControl | None = None,
) -> ActionResult:
    """Write ``value`` to every process of ``target`` and read each back."""
    return _run(target, value, dry_run=dry_run, host=host or Host(), docker=docker, every=True)


def reapply(
    target: Target,
    value: int,
    *,
    dry_run: bool = False,
    host: Host | None = None,
    docker: DockerControl | None = None,
) -> ActionResult:
    """Like :func:`apply`, but writes only to processes whose value differs (new processes,
    a restarted container). ``detail["changed"]`` lists the pids written."""
    return _run(target, value, dry_run=dry_run, host=host or Host(), docker=docker, every=False)


def processes(
    target: Target, *, host: Host | None = None, docker: DockerControl | None = None
) -> tuple[list[int], str | None]:
    """The pids of every process of ``target`` now, and the cgroup they were read from
    (``None`` for a process target). With ``docker``, a container's init pid is re-read
    (it changes on every restart); else ``target.pid`` is used.

    Raises :class:`~sentinel.errors.SentinelError` (``ContainerGone`` among them) when they
    cannot be found.
    """
    host = host or Host()
    if target.runtime == "docker":
        return _container_pids(target, host, docker)
    if target.pid is None or target.pid <= 0:
        raise _NoProcesses("the target has no pid")
    return [target.pid, *_descendants(host, target.pid)], None


def _container_pids(
    target: Target, host: Host, docker: DockerControl | None
) -> tuple[list[int], str | None]:
    pid = target.pid
    if docker is not None:
        info = docker.inspect(target.id)
        if not info.running or info.pid <= 0:
            raise _NoProcesses(f"container is {info.state}")
        pid = info.pid
    fs = CgroupFS(host.cgroup)
    cgroup = target.cgroup
    if pid is not None and pid > 0:
        where = host.reader().cgroup(pid)
        cgroup = where.memory if fs.version == "v1" else where.unified
    if cgroup is None:
        raise _NoProcesses("neither the container's pid nor its cgroup is known")
    path = fs.path(cgroup) / "cgroup.procs"
    try:
        text = path.read_text()
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror}") from e
    pids = sorted({int(word) for word in text.split()})
    if not pids:
        raise _NoProcesses(f"no process in cgroup {cgroup}")
    return pids, cgroup


def _descendants(host: Host, pid: int) -> list[int]:
    proc = host.reader()
    children: dict[int, list[int]] = {}
    for p in proc.pids():
        try:
            children.setdefault(proc.status(p).ppid, []).append(p)
        except ProcessGoneError:
            continue
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return sorted(out)


def _run(
    target: Target,
    value: int,
    *,
    dry_run: bool,
    host: Host,
    docker: DockerControl | None,
    every: bool,
) -> ActionResult:
    detail: dict[str, Any] = {"value": value}
    try:
        pids, cgroup = processes(target, host=host, docker=docker)
    except ContainerGone as e:
        return failed(ACTION, target, f"container gone: {e}", detail, dry_run=dry_run)
    except SentinelError as e:
        return failed(ACTION, target, str(e), detail, dry_run=dry_run)
    if cgroup is not None:
        detail["cgroup"] = cgroup
    report = _write_all(host, pids, value, dry_run=dry_run, every=every)
    detail.update(report)
    if report["errors"]:
        first = report["errors"][0]
        return failed(
            ACTION,
            target,
            f"{len(report['errors'])} of {len(pids)} processes not set "
            f"(pid {first['pid']}: {first['error']})",
            detail,
            dry_run=dry_run,
        )
    if not report["processes"] and not report["skipped"] and report["gone"]:
        return failed(ACTION, target, "every process exited meanwhile", detail, dry_run=dry_run)
    return would(ACTION, target, detail) if dry_run else done(ACTION, target, detail)


def _write_all(
    host: Host, pids: Iterable[int], value: int, *, dry_run: bool, every: bool
) -> dict[str, Any]:
    """Per pid: ``processes`` [{pid, before, after}], ``changed`` [pid], ``gone`` [pid],
    ``skipped`` [{pid, reason}], ``errors`` [{pid, error}]."""
    proc = host.reader()
    report: dict[str, Any] = {
        "processes": [],
        "changed": [],
        "gone": [],
        "skipped": [],
        "errors": [],
    }
    parents = set(ancestors(host, host.self_pid))
    for pid in pids:
        reason = refusal(host, pid, parents)
        if reason is not None:
            report["skipped"].append({"pid": pid, "reason": reason})
            continue
        try:
            before = proc.oom_score_adj(pid)
            if before == value and not every:
                report["processes"].append({"pid": pid, "before": before, "after": before})
                continue
            if dry_run:
                report["processes"].append({"pid": pid, "before": before, "would": value})
                if before != value:
                    report["changed"].append(pid)
                continue
            _write(host, pid, value, lowering=value < before)
            after = proc.oom_score_adj(pid)
        except ProcessGoneError:
            report["gone"].append(pid)
            continue
        except SentinelError as e:
            report["errors"].append({"pid": pid, "error": str(e)})
            continue
        report["processes"].append({"pid": pid, "before": before, "after": after})
        if after != value:
            report["errors"].append({"pid": pid, "error": f"read back {after}, not {value}"})
        elif before != value:
            report["changed"].append(pid)
    return report


def _write(host: Host, pid: int, value: int, *, lowering: bool) -> None:
    path = host.proc / str(pid) / "oom_score_adj"
    try:
        # No O_CREAT: a vanished process must not leave a file behind in a fake tree.
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ESRCH):
            raise ProcessGoneError(f"process {pid} is gone ({path})") from e
        hint = ""
        if lowering and e.errno in (errno.EACCES, errno.EPERM):
            hint = " (lowering oom_score_adj needs CAP_SYS_RESOURCE)"
        raise SourceError(f"cannot write {value} to {path}: {e.strerror}{hint}") from e
