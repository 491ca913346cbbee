"""``sentinel top``: live memory, trend and time-to-OOM of every container and limited cgroup."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sentinel.cli.common import EXIT_OK, default_format, seconds_arg

if TYPE_CHECKING:
    from sentinel.runtime.monitor import Monitor, Watched

MIB = 1 << 20


def register(sub: Any) -> None:
    p = sub.add_parser(
        "top",
        help="live view of memory and projected OOM kills, soonest first",
        description=(
            "Every Docker container (by name) and every memory cgroup with a limit: usage, "
            "limit, %% of limit, working set, trend (growth per hour measured over the last "
            "minutes), ETA to the kernel's OOM kill, the constraint that binds (own limit, "
            "a parent's, or the host) and oom_score_adj. The ETA is the confident forecast "
            "rules act on; '~' marks one that only the trend of the last minutes says "
            "(usage clearly rises towards the limit, but it may yet stop). "
            "Memory comes from cgroup files, not from Docker's stats API."
        ),
    )
    p.add_argument("--once", action="store_true", help="print one view and exit")
    p.add_argument("--format", choices=("json", "table"), help="default: table on a terminal")
    p.add_argument(
        "--window",
        type=seconds_arg,
        default=10.0,
        metavar="SECONDS",
        help="seconds to sample before the first view (default 10): growth needs history",
    )
    p.add_argument(
        "--interval",
        type=seconds_arg,
        default=1.0,
        metavar="SECONDS",
        help="seconds between samples (default 1; above 0)",
    )
    p.add_argument("--no-docker", action="store_true", help="do not ask Docker for names")
    p.add_argument("--docker-url", help="Docker socket (default unix:///var/run/docker.sock)")
    p.add_argument(
        "--cgroup-root", type=Path, default=Path("/sys/fs/cgroup"), help=argparse.SUPPRESS
    )
    p.set_defaults(run=run)


def build_monitor(args: argparse.Namespace) -> Monitor:
    from sentinel.clients.docker import DockerClient
    from sentinel.runtime.monitor import Monitor, own_container_id
    from sentinel.sources.cgroup import CgroupFS
    from sentinel.sources.procfs import Proc

    proc = Proc()
    docker = None if args.no_docker else DockerClient(args.docker_url)
    self_cgroup = proc.cgroup(_self_pid()).memory_cgroup
    return Monitor(
        CgroupFS(args.cgroup_root),
        proc,
        docker,
        all_cgroups=True,
        self_container_id=own_container_id(),
        self_cgroup=self_cgroup,
    )


def _self_pid() -> int:
    import os

    return os.getpid()


def run(args: argparse.Namespace) -> int:
    fmt = args.format or default_format()
    monitor = build_monitor(args)
    out = sys.stdout
    try:
        monitor.discover()
        view = monitor.tick()
        deadline = time.monotonic() + max(0.0, args.window)
        next_discover = time.monotonic() + 10
        while True:
            while time.monotonic() < deadline:
                time.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
                if time.monotonic() >= next_discover:
                    monitor.discover()
                    next_discover = time.monotonic() + 10
                view = monitor.tick()
            view = soonest_first(view)
            if fmt == "json":
                out.write(json.dumps([w.to_dict() for w in view]) + "\n")
            else:
                if not args.once and out.isatty():
                    out.write("\x1b[H\x1b[2J")
                print_host(monitor, out)
                print_table(view, out, docker_error=monitor.docker_error)
            out.flush()
            if args.once:
                return EXIT_OK
            deadline = time.monotonic() + args.interval
    finally:
        monitor.close()
        if monitor.docker is not None:
            monitor.docker.close()


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    if abs(n) >= 1024 * MIB:
        return f"{n / (1024 * MIB):.2f}Gi"
    return f"{n / MIB:.1f}Mi"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def soonest_first(view: list[Watched]) -> list[Watched]:
    """Confident ETAs first, then observed ones, soonest first; then the rest by name."""

    def key(w: Watched) -> tuple[int, float, str]:
        if w.eta_seconds is not None:
            return (0, w.eta_seconds, w.target.name)
        if w.observed_eta_seconds is not None:
            return (1, w.observed_eta_seconds, w.target.name)
        return (2, 0.0, w.target.name)

    return sorted(view, key=key)


def eta_text(confident: float | None, observed: float | None) -> str:
    """The confident ETA, or ``~`` and the observed one when only the trend says it."""
    if confident is not None:
        return _eta(confident)
    if observed is not None:
        return "~" + _eta(observed)
    return "-"


def trend_text(bytes_per_s: float) -> str:
    """Growth per hour, as ``TREND/h`` shows it."""
    per_hour = bytes_per_s * 3600
    if abs(per_hour) < 0.05 * MIB:
        return "0"
    if abs(per_hour) >= 1024 * MIB:
        return f"{per_hour / (1024 * MIB):+.2f}Gi"
    return f"{per_hour / MIB:+.1f}Mi"


def print_host(monitor: Monitor, out: TextIO) -> None:
    """One line about the machine, like top's header: the host can run out first."""
    host = monitor.host_sample
    if host is None:
        return
    f = monitor.host_forecast
    eta = eta_text(f.eta_seconds, f.observed_eta_seconds) if f is not None else "-"
    used = host.total_bytes - host.available_bytes
    out.write(
        f"host: {_size(used)} used of {_size(host.total_bytes)}, "
        f"{_size(host.available_bytes)} available "
        f"({100 * host.available_bytes / host.total_bytes:.0f}%), ETA to host OOM {eta}\n"
    )


def print_table(view: list[Watched], out: TextIO, *, docker_error: str | None = None) -> None:
    rows = [("NAME", "USAGE", "LIMIT", "%LIM", "WSET", "TREND/h", "ETA", "BINDS", "ADJ")]
    for w in view:
        s = w.sample
        limit = w.limit_bytes
        pct = f"{100 * s.usage_bytes / limit:.0f}%" if limit else "-"
        if w.constraint == "parent":
            pct = f"{100 * (limit - (w.headroom_bytes or 0)) / limit:.0f}%" if limit else "-"
        binds = w.constraint if w.constraint != "parent" else f"parent {w.constraint_cgroup}"
        if w.victim is not None:
            binds += f" (victim {w.victim.get('comm', '?')}[{w.victim.get('pid')}])"
        rows.append(
            (
                fit_name(w.target.name),
                _size(s.usage_bytes),
                _size(limit),
                pct,
                _size(s.working_set_bytes),
                trend_text(w.trend_bytes_per_s),
                eta_text(w.eta_seconds, w.observed_eta_seconds),
                binds,
                "-" if w.oom_score_adj is None else str(w.oom_score_adj),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() + "\n")
    if docker_error:
        out.write(f"(docker: {docker_error})\n")


NAME_WIDTH = 40


def fit_name(name: str, width: int = NAME_WIDTH) -> str:
    """A long name keeps its end, where a cgroup path or pod name says which one it is
    (``…/kubepods/burstable/pod1234/abcd``), not its shared beginning."""
    return name if len(name) <= width else "…" + name[-(width - 1) :]
