"""``restart``: stop gracefully, then start again.

* A Docker container: ``docker stop -t GRACE`` (SIGTERM, the grace period, SIGKILL), then
  ``docker start``, through :class:`~sentinel.clients.docker.DockerClient`.
* A process (sidecar mode: the app, usually PID 1 of the shared pid namespace): SIGTERM,
  wait up to the grace period for it to exit, then SIGKILL. Its own restart policy (the
  container's, the pod's) brings it back.

Never sentinel itself, its parent chain, or the host's init (:func:`~._host.refusal`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from sentinel.actions._host import (
    Host,
    Refused,
    init_signal_problem,
    open_process,
    refusal,
    wait_exit,
)
from sentinel.actions._result import DockerControl, done, failed, refused, would
from sentinel.clients.docker import ContainerGone
from sentinel.errors import SentinelError, TemporaryError
from sentinel.model import ActionResult, Target
from sentinel.sources.procfs import ProcessGoneError

ACTION = "restart"
KILL_WAIT_S = 5.0
"""How long a process may take to die after SIGKILL before the restart is a failure (a
process in uninterruptible sleep, a frozen cgroup)."""


def restart(
    target: Target,
    grace_seconds: float,
    *,
    dry_run: bool,
    docker: DockerControl | None = None,
    host: Host | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ActionResult:
    """Restart ``target`` with ``grace_seconds`` between SIGTERM and SIGKILL."""
    host = host or Host()
    if target.is_self:
        return refused(ACTION, target, "the target is sentinel itself", dry_run=dry_run)
    if target.pid is not None and target.pid > 0:
        reason = refusal(host, target.pid)
        if reason is not None:
            return refused(ACTION, target, reason, {"pid": target.pid}, dry_run=dry_run)
    if target.runtime == "docker":
        return _container(target, grace_seconds, dry_run=dry_run, docker=docker)
    return _process(target, grace_seconds, dry_run=dry_run, host=host, clock=clock)


def _container(
    target: Target, grace: float, *, dry_run: bool, docker: DockerControl | None
) -> ActionResult:
    if docker is None:
        return failed(ACTION, target, "no Docker client to restart a container", dry_run=dry_run)
    detail: dict[str, object] = {"via": "docker", "grace_s": grace}
    try:
        before = docker.inspect(target.id)
        detail.update(pid_before=before.pid, started_at_before=before.started_at)
        if dry_run:
            return would(ACTION, target, {**detail, "would": f"docker stop -t {grace:g}, start"})
        t0 = time.monotonic()
        docker.restart(target.id, grace_seconds=grace)
        detail["took_s"] = round(time.monotonic() - t0, 3)
        after = docker.inspect(target.id)
    except ContainerGone as e:
        return failed(ACTION, target, f"container gone: {e}", detail, dry_run=dry_run)
    except TemporaryError as e:
        detail.update(temporary=True, retry_after_s=e.delay)
        return failed(ACTION, target, str(e), detail, dry_run=dry_run)
    except SentinelError as e:
        return failed(ACTION, target, str(e), detail, dry_run=dry_run)
    detail.update(
        pid_after=after.pid,
        started_at_after=after.started_at,
        state_after=after.state,
    )
    if not after.running:
        return failed(ACTION, target, f"container is {after.state} after the restart", detail)
    return done(ACTION, target, detail)


def _process(
    target: Target, grace: float, *, dry_run: bool, host: Host, clock: Callable[[], float]
) -> ActionResult:
    pid = target.pid
    if pid is None or pid <= 0:
        return failed(ACTION, target, "the target has no pid", dry_run=dry_run)
    detail: dict[str, object] = {"via": "signal", "pid": pid, "grace_s": grace}
    problem = init_signal_problem(host, pid)
    if problem is not None:
        detail["init_without_sigterm_handler"] = True
        return failed(ACTION, target, problem, detail, dry_run=dry_run)
    if dry_run:
        try:
            host.reader().status(pid)
        except ProcessGoneError as e:
            return failed(ACTION, target, str(e), detail, dry_run=True)
        except SentinelError as e:
            return failed(ACTION, target, str(e), detail, dry_run=True)
        return would(ACTION, target, {**detail, "would": f"SIGTERM, wait {grace:g}s, SIGKILL"})
    try:
        fd = open_process(host, pid)
    except Refused as e:
        return refused(ACTION, target, str(e), detail)
    except ProcessGoneError as e:
        return failed(ACTION, target, str(e), detail)
    try:
        t0 = clock()
        try:
            signal.pidfd_send_signal(fd, signal.SIGTERM)
        except ProcessLookupError:
            return failed(ACTION, target, f"process {pid} exited before SIGTERM", detail)
        exited = wait_exit(fd, grace)
        detail["killed"] = not exited
        if not exited:
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except ProcessLookupError:
                exited = True  # it exited between the wait and the kill
            else:
                exited = wait_exit(fd, KILL_WAIT_S)
        detail["took_s"] = round(clock() - t0, 3)
    finally:
        os.close(fd)
    if not exited:
        return failed(
            ACTION, target, f"process {pid} still there {KILL_WAIT_S:g}s after SIGKILL", detail
        )
    return done(ACTION, target, detail)
