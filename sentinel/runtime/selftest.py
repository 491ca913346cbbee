"""What sentinel can do on this machine, checked at start and said plainly.

Like earlyoom: before it watches anything, sentinel prints its effective policy and what it
can read and write. A check that fails does not stop it (a host without Docker still has
kills to report); the result names what is missing, what will not work because of it, and
the flag or setting that gives it (the README's privileges table says the same).
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sentinel.actions import init_signal_problem
from sentinel.actions._host import INIT_PID_NS, pid_namespace
from sentinel.errors import SentinelError
from sentinel.policy import effective_document
from sentinel.policy.load import render_yaml
from sentinel.policy.model import OomScoreAdjAction
from sentinel.runtime.logs import event
from sentinel.runtime.sidecar import APP_LIMIT_ENV

if TYPE_CHECKING:
    from sentinel.runtime.daemon import Daemon

log = logging.getLogger("sentinel.selftest")
CAP_SYSLOG = 34
CAP_SYS_RESOURCE = 24


@dataclass
class SelfTest:
    kmsg: bool = False
    cgroups: bool = False
    docker: bool | None = None
    host_pid: bool | None = None
    """Host mode: sentinel sees the host's processes (``--pid host`` in a container)."""
    oom_score_adj: bool = False
    negative_oom_score_adj: bool = False
    app_memory: str | None = None
    """Sidecar mode: where the app's memory comes from (``cgroup`` or ``proc``)."""
    app_can_be_stopped: bool | None = None
    """Sidecar mode: SIGTERM from sentinel can stop the namespace's PID 1."""
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "kmsg": self.kmsg,
            "cgroups": self.cgroups,
            "docker": self.docker,
            "host_pid": self.host_pid,
            "oom_score_adj": self.oom_score_adj,
            "negative_oom_score_adj": self.negative_oom_score_adj,
            "app_memory": self.app_memory,
            "app_can_be_stopped": self.app_can_be_stopped,
            "problems": self.problems,
        }


def _cap_eff(status: str) -> int:
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _kmsg(daemon: Daemon, result: SelfTest, caps: int) -> None:
    path = daemon.options.kmsg
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.close(fd)
        result.kmsg = True
        return
    except OSError as e:
        err = e
    if err.errno == errno.ENOENT:
        why = f"there is no {path} (in a container: --device /dev/kmsg)"
    elif err.errno in (errno.EPERM, errno.EACCES) and not caps & (1 << CAP_SYSLOG):
        why = (
            f"reading {path} needs CAP_SYSLOG where kernel.dmesg_restrict=1"
            " (in a container: --cap-add SYSLOG)"
        )
    else:
        why = f"cannot read {path} ({err.strerror})"
    result.problems.append(f"{why}: kernel OOM kills will not be seen")


def _cgroups(daemon: Daemon, result: SelfTest) -> None:
    opts = daemon.options
    try:
        daemon.fs.sample(daemon.self_cgroup or "/")
        result.cgroups = True
    except (SentinelError, OSError) as e:
        if opts.mode in ("host", "kubernetes") and daemon.self_container:
            result.problems.append(
                f"the host's cgroup tree is not under {opts.cgroup_root} ({e}): mount it"
                " (-v /sys/fs/cgroup:/sys/fs/cgroup:ro); memory cannot be sampled"
            )
        elif opts.mode in ("host", "kubernetes"):
            result.problems.append(f"cannot read memory cgroups under {opts.cgroup_root}: {e}")


def _host_pid(daemon: Daemon, result: SelfTest) -> None:
    ns = pid_namespace(daemon.clients.host, daemon.clients.host.self_pid)
    result.host_pid = ns is None or ns == INIT_PID_NS
    if not result.host_pid:
        result.problems.append(
            "not in the host's PID namespace (in a container: --pid host): the containers'"
            " processes are invisible, so their memory cgroups cannot be found"
        )


def _docker(daemon: Daemon, result: SelfTest) -> None:
    if daemon.docker is None:
        return
    try:
        daemon.docker.ping()
        result.docker = True
    except SentinelError as e:
        result.docker = False
        hint = ""
        if daemon.self_container:
            hint = " (in a container: -v /var/run/docker.sock:/var/run/docker.sock)"
        result.problems.append(f"{e}{hint}: containers will not be named, restarted or watched")


def _oom_score_adj(daemon: Daemon, result: SelfTest, caps: int) -> None:
    adj_path = daemon.options.proc / "self" / "oom_score_adj"
    try:
        current = adj_path.read_text().strip()
        adj_path.write_text(current)
    except OSError as e:
        result.problems.append(
            f"cannot write {adj_path} ({e.strerror}): oom_score_adj actions fail"
        )
        return
    result.oom_score_adj = True
    result.negative_oom_score_adj = bool(caps & (1 << CAP_SYS_RESOURCE))
    if not result.negative_oom_score_adj and _lowers_oom_score_adj(daemon):
        result.problems.append(
            "no CAP_SYS_RESOURCE (in a container: --cap-add SYS_RESOURCE): oom_score_adj can"
            " be raised but not lowered below the current value, and a rule lowers it"
        )


def _lowers_oom_score_adj(daemon: Daemon) -> bool:
    return any(
        isinstance(a, OomScoreAdjAction) and a.oom_score_adj < 0
        for rule in daemon.policy.rules
        for a in rule.do
    )


def _sidecar(daemon: Daemon, result: SelfTest) -> None:
    sidecar = daemon.sidecar
    if sidecar is None:
        return
    targets = sidecar.targets()
    visible = False
    for target in targets:
        if target.cgroup and daemon.fs.exists(target.cgroup):
            visible = True
    result.app_memory = "cgroup" if visible else "proc"
    if not visible and sidecar.app_limit_bytes is None:
        result.problems.append(
            f"the app's cgroup is not visible and {APP_LIMIT_ENV} is unset: its memory is"
            " read from /proc and forecast against the host's memory only (set"
            f" {APP_LIMIT_ENV} to the app's limit, e.g. 192Mi)"
        )
    if not targets:
        result.problems.append(
            "no app process is visible: share the app's PID namespace"
            " (docker run --pid container:APP, Kubernetes shareProcessNamespace: true)"
        )
    if daemon.clients.host.self_pid == 1:
        return  # sentinel is the namespace's init: the app is not
    problem = init_signal_problem(daemon.clients.host, 1)
    result.app_can_be_stopped = problem is None
    if problem is not None:
        result.problems.append(f"restarts will fail: {problem}")


def run_selftest(daemon: Daemon) -> SelfTest:
    result = SelfTest()
    opts = daemon.options
    try:
        caps = _cap_eff((opts.proc / "self" / "status").read_text())
    except OSError:
        caps = 0
    _kmsg(daemon, result, caps)
    _cgroups(daemon, result)
    if opts.mode in ("host", "kubernetes"):
        _host_pid(daemon, result)
    _docker(daemon, result)
    _oom_score_adj(daemon, result, caps)
    _sidecar(daemon, result)
    sys.stderr.write("sentinel: effective policy:\n")
    sys.stderr.write(render_yaml(effective_document(daemon.policy)))
    sys.stderr.flush()
    event(
        log,
        "selftest",
        mode=opts.mode,
        dry_run=daemon.dry_run,
        state=str(daemon.store.path),
        self_container=daemon.self_container,
        self_cgroup=daemon.self_cgroup,
        **result.to_dict(),
    )
    for problem in result.problems:
        log.warning(problem)
    return result
