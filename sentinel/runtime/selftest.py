"""What sentinel can do on this machine, checked at start and said plainly.

Like earlyoom: before it watches anything, sentinel prints its effective policy and what it
can read and write. A check that fails does not stop it (a host without Docker still has
kills to report); the result says which part will not work, and why.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sentinel.errors import SentinelError
from sentinel.policy import effective_document
from sentinel.policy.load import render_yaml
from sentinel.runtime.logs import event

if TYPE_CHECKING:
    from sentinel.runtime.daemon import Daemon

log = logging.getLogger("sentinel.selftest")
CAP_SYS_RESOURCE = 24


@dataclass
class SelfTest:
    kmsg: bool = False
    cgroups: bool = False
    docker: bool | None = None
    oom_score_adj: bool = False
    negative_oom_score_adj: bool = False
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "kmsg": self.kmsg,
            "cgroups": self.cgroups,
            "docker": self.docker,
            "oom_score_adj": self.oom_score_adj,
            "negative_oom_score_adj": self.negative_oom_score_adj,
            "problems": self.problems,
        }


def _cap_eff(status: str) -> int:
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def run_selftest(daemon: Daemon) -> SelfTest:
    result = SelfTest()
    opts = daemon.options
    try:
        fd = os.open(opts.kmsg, os.O_RDONLY | os.O_NONBLOCK)
        os.close(fd)
        result.kmsg = True
    except OSError as e:
        result.problems.append(f"cannot read {opts.kmsg} ({e.strerror}): kills will not be seen")
    try:
        cgroup = daemon.self_cgroup or "/"
        daemon.fs.sample(cgroup)
        result.cgroups = True
    except (SentinelError, OSError) as e:
        result.problems.append(f"cannot read memory cgroups under {opts.cgroup_root}: {e}")
    if daemon.docker is not None:
        try:
            daemon.docker.ping()
            result.docker = True
        except SentinelError as e:
            result.docker = False
            result.problems.append(f"{e}: containers will not be named, restarted or watched")
    adj_path = opts.proc / "self" / "oom_score_adj"
    try:
        current = adj_path.read_text().strip()
        adj_path.write_text(current)
        result.oom_score_adj = True
        status = (opts.proc / "self" / "status").read_text()
        result.negative_oom_score_adj = bool(_cap_eff(status) & (1 << CAP_SYS_RESOURCE))
        if not result.negative_oom_score_adj:
            result.problems.append(
                "no CAP_SYS_RESOURCE: oom_score_adj can be raised but not lowered below the"
                " current value (protect-style rules will fail)"
            )
    except OSError as e:
        result.problems.append(
            f"cannot write {adj_path} ({e.strerror}): oom_score_adj actions fail"
        )
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
