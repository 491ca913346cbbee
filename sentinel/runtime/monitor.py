"""Watch targets' memory and forecast their OOM kill against the constraint that bites first.

A container's memory can run out three ways, and the kernel kills at whichever comes first:

- its own cgroup limit (``constraint="cgroup"``);
- a parent cgroup's limit shared with its siblings (``--cgroup-parent``, a Kubernetes pod
  or QoS slice: ``constraint="parent"``); the parent's usage is what runs out;
- the host (``constraint="host"``): MemAvailable runs out and the global OOM killer picks
  the process with the highest ``oom_score`` anywhere, below every cgroup limit: the
  team's story.

:class:`Monitor` keeps one forecaster per watched cgroup (the targets' own and every
limited ancestor) and one for the host. A target's forecast is its own, or a shared one
(parent, host) when that one ends sooner and the target itself is growing: a growing
target is what eats a shared headroom.

Memory comes from cgroup files (~30 us a target), never from Docker's stats API (1-1.7 s a
call). Docker gives names, images and labels.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sentinel.clients.docker import ContainerGone, ContainerInfo, DockerClient
from sentinel.errors import SentinelError, SourceError
from sentinel.forecast import Forecast, Forecaster
from sentinel.kernel.memcg import identify
from sentinel.model import HostMemorySample, MemorySample, Target
from sentinel.sources.cgroup import CgroupFS, CgroupSet, ancestors, normalize
from sentinel.sources.procfs import Proc, ProcessGoneError

log = logging.getLogger(__name__)

_CONTAINER_IN_MOUNTS = re.compile(r"/containers/([0-9a-f]{64})/")


@dataclass(frozen=True, slots=True)
class Watched:
    """One target after a tick: its memory, its forecast and the constraint that binds it."""

    target: Target
    sample: MemorySample
    forecast: Forecast | None
    """The binding forecast (``constraint``, ``eta_seconds``, ``rate_bytes_per_s`` ...)."""
    constraint: str
    """``cgroup``, ``parent`` or ``host``: which limit the kill is projected against."""
    constraint_cgroup: str | None
    """The cgroup whose limit binds (``None`` for the host)."""
    limit_bytes: int | None
    """The binding limit: own, parent's, or the host's total memory."""
    headroom_bytes: int | None
    own_forecast: Forecast | None
    victim: dict[str, object] | None = None
    """For a host constraint: the process the kernel would kill now (highest oom_score)."""
    oom_score_adj: int | None = None
    """The target's main process's ``oom_score_adj``."""

    @property
    def eta_seconds(self) -> float | None:
        """The confident ETA (what rules act on)."""
        return self.forecast.eta_seconds if self.forecast is not None else None

    @property
    def observed_eta_seconds(self) -> float | None:
        """The ETA at the trend of the last minutes (``None`` unless clearly rising)."""
        return self.forecast.observed_eta_seconds if self.forecast is not None else None

    @property
    def trend_bytes_per_s(self) -> float:
        """The target's own measured trend (what ``sentinel top`` shows)."""
        f = self.own_forecast
        return f.observed_rate_bytes_per_s if f is not None else 0.0

    def to_dict(self) -> dict[str, object]:
        s = self.sample
        f = self.forecast
        out: dict[str, object] = {
            "name": self.target.name,
            "id": self.target.id,
            "runtime": self.target.runtime,
            "cgroup": s.cgroup,
            "usage_bytes": s.usage_bytes,
            "working_set_bytes": s.working_set_bytes,
            "limit_bytes": s.limit_bytes,
            "effective_limit_bytes": s.effective_limit_bytes,
            "eta_seconds": self.eta_seconds,
            "eta_low": f.eta_low if f else None,
            "eta_high": f.eta_high if f else None,
            "confident": self.eta_seconds is not None,
            "observed_eta_seconds": self.observed_eta_seconds,
            "observed_eta_low": f.observed_eta_low if f else None,
            "observed_eta_high": f.observed_eta_high if f else None,
            "trend_bytes_per_s": self.trend_bytes_per_s,
            "trend_error_bytes_per_s": (
                self.own_forecast.observed_rate_error if self.own_forecast else 0.0
            ),
            "known_leaker": self.own_forecast.known_leaker if self.own_forecast else False,
            "constraint": self.constraint,
            "constraint_cgroup": self.constraint_cgroup,
            "constraint_limit_bytes": self.limit_bytes,
            "headroom_bytes": self.headroom_bytes,
            "oom_score_adj": self.oom_score_adj,
        }
        if self.target.image:
            out["image"] = self.target.image
        if self.victim is not None:
            out["victim"] = self.victim
        return out


@dataclass
class _Entry:
    target: Target
    cgroup: str
    from_proc: bool = False
    """Sampled from its processes in ``/proc`` (sidecar mode, cgroup not visible)."""


@dataclass
class _Shared:
    forecaster: Forecaster
    last: Forecast | None = None
    sample: MemorySample | None = None
    users: set[str] = field(default_factory=set)


def own_container_id(proc_root: Path = Path("/proc")) -> str | None:
    """The id of the container sentinel runs in, if any (from its cgroup or its mounts)."""
    try:
        text = (proc_root / "self" / "cgroup").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        cid = identify(line.split(":", 2)[-1]).container_id
        if cid:
            return cid
    try:
        mounts = (proc_root / "self" / "mountinfo").read_text()
    except OSError:
        return None
    m = _CONTAINER_IN_MOUNTS.search(mounts)
    return m.group(1) if m else None


class Monitor:
    """Discovers targets, samples them each tick, and keeps their forecasts.

    ``docker``: the Docker adapter, or ``None`` (no containers by name). ``all_cgroups``:
    also watch every memory cgroup that has a limit of its own (``sentinel top``).
    ``clock`` must be the clock the cgroup and /proc readers stamp samples with.
    """

    def __init__(
        self,
        cgroups: CgroupFS,
        proc: Proc,
        docker: DockerClient | None = None,
        *,
        all_cgroups: bool = False,
        self_container_id: str | None = None,
        self_cgroup: str | None = None,
        wall_clock: Callable[[], float] | None = None,
        proc_sampler: Callable[[str], MemorySample | None] | None = None,
    ) -> None:
        self.fs = cgroups
        self.proc = proc
        self.docker = docker
        self.all_cgroups = all_cgroups
        self.self_container_id = self_container_id
        self.self_cgroup = normalize(self_cgroup) if self_cgroup else None
        self.proc_sampler = proc_sampler
        """For a target whose cgroup files cannot be read: its memory from ``/proc`` (a
        sample, or ``None`` when the cgroup has no process left)."""
        self._set = CgroupSet(cgroups)
        self._entries: dict[str, _Entry] = {}  # by target id
        self._own: dict[str, Forecaster] = {}  # by cgroup
        self._shared: dict[str, _Shared] = {}  # by ancestor cgroup with a limit
        self._host = Forecaster(constraint="host")
        self._host_last: Forecast | None = None
        self.host_sample: HostMemorySample | None = None
        self.docker_error: str | None = None
        self._sample_errors: dict[str, str] = {}
        self.lost: list[str] = []
        """Targets dropped by the last :meth:`tick` because their cgroup went away (a
        container stopped or restarted): the caller should discover again."""
        self.known_leakers: set[str] = set()
        """Ids and names of targets the kernel killed at their own limit before (the
        daemon adds them from its kill records): their forecasters trust a straight line
        from the start early (``Forecaster.known_leaker``)."""

    def close(self) -> None:
        self._set.close()

    @property
    def host_forecast(self) -> Forecast | None:
        """The host's forecast: MemTotal - MemAvailable against MemTotal."""
        return self._host_last

    # -- discovery --------------------------------------------------------------------------

    def discover(self, extra: Iterable[Target] = ()) -> list[Target]:
        """Refresh the set of targets: Docker containers, limited cgroups, and ``extra``."""
        found: dict[str, Target] = {}
        for target in self._containers():
            found[target.id] = target
        if self.all_cgroups:
            known = {t.cgroup for t in found.values()}
            for cgroup in self._limited_cgroups():
                if cgroup not in known:
                    found[f"cgroup:{cgroup}"] = Target(
                        id=f"cgroup:{cgroup}",
                        name=cgroup,
                        runtime="cgroup",
                        cgroup=cgroup,
                        is_self=self._is_self_cgroup(cgroup),
                    )
        for target in extra:
            found[target.id] = target
        self._sync(found)
        return [e.target for e in self._entries.values()]

    def refresh(self, container_ids: Iterable[str]) -> None:
        """Re-read only these containers (after Docker events): one inspect each, where a
        full :meth:`discover` lists and inspects every container on the host."""
        if self.docker is None:
            return
        found = {target_id: e.target for target_id, e in self._entries.items()}
        for container_id in container_ids:
            try:
                target = self.container_target(self.docker.inspect(container_id))
            except ContainerGone:
                target = None
            except SentinelError as e:
                log.info("docker: re-read %s: %s", container_id[:12], e)
                continue
            found.pop(container_id, None)
            if target is not None:
                found[target.id] = target
        self._sync(found)

    def _containers(self) -> list[Target]:
        if self.docker is None:
            return []
        try:
            infos = self.docker.containers()
            self.docker_error = None
        except SentinelError as e:
            if self.docker_error != str(e):
                log.warning("docker: %s", e)
            self.docker_error = str(e)
            return [e.target for e in self._entries.values() if e.target.runtime == "docker"]
        targets = []
        for info in infos:
            target = self.container_target(info)
            if target is not None:
                targets.append(target)
        return targets

    def container_target(self, info: ContainerInfo) -> Target | None:
        """A running container as a target, with its memory cgroup read from /proc."""
        if not info.running or not info.pid:
            return None
        try:
            cgroup = self.proc.cgroup(info.pid).memory_cgroup
        except (ProcessGoneError, SourceError):
            return None
        return self.identify_container(info, cgroup, pid=info.pid)

    def identify_container(
        self, info: ContainerInfo, cgroup: str | None, *, pid: int | None = None
    ) -> Target:
        """A container as a target (running or not: a killed one is named this way too)."""
        return Target(
            id=info.id,
            name=info.name,
            runtime="docker",
            image=info.image,
            labels=dict(info.labels),
            started_at=info.started_at,
            is_self=info.id == self.self_container_id
            or (cgroup is not None and self._is_self_cgroup(cgroup)),
            pid=pid,
            cgroup=normalize(cgroup) if cgroup else None,
        )

    def _is_self_cgroup(self, cgroup: str) -> bool:
        if self.self_cgroup is None or self.self_cgroup == "/":
            return False
        c = normalize(cgroup)
        return self.self_cgroup == c or self.self_cgroup.startswith(c.rstrip("/") + "/")

    def _limited_cgroups(self) -> list[str]:
        out = []
        try:
            for cgroup in self.fs.walk("/"):
                if cgroup == "/":
                    continue
                try:
                    if self.fs.limit(cgroup) is not None:
                        out.append(cgroup)
                except SourceError:
                    continue
        except SourceError as e:
            log.warning("cgroups: %s", e)
        return out

    def _sync(self, found: dict[str, Target]) -> None:
        for target_id in list(self._entries):
            if target_id not in found:
                self._drop(target_id)
        for target_id, target in found.items():
            if target.cgroup is None:
                continue
            entry = self._entries.get(target_id)
            if entry is not None and (
                entry.cgroup != target.cgroup or entry.target.started_at != target.started_at
            ):
                # Moved, or started again: a restarted container's cgroup is a new directory
                # at the same path (the open files read the removed one), and its memory
                # history starts over.
                self._drop(target_id)
                entry = None
            if entry is None:
                try:
                    self._watch(target.cgroup)
                except SourceError as e:
                    if self.proc_sampler is None:
                        log.info("cannot watch %s (%s): %s", target.name, target.cgroup, e)
                        continue
                    self._own.setdefault(target.cgroup, Forecaster(constraint="cgroup"))
                    self._entries[target_id] = _Entry(target, target.cgroup, from_proc=True)
                    continue
                self._entries[target_id] = _Entry(target=target, cgroup=target.cgroup)
                for parent in ancestors(target.cgroup):
                    self._shared_for(parent).users.add(target.cgroup)
            else:
                old = entry.target
                if (old.started_at, old.pid) != (target.started_at, target.pid):
                    # Restarted: its memory history starts over (a restart is no drop
                    # the forecaster should read as a GC cycle).
                    forecaster = self._own.get(entry.cgroup)
                    if forecaster is not None:
                        forecaster.reset()
                entry.target = target

    def _watch(self, cgroup: str) -> None:
        if cgroup not in self._set:
            self._set.add(cgroup)
        self._own.setdefault(cgroup, Forecaster(constraint="cgroup"))

    def _shared_for(self, parent: str) -> _Shared:
        shared = self._shared.get(parent)
        if shared is None:
            shared = self._shared[parent] = _Shared(Forecaster(constraint="parent"))
        return shared

    def _drop(self, target_id: str) -> None:
        entry = self._entries.pop(target_id)
        if any(e.cgroup == entry.cgroup for e in self._entries.values()):
            return
        self._own.pop(entry.cgroup, None)
        self._set.discard(entry.cgroup)
        for parent in ancestors(entry.cgroup):
            shared = self._shared.get(parent)
            if shared is not None:
                shared.users.discard(entry.cgroup)
                if not shared.users:
                    del self._shared[parent]
                    if parent not in self._own:
                        self._set.discard(parent)

    # -- sampling and forecasting -------------------------------------------------------------

    def tick(self) -> list[Watched]:
        """Sample every target and limited ancestor; forecast; sorted by ETA (soonest first)."""
        self._watch_limited_ancestors()
        samples, gone = self._set.sample()
        for cgroup, error in self._set.errors.items():
            if self._sample_errors.get(cgroup) != error:
                log.warning("cannot sample %s this tick: %s", cgroup, error)
        self._sample_errors = dict(self._set.errors)
        if self.proc_sampler is not None:
            for cgroup in {e.cgroup for e in self._entries.values() if e.from_proc}:
                sample = self.proc_sampler(cgroup)
                if sample is None:
                    gone.append(cgroup)
                else:
                    samples.append(sample)
        self.lost = []
        for cgroup in gone:
            for target_id in [t for t, e in self._entries.items() if e.cgroup == cgroup]:
                self._drop(target_id)
                self.lost.append(target_id)
        by_cgroup = {s.cgroup: s for s in samples}
        try:
            host = self.host_sample = self.proc.host()
        except SourceError as e:
            log.warning("host memory: %s", e)
            host = None
        if host is not None:
            self._host_last = self._host.feed(
                host.t, float(host.total_bytes - host.available_bytes), float(host.total_bytes)
            )
        for parent, shared in self._shared.items():
            s = by_cgroup.get(parent)
            if s is None or s.limit_bytes is None:
                shared.last = None
                continue
            shared.sample = s
            shared.last = shared.forecaster.feed(
                s.t, float(s.usage_bytes), float(s.limit_bytes), "parent"
            )
        out = []
        for entry in list(self._entries.values()):
            s = by_cgroup.get(entry.cgroup)
            if s is None:
                continue
            forecaster = self._own[entry.cgroup]
            leakers = self.known_leakers
            forecaster.known_leaker = entry.target.id in leakers or entry.target.name in leakers
            own = forecaster.feed(
                s.t,
                float(s.usage_bytes),
                float(s.limit_bytes) if s.limit_bytes is not None else None,
                "cgroup",
            )
            out.append(self._bind(entry.target, s, own, host))
        out.sort(key=lambda w: (w.eta_seconds is None, w.eta_seconds or 0.0, w.target.name))
        return out

    def _watch_limited_ancestors(self) -> None:
        for parent, shared in self._shared.items():
            if parent in self._set:
                continue
            try:
                if self.fs.limit(parent) is None:
                    continue
                self._set.add(parent)
            except SourceError:
                continue
            shared.forecaster.reset()

    def _bind(
        self, target: Target, s: MemorySample, own: Forecast, host: HostMemorySample | None
    ) -> Watched:
        growing = own.rate_bytes_per_s > 0
        best: tuple[float, Forecast, str, str | None, int | None, int | None] | None = None
        options: list[tuple[Forecast, str, str | None, int | None, int | None]] = []
        if s.limit_bytes is not None:
            options.append((own, "cgroup", s.cgroup, s.limit_bytes, s.limit_bytes - s.usage_bytes))
        for parent in ancestors(s.cgroup):
            shared = self._shared.get(parent)
            if shared is None or shared.last is None or shared.sample is None:
                continue
            p = shared.sample
            assert p.limit_bytes is not None
            options.append(
                (shared.last, "parent", parent, p.limit_bytes, p.limit_bytes - p.usage_bytes)
            )
        if host is not None and self._host_last is not None:
            options.append((self._host_last, "host", None, host.total_bytes, host.available_bytes))
        for forecast, name, cgroup, limit, headroom in options:
            eta = forecast.eta_seconds
            if eta is None or (name != "cgroup" and not growing):
                continue
            if best is None or eta < best[0]:
                best = (eta, forecast, name, cgroup, limit, headroom)
        if best is None:
            # Nothing confident: bind the constraint the observed trend meets first.
            rising = own.observed_eta_seconds is not None or own.observed_rate_bytes_per_s > 0
            for forecast, name, cgroup, limit, headroom in options:
                eta = forecast.observed_eta_seconds
                if eta is None or (name != "cgroup" and not rising):
                    continue
                if best is None or eta < best[0]:
                    best = (eta, forecast, name, cgroup, limit, headroom)
        if best is not None:
            _, forecast, name, cgroup, limit, headroom = best
        else:
            # Nothing projected: report the tightest headroom.
            forecast, name, cgroup, limit, headroom = min(
                options or [(own, "cgroup", s.cgroup, None, None)],
                key=lambda o: o[4] if o[4] is not None else float("inf"),
            )
            if forecast is not own and forecast.eta_seconds is not None:
                forecast = own
        victim = self._host_victim() if name == "host" and best is not None else None
        adj = None
        if target.pid:
            try:
                adj = self.proc.oom_score_adj(target.pid)
            except (ProcessGoneError, SourceError):
                adj = None
        return Watched(
            target=target,
            sample=s,
            forecast=forecast if best is not None else own,
            constraint=name,
            constraint_cgroup=cgroup,
            limit_bytes=limit,
            headroom_bytes=headroom,
            own_forecast=own,
            victim=victim,
            oom_score_adj=adj,
        )

    def _host_victim(self) -> dict[str, object] | None:
        """The process the global OOM killer would pick now: the highest ``oom_score``."""
        best: tuple[int, int] | None = None
        for pid in self.proc.pids():
            try:
                score = self.proc.oom_score(pid)
            except (ProcessGoneError, SourceError):
                continue
            if best is None or score > best[0]:
                best = (score, pid)
        if best is None:
            return None
        score, pid = best
        out: dict[str, object] = {"pid": pid, "oom_score": score}
        try:
            status = self.proc.status(pid)
            out["comm"] = status.name
            cgroup = self.proc.cgroup(pid).memory_cgroup
            out["cgroup"] = cgroup
            for e in self._entries.values():
                if cgroup is not None and normalize(cgroup) == e.cgroup:
                    out["target"] = e.target.name
        except (ProcessGoneError, SourceError):
            pass
        return out
