"""``signal``: send a named signal (``SIGUSR2``: "dump diagnostics") to the target's main
process, through a pidfd, after the safety rail (:func:`~._host.refusal`).

A container's main process is found through Docker (its host pid) and signalled directly
when sentinel sees the host's PID namespace. Docker's own kill API (``docker kill -s``) is
only the fallback: Docker marks a container it signalled as "manually stopped", whatever
the signal, and then never applies its restart policy again (moby/moby#11065, #41302,
#53415), so a ``SIGUSR2`` for diagnostics would silently turn off ``--restart always``.
"""

from __future__ import annotations

import os
import signal as _signal

from sentinel.actions._host import Host, Refused, open_process, pid_namespace, refusal
from sentinel.actions._result import DockerControl, done, failed, refused, would
from sentinel.clients.docker import ContainerGone
from sentinel.errors import SentinelError, TemporaryError
from sentinel.model import ActionResult, Target
from sentinel.policy.fields import signal_number
from sentinel.sources.cgroup import normalize
from sentinel.sources.procfs import ProcessGoneError

ACTION = "signal"


def send(
    target: Target,
    name: str,
    *,
    dry_run: bool,
    docker: DockerControl | None = None,
    host: Host | None = None,
) -> ActionResult:
    """Send signal ``name`` (canonical, e.g. ``SIGUSR2``) to ``target``'s main process."""
    host = host or Host()
    try:
        number = signal_number(name)
    except ValueError as e:
        return failed(ACTION, target, str(e), dry_run=dry_run)
    detail: dict[str, object] = {"signal": name, "number": number}
    if target.is_self:
        return refused(ACTION, target, "the target is sentinel itself", detail, dry_run=dry_run)
    if target.pid is not None and target.pid > 0:
        detail["pid"] = target.pid
        reason = refusal(host, target.pid)
        if reason is not None:
            return refused(ACTION, target, reason, detail, dry_run=dry_run)
    if target.runtime == "docker":
        if docker is None:
            return failed(ACTION, target, "no Docker client to signal a container", detail)
        return _container(target, number, detail, dry_run=dry_run, docker=docker, host=host)
    detail["via"] = "pidfd"
    return _process(target, number, detail, dry_run=dry_run, host=host)


def _container(
    target: Target,
    number: int,
    detail: dict[str, object],
    *,
    dry_run: bool,
    docker: DockerControl,
    host: Host,
) -> ActionResult:
    try:
        info = docker.inspect(target.id)
        detail["pid"] = info.pid
        if not info.running:
            return failed(ACTION, target, f"container is {info.state}", detail, dry_run=dry_run)
        if info.pid and pid_namespace(host, host.self_pid) == host.host_pid_ns:
            detail["via"] = "pidfd"
            return _process(
                target, number, detail, dry_run=dry_run, host=host, pid=info.pid, docker_id=True
            )
        detail["via"] = "docker"
        if dry_run:
            return would(ACTION, target, detail)
        docker.kill(target.id, str(number))
    except ContainerGone as e:
        return failed(ACTION, target, f"container gone: {e}", detail, dry_run=dry_run)
    except TemporaryError as e:
        detail.update(temporary=True, retry_after_s=e.delay)
        return failed(ACTION, target, str(e), detail, dry_run=dry_run)
    except SentinelError as e:
        return failed(ACTION, target, str(e), detail, dry_run=dry_run)
    return done(ACTION, target, detail)


def _process(
    target: Target,
    number: int,
    detail: dict[str, object],
    *,
    dry_run: bool,
    host: Host,
    pid: int | None = None,
    docker_id: bool = False,
) -> ActionResult:
    """Signal ``pid`` (default: the target's). ``docker_id``: the pid is a container's init
    as Docker reported it: the pidfd's process must still live in the target's cgroup."""
    pid = target.pid if pid is None else pid
    if pid is None or pid <= 0:
        return failed(ACTION, target, "the target has no pid", detail, dry_run=dry_run)
    if dry_run:
        try:
            host.reader().status(pid)
        except SentinelError as e:
            return failed(ACTION, target, str(e), detail, dry_run=True)
        return would(ACTION, target, detail)
    try:
        fd = open_process(host, pid)
    except Refused as e:
        return refused(ACTION, target, str(e), detail)
    except ProcessGoneError as e:
        return failed(ACTION, target, str(e), detail)
    try:
        if docker_id and target.cgroup is not None:
            try:
                cgroup = host.reader().cgroup(pid).memory_cgroup
            except SentinelError as e:
                return failed(ACTION, target, str(e), detail)
            if cgroup is None or normalize(cgroup) != normalize(target.cgroup):
                return failed(ACTION, target, f"process {pid} is no longer the container's", detail)
        _signal.pidfd_send_signal(fd, number)
    except ProcessLookupError:
        return failed(ACTION, target, f"process {pid} exited before the signal", detail)
    except OSError as e:
        return failed(ACTION, target, f"cannot signal process {pid}: {e.strerror}", detail)
    finally:
        os.close(fd)
    return done(ACTION, target, detail)
