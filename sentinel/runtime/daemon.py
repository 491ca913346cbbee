"""``sentinel run``: the daemon that watches, decides and acts.

Threads and jobs, each owning its own state:

- **APScheduler** runs the sample tick (every ``settings.sample_interval``): discover,
  sample, forecast, re-apply ``oom_score_adj`` to new processes. The tick owns the
  per-target memory and publishes it whole as an immutable :class:`Snapshot`; then it
  kicks the evaluator;
- the **kmsg follower** reads ``/dev/kmsg`` from where the state says it stopped, parses
  kill records, stores each once (with the position, in one transaction) and kicks the
  evaluator;
- the **Docker event stream** (host mode) notes starts, deaths and OOMs for the next tick;
  it reconnects with backoff when the daemon goes away;
- the **evaluator** decides on the last snapshot and the new kills (the pure
  :func:`~sentinel.policy.evaluate`), queues notifications and sets ``oom_score_adj`` at
  once, and hands each firing with a disruptive action (restart, signal, hook) or a
  ``snapshot`` (the allocation probe's report, up to its timeout) to
- the **action worker** (:mod:`~sentinel.runtime.worker`), which carries them out one at
  a time, re-checking each target just before acting: a 30 s grace period never delays
  sampling or the intake of kills;
- the **deliverer** sends the outbox: at once when a notification is queued, and every
  ``deliver_every`` for retries and held storms;
- the **HTTP server** answers ``/healthz``, ``/readyz`` and ``/metrics``.

A thread that fails is logged with its traceback, counted and started again. Every
decision and action is written to the state with its evidence and logged as one JSON line.
sentinel never selects its own container or process, never exceeds a rule's restart
budget, and re-reads a target just before a disruptive action.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from sentinel import actions
from sentinel.actions import Clients, Host
from sentinel.clients.docker import ContainerGone, DockerClient
from sentinel.clients.kubernetes import KubeClient
from sentinel.errors import SentinelError, TemporaryError
from sentinel.kernel.oom import OomParser
from sentinel.model import ActionResult, KillRecord, Target
from sentinel.notifiers.delivery import Sender, deliver
from sentinel.notifiers.kube_events import NAME as KUBE_EVENTS
from sentinel.notifiers.kube_events import (
    KubeEventsSender,
    kill_event,
    predicted_event,
    restart_event,
)
from sentinel.notifiers.log import LogSender
from sentinel.notifiers.payload import enrich
from sentinel.notifiers.slack import SlackSender
from sentinel.notifiers.webhook import WebhookSender
from sentinel.policy import Decision, evaluate, still_holds
from sentinel.policy.decision import Escalation
from sentinel.policy.model import (
    RESTARTING,
    NotifyAction,
    OomScoreAdjAction,
    Policy,
    RestartAction,
    RunAction,
    SnapshotAction,
)
from sentinel.policy.state import (
    History,
    KillEvent,
    MemoryPoint,
    State,
    TargetState,
    lookback,
)
from sentinel.runtime import retention
from sentinel.runtime.http import HealthServer, Metrics
from sentinel.runtime.kube import KubeNode
from sentinel.runtime.logs import event
from sentinel.runtime.monitor import Monitor, Watched, own_container_id
from sentinel.runtime.selftest import SelfTest, run_selftest
from sentinel.runtime.sidecar import SidecarTargets
from sentinel.runtime.worker import ActionWorker
from sentinel.sources.cgroup import CgroupFS
from sentinel.sources.kmsg import KmsgReader
from sentinel.sources.procfs import Proc
from sentinel.store import Store

log = logging.getLogger("sentinel.daemon")

COUNTED_OUTCOMES = frozenset(
    {"done", "dry_run", "failed", "queued", "sent", "pending", "interrupted"}
)
"""Decisions that count for cooldowns and restart budgets (not dropped or refused ones).
``interrupted``: sentinel stopped while carrying it out (a sidecar ends with the app it
restarts); it counts, so a restart that ends sentinel too still uses the budget."""
HISTORY_WINDOW = 7 * 86400.0
"""How far back a start looks for actions left ``pending`` and ``oom_score_adj`` values
to re-apply (cooldowns and budgets read only their own windows: :func:`lookback`)."""
KMSG_STALE_S = 30.0
"""The kmsg follower reads or wakes every 0.2 s: this long without is a stuck thread."""
BACKLOG_SLACK_S = 0.25
"""A kill stamped less than this before sentinel's start still counts as seen live."""
COMEBACK_WAIT_S = 10.0
"""How long a sidecar's restart waits for the app's restart policy to bring it back."""


@dataclass
class Options:
    """How to run, beyond the policy (command-line flags and injectable roots for tests)."""

    mode: str = "host"
    dry_run: bool = False
    kmsg: Path = Path("/dev/kmsg")
    proc: Path = Path("/proc")
    cgroup_root: Path = Path("/sys/fs/cgroup")
    docker_url: str | None = None
    discover_every: float = 30.0
    deliver_every: float = 1.0
    listen: str | None = None
    """Overrides ``settings.listen`` (``""``: no HTTP endpoint)."""
    state: str | None = None
    """Overrides ``settings.state``."""
    app_memory_limit: int | None = None
    """Sidecar mode: the app's memory limit in bytes (``SENTINEL_APP_MEMORY_LIMIT``), used
    when the app's cgroup files are not visible."""
    kubeconfig: str | None = None
    """Kubernetes mode: a kubeconfig (default: in-cluster, else ``KUBECONFIG``)."""
    node: str | None = None
    """Kubernetes mode: this node's name (default: ``NODE_NAME``)."""


@dataclass
class _TargetMemory:
    points: deque[MemoryPoint]
    last: Watched | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the last tick saw, published whole for the other threads to read: the tick
    owns the per-target memory; the evaluator, the kmsg follower and the action worker
    read only the snapshot it last published (never a dict the tick is changing)."""

    watched: Mapping[str, Watched] = field(default_factory=dict)
    """The targets as sampled, by id."""
    memory: Mapping[str, tuple[MemoryPoint, ...]] = field(default_factory=dict)
    """Each target's recent readings, oldest first."""
    host_total_bytes: int | None = None

    def states(self) -> list[TargetState]:
        return [
            TargetState(target=w.target, forecast=w.forecast, memory=self.memory.get(i, ()))
            for i, w in self.watched.items()
        ]

    def targets(self) -> list[Target]:
        return [w.target for w in self.watched.values()]


class Daemon:
    def __init__(self, policy: Policy, options: Options) -> None:
        self.policy = policy
        self.options = options
        self.dry_run = options.dry_run or policy.settings.dry_run
        self.clock: Callable[[], float] = time.time
        self.metrics = Metrics()
        self._describe_metrics()
        self.store = Store(options.state or policy.settings.state)
        self.proc = Proc(options.proc, clock=self.clock)
        self.fs = CgroupFS(options.cgroup_root, clock=self.clock)
        self.docker: DockerClient | None = None
        if options.mode == "host":
            self.docker = DockerClient(options.docker_url)
        self.kube: KubeNode | None = None
        kube_api = None
        if options.mode == "kubernetes":
            kube_api = KubeClient.connect(node=options.node, kubeconfig=options.kubeconfig)
            self.kube = KubeNode(
                kube_api, self.fs, proc=options.proc, clock=self.clock, on_change=self._pods_changed
            )
        self.self_cgroup = self.proc.cgroup(os.getpid()).memory_cgroup
        self.self_container = own_container_id(options.proc)
        self.monitor = Monitor(
            self.fs,
            self.proc,
            self.docker,
            self_container_id=self.self_container,
            self_cgroup=self.self_cgroup,
        )
        self.sidecar = (
            SidecarTargets(
                self.proc, self_pid=os.getpid(), app_limit_bytes=options.app_memory_limit
            )
            if options.mode == "sidecar"
            else None
        )
        if self.sidecar is not None:
            self.monitor.proc_sampler = self.sidecar.sample
        self.clients = Clients(
            docker=self.docker,
            host=Host(proc=options.proc, cgroup=options.cgroup_root),
            kube=kube_api,
        )
        self.senders: dict[str, Sender] = {}
        for name, notifier in policy.notifiers.items():
            if notifier.type == "log":
                self.senders[name] = LogSender(name)
            elif notifier.type == "slack":
                self.senders[name] = SlackSender(name, notifier, self.store, clock=self.clock)
            elif notifier.type == "webhook":
                self.senders[name] = WebhookSender(name, notifier)
        if kube_api is not None:  # Events on the pods, through the outbox
            self.senders[KUBE_EVENTS] = KubeEventsSender(kube_api, kube_api.node)
        self._deliver_kick = threading.Event()
        """Set when a notification is queued: the deliverer sends at once."""
        self._deliver_lock = threading.Lock()
        self.boot_id = _boot_id(options.proc)
        self._events: queue.Queue[KillEvent] = queue.Queue()
        self._memory: dict[str, _TargetMemory] = {}
        """Owned by the tick: each target's recent readings."""
        self.snapshot = Snapshot()
        """The last tick's view, replaced whole (other threads read only this)."""
        self._restarted: queue.SimpleQueue[str] = queue.SimpleQueue()
        """Targets the worker restarted: the tick starts their memory over."""
        self._leakers: queue.SimpleQueue[str] = queue.SimpleQueue()
        """Ids and names of targets the kernel killed at their own limit: the tick hands
        them to the monitor, whose forecasts then know them as leakers."""
        for kill in self.store.kills(since=self.clock() - HISTORY_WINDOW):
            if kill.record.scope == "cgroup":
                self.monitor.known_leakers.update(
                    k for k in (kill.target_id, kill.target_name) if k
                )
        self.worker = ActionWorker()
        self._keep = points_to_keep(policy)
        """Readings kept per target in memory: what the longest ``memory_above.for`` needs
        (the full history is in the state file, for messages and ``sentinel events``)."""
        self._adjusted = self._adjusted_from_state()
        """``oom_score_adj`` set on each target: re-applied every tick to new processes."""
        self._adjust_errors: dict[str, str] = {}
        self._eval_lock = threading.Lock()
        self._stop = threading.Event()
        self._discover_now = threading.Event()
        self._changed: set[str] = set()
        """Containers Docker told about since the last tick: re-read just these."""
        self._changed_lock = threading.Lock()
        self._kick = threading.Event()
        """Set when a kill arrives: the evaluator thread evaluates at once."""
        self._ticked = False
        self._last_tick: float | None = None
        """Monotonic time the last successful tick ended: health means the ticks go on."""
        self._stale_after = tick_deadline(policy)
        self._last_kmsg: float | None = None
        """Monotonic time the kmsg follower last read or waited: it is alive."""
        self._started_since_boot: float | None = None
        """CLOCK_MONOTONIC at start: kernel timestamps before it are the backlog's."""
        self._threads: list[threading.Thread] = []
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.http: HealthServer | None = None
        self.selftest: SelfTest | None = None
        self.kmsg_reader: KmsgReader | None = None
        self._pending_at_start: set[int] = set()
        """Decisions a previous run left ``pending``: settled by the first tick."""

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._resume_kills()
        # Kernel timestamps count from boot, as CLOCK_MONOTONIC does: what the kernel logged
        # from here on happened while sentinel watched.
        self._started_since_boot = time.clock_gettime(time.CLOCK_MONOTONIC)
        self._pending_at_start = {
            d.id
            for d in self.store.decisions(since=self.clock() - HISTORY_WINDOW)
            if d.outcome == "pending"
        }
        self.selftest = run_selftest(self)
        interval = float(self.policy.settings.sample_interval)
        self.scheduler.add_job(
            self.tick,
            "interval",
            seconds=interval,
            id="tick",
            max_instances=1,
            coalesce=True,
            next_run_time=_soon(),
        )
        self.scheduler.add_job(
            self._request_discover, "interval", seconds=self.options.discover_every, id="discover"
        )
        self.scheduler.add_job(
            retention.job(self.store, self.policy, self.clock),
            "interval",
            seconds=float(self.policy.settings.retention.every),
            id="retention",
            max_instances=1,
            coalesce=True,
            next_run_time=_soon(),
        )
        self._thread("evaluator", self._evaluator)
        self.worker.start()
        self._thread("deliverer", self._deliverer)
        if self.selftest.kmsg:
            self._thread("kmsg", self._follow_kmsg)
        if self.docker is not None:
            self._thread("docker-events", self._follow_docker)
        if self.kube is not None:
            kube = self.kube
            self._thread("pods", lambda: kube.follow(self._stop))
        listen = (
            self.options.listen if self.options.listen is not None else self.policy.settings.listen
        )
        if listen:
            self.http = HealthServer(listen, self.metrics, healthy=self.healthy, ready=self.ready)
            self.http.start()
            event(log, "listening", address=self.http.address)
            self._write_address(self.http.address)
        self.scheduler.start()

    def _write_address(self, address: str) -> None:
        """Where ``sentinel health`` finds the endpoint: ``STATE.address``."""
        path = Path(f"{self.store.path}.address")
        try:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(address + "\n")
            tmp.chmod(0o600)
            tmp.replace(path)
        except OSError as e:
            log.warning("cannot write %s (%s): `sentinel health` needs --url", path, e.strerror)

    def _thread(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=self._guard(name, target), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _guard(self, name: str, fn: Callable[[], None]) -> Callable[[], None]:
        """Run ``fn`` until sentinel stops; when it fails (a bug, or a fault it did not
        expect), log it with its traceback, count it, and run it again after a pause (1 s,
        doubling to 30 s): a watchdog's thread must not die silently. The kmsg follower
        starts again from the position in the state, so no kill is lost."""

        def run() -> None:
            delay = 1.0
            while not self._stop.is_set():
                try:
                    fn()
                    return
                except Exception:
                    log.exception("thread %s failed; starting it again in %.0fs", name, delay)
                    self.metrics.inc("sentinel_thread_crashes_total", thread=name)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 30.0)

        return run

    def stop(self) -> None:
        """Stop cleanly: no new tick or evaluation; the action in progress finishes (up to
        its grace period), actions not yet started are marked ``dropped``; then the last
        notifications are sent and the state is closed."""
        self._stop.set()
        with contextlib.suppress(Exception):
            self.scheduler.shutdown(wait=True)
        if self.http is not None:
            self.http.stop()
        for thread in self._threads:
            thread.join(timeout=3)
        self.worker.stop()
        with contextlib.suppress(Exception):
            self.deliver()
        self.monitor.close()
        if self.docker is not None:
            self.docker.close()
        self.store.close()

    def run_forever(self) -> int:
        """Start, then wait for SIGTERM or SIGINT; stop cleanly. Returns the exit code."""
        stop = threading.Event()

        def on_signal(signum: int, _: Any) -> None:
            event(log, "stopping", signal=signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while not stop.wait(1.0):
            pass
        self.stop()
        event(log, "stopped")
        return 0

    def healthy(self) -> bool:
        """Every thread alive, the sample ticks going on (the last successful one recent)
        and the kernel log followed (the kmsg follower read or waited recently)."""
        if self._stop.is_set() or not all(t.is_alive() for t in self._threads):
            return False
        if not self.worker.is_alive():
            return False
        now = time.monotonic()
        last = self._last_tick
        if last is not None and now - last > self._stale_after:
            return False
        kmsg = self._last_kmsg
        return kmsg is None or now - kmsg <= KMSG_STALE_S

    def ready(self) -> bool:
        return self._ticked and self.healthy()

    # -- the kernel log -----------------------------------------------------------------------

    def _follow_kmsg(self) -> None:
        after = self.store.position("kmsg", self.boot_id)
        reader = self.kmsg_reader = KmsgReader(
            self.options.kmsg, follow=True, idle=0.2, after_seq=after
        )
        parser = OomParser()
        lost = 0
        # A first start (no position ever): the kills already in the kernel's buffer
        # happened before sentinel watched. They are stored and logged, not acted on or
        # notified: a fresh install must not page about last week's kills. After a reboot
        # (a position from another boot) every kill in the buffer is newer than sentinel's
        # last stop: each is handled as it would have been had sentinel been watching.
        backlog = after is None and self.store.position_boot("kmsg") is None
        old_kills = 0
        for line in reader:
            self._last_kmsg = time.monotonic()
            if self._stop.is_set():
                return
            records = parser.flush() if line is None else parser.feed(line)
            for record in records:
                old = backlog and self._before_start(record)
                self.on_kill(record, act=not old)
                old_kills += old
            if line is None and backlog:
                backlog = False
                event(log, "kmsg-backlog", kills=old_kills, acted_on=False)
            if reader.lost != lost:
                self.metrics.inc("sentinel_kmsg_lost_records_total", reader.lost - lost)
                log.warning(
                    "kmsg: %d records were overwritten before sentinel read them",
                    reader.lost - lost,
                )
                lost = reader.lost
            if line is None and not parser.busy and reader.last_seq is not None:
                self.store.set_position("kmsg", self.boot_id, reader.last_seq)

    def _before_start(self, record: KillRecord) -> bool:
        """A kill in the first read of the buffer that the kernel logged before sentinel
        started. A kill while that read is still going (a long buffer) is new and handled.
        (printk stamps and CLOCK_MONOTONIC agree to a few ms; the slack covers that.)"""
        ts = record.kernel_timestamp
        started = self._started_since_boot
        return ts is None or started is None or ts < started - BACKLOG_SLACK_S

    def on_kill(self, record: KillRecord, *, act: bool = True) -> None:
        """Store a kill once, log it, and (``act``) evaluate the rules at once."""
        now = self.clock()
        target = self._kill_target(record)
        stored = self.store.add_kill(
            record,
            now=now,
            boot_id=self.boot_id,
            target_id=target.id,
            target_name=target.name,
            target=target.to_dict(),
            source="kmsg",
            handled=not act,
        )
        if stored is None:
            return  # read again after a restart: stored before (and handled, or resumed)
        scope = record.scope or "unknown"
        self.metrics.inc("sentinel_kills_total", scope=scope)
        event(
            log,
            "kill",
            target=target.to_dict(),
            pid=record.pid,
            comm=record.comm,
            scope=record.scope,
            constraint=record.constraint,
            rss_kb=record.rss_kb,
            task_memcg=record.task_memcg,
            oom_memcg=record.oom_memcg,
            kmsg_seq=record.kmsg_seq,
            backlog=not act,
        )
        if record.scope == "cgroup":
            self._leakers.put(target.id)
            self._leakers.put(target.name)
        if act:
            self._decide_on_kill(stored, target, record, now)

    def _decide_on_kill(self, kill_id: int, target: Target, record: KillRecord, now: float) -> None:
        """Queue a stored kill for the rules (and its Event on the pod): it stays
        unhandled in the state until the evaluation has carried out what it decided."""
        if self.kube is not None:
            self._kube_event(f"kill:{kill_id}", kill_event(target, record, self.kube.node), now)
        self._events.put(
            KillEvent(target=target, t=now, scope=record.scope, record=record, kill_id=kill_id)
        )
        self._kick.set()

    def _resume_kills(self) -> None:
        """Kills a previous run stored but did not decide on (it stopped or crashed in
        between): decided on now, so none goes unnotified."""
        for kill in self.store.unhandled_kills():
            if kill.target:
                target = Target.from_dict(kill.target)
            else:
                name = kill.target_name or f"pid {kill.record.pid}"
                target = Target(
                    id=kill.target_id or f"pid:{kill.record.pid}", name=name, runtime="process"
                )
            event(log, "kill-resumed", kill_id=kill.id, target=target.to_dict())
            self._decide_on_kill(kill.id, target, kill.record, kill.recorded_at)

    def _pods_changed(self) -> None:
        self._discover_now.set()

    def _kube_event(self, key: str, payload: dict[str, Any], now: float) -> None:
        """Queue one Kubernetes Event (``--mode kubernetes``) in the outbox."""
        self.store.enqueue(dedupe_key=f"k8s:{key}", notifier=KUBE_EVENTS, payload=payload, now=now)
        self._deliver_kick.set()

    def _evaluator(self) -> None:
        while not self._stop.is_set():
            if self._kick.wait(0.5):
                self._kick.clear()
                self.evaluate_now()

    def _kill_target(self, record: KillRecord) -> Target:
        for entry in self.snapshot.targets():
            if record.container_id and entry.id == record.container_id:
                return entry
            if record.task_memcg and entry.cgroup == record.task_memcg:
                return entry
        if self.kube is not None:
            found = self.kube.target_for(record.task_memcg, record.container_id)
            if found is not None:
                return found
        if record.container_id and self.docker is not None:
            with contextlib.suppress(SentinelError):
                info = self.docker.inspect(record.container_id)
                return self.monitor.identify_container(info, record.task_memcg)
        if self.sidecar is not None:
            found = self.sidecar.target_for_cgroup(record.task_memcg)
            if found is not None:
                return found
        if record.container_id:  # a container that is gone already (docker run --rm)
            return Target(
                id=record.container_id,
                name=record.container_id[:12],
                runtime="docker" if record.runtime == "docker" else "process",
                cgroup=record.task_memcg,
                is_self=record.container_id == self.self_container,
            )
        return Target(
            id=f"pid:{record.pid}",
            name=record.comm or f"pid {record.pid}",
            runtime="process",
            pid=record.pid,
            cgroup=record.task_memcg,
            node=self.kube.node if self.kube is not None else None,
        )

    # -- Docker events --------------------------------------------------------------------------

    def _follow_docker(self) -> None:
        assert self.docker is not None
        delay = 1.0
        since: float | None = None
        failed_at: float | None = None
        while not self._stop.is_set():
            try:
                if failed_at is not None:
                    self.docker.ping()
                    event(log, "docker-connected", away_s=round(time.monotonic() - failed_at, 3))
                    failed_at = None
                    self._discover_now.set()
                for ev in self.docker.events(since=since):
                    delay = 1.0
                    since = ev.time
                    self.metrics.inc("sentinel_docker_events_total", action=ev.action)
                    if ev.action in ("start", "restart", "die", "destroy", "stop"):
                        with self._changed_lock:
                            self._changed.add(ev.container_id)
                    if ev.action == "oom":
                        event(log, "docker-oom", container_id=ev.container_id, name=ev.name)
                    if self._stop.is_set():
                        return
            except TemporaryError as e:
                log.warning("docker events: %s (reconnecting in %.0fs)", e, delay)
            except SentinelError as e:
                log.error("docker events: %s (reconnecting in %.0fs)", e, delay)
            if failed_at is None:
                failed_at = time.monotonic()
            self.metrics.inc("sentinel_docker_reconnects_total")
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, 30.0)
            self._discover_now.set()

    def _request_discover(self) -> None:
        self._discover_now.set()

    # -- the tick -------------------------------------------------------------------------------

    def tick(self) -> None:
        """Sample and forecast, publish the snapshot, kick the evaluator. A failure is
        logged and counted; the next tick tries again (health reports a run of them)."""
        try:
            self._tick()
        except Exception:
            log.exception("tick failed")
            self.metrics.inc("sentinel_tick_failures_total")

    def _tick(self) -> None:
        started = time.process_time()
        wall = time.monotonic()
        with self._changed_lock:
            changed, self._changed = self._changed, set()
        while True:  # restarted by the worker: their memory starts over
            try:
                self._memory.pop(self._restarted.get_nowait(), None)
            except queue.Empty:
                break
        try:
            if self._discover_now.is_set() or not self._ticked:
                self._discover_now.clear()
                extra = (
                    self.sidecar.targets()
                    if self.sidecar is not None
                    else self.kube.targets()
                    if self.kube is not None
                    else []
                )
                self.monitor.discover(extra)
            elif changed:
                self.monitor.refresh(changed)
        except SentinelError as e:  # keep watching what is known
            log.warning("discovery failed: %s", e)
            self._discover_now.set()
        while True:  # killed at their limit: known leakers from now on
            try:
                self.monitor.known_leakers.add(self._leakers.get_nowait())
            except queue.Empty:
                break
        view = self.monitor.tick()
        if not self._ticked:
            self._resume_interrupted(view)
        if self.monitor.lost:
            self._discover_now.set()  # stopped or restarted: find it again next tick
        rows = []
        seen = set()
        for w in view:
            seen.add(w.target.id)
            memory = self._memory.get(w.target.id)
            if memory is None:
                memory = self._memory[w.target.id] = _TargetMemory(deque(maxlen=self._keep))
            limit = w.sample.effective_limit_bytes
            memory.points.append(MemoryPoint(w.sample.t, w.sample.usage_bytes, limit))
            memory.last = w
            rows.append((w.target.id, w.sample.t, w.sample.usage_bytes, limit))
        for target_id in [t for t in self._memory if t not in seen]:
            del self._memory[target_id]
        host = self.monitor.host_sample
        self.snapshot = Snapshot(
            watched={w.target.id: w for w in view},
            memory={i: tuple(m.points) for i, m in self._memory.items()},
            host_total_bytes=host.total_bytes if host is not None else None,
        )
        self._kick.set()  # the evaluator decides on this snapshot
        self.store.add_samples(rows)
        self._export(view)
        self._reapply(view)
        self._ticked = True
        self._last_tick = time.monotonic()
        self.metrics.inc("sentinel_ticks_total")
        self.metrics.inc("sentinel_tick_cpu_seconds_total", time.process_time() - started)
        self.metrics.set("sentinel_tick_duration_seconds", time.monotonic() - wall)

    def _resume_interrupted(self, view: list[Watched]) -> None:
        """Settle the actions a previous run left half done: sentinel stopped between
        deciding and recording the outcome. In sidecar mode that is the normal end of a
        restart of the app's PID 1 (the kernel ends the whole namespace, sentinel
        included). Each counts as ``interrupted`` (cooldowns and budgets hold), and the
        rule's notifiers are told what happened, with whether the target is running now."""
        now = self.clock()
        running = {w.target.id: w.target for w in view}
        recent = self.store.decisions(since=now - HISTORY_WINDOW)
        told = {(d.rule, d.target_id, d.at) for d in recent if d.action == "notify"}
        for d in recent:
            # A restart done, but sentinel stopped before its firing's notifications were
            # queued (in sidecar mode the app's exit ends sentinel too, sometimes just after
            # the outcome was written): told now, like an interrupted one.
            unreported = (
                d.outcome == "done"
                and d.action == "restart"
                and (d.rule, d.target_id, d.at) not in told
            )
            if not unreported and (d.outcome != "pending" or d.id not in self._pending_at_start):
                continue  # left by the previous run, not one this run is carrying out
            if not unreported:
                self.store.set_outcome(d.id, "interrupted")
            before = d.evidence.get("target") or {}
            current = running.get(d.target_id)
            back = current is not None and (
                current.pid != before.get("pid") or current.started_at != before.get("started_at")
            )
            event(
                log,
                "action-unreported" if unreported else "action-interrupted",
                rule=d.rule,
                action=d.action,
                target=before,
                decided_at=d.at,
                running_again=back,
            )
            if d.action != "restart" or d.dry_run:
                continue
            rule = next((r for r in self.policy.rules if r.name == d.rule), None)
            notifiers = [
                a.notify
                for a in (rule.do if rule is not None else [])
                if isinstance(a, NotifyAction) and a.notify in self.senders
            ]
            if not notifiers:
                continue
            payload: dict[str, Any] = {
                "kind": "action",
                "rule": d.rule,
                "target": dict(before) or {"id": d.target_id, "name": d.target_name},
                "reason": d.evidence.get("reason"),
                "evidence": dict(d.evidence.get("evidence") or {}),
                "text": f"{d.rule}: {d.evidence.get('reason')} ({d.target_name})",
                "at": d.at,
                "host": _hostname(),
                "after": {
                    "running": back,
                    "interrupted": not unreported,
                    "note": (
                        "sentinel stopped right after restarting the target"
                        if unreported
                        else "sentinel stopped while restarting the target"
                    )
                    + " (a sidecar ends with the app whose PID namespace it shares) and"
                    " started again",
                },
            }
            payload = enrich(payload, store=self.store, target_id=d.target_id, now=d.at)
            for name in notifiers:
                self.store.enqueue(
                    dedupe_key=f"decision:{d.id}:{name}", notifier=name, payload=payload, now=now
                )
            self._deliver_kick.set()

    def _reapply(self, view: list[Watched]) -> None:
        """Give new processes of an adjusted target its ``oom_score_adj`` (a fork, a
        restart): only the processes whose value differs are written."""
        if self.dry_run:
            return
        for w in view:
            value = self._adjusted.get(w.target.id)
            if value is None:
                continue
            result = actions.oom_score_adj.reapply(w.target, value, host=self.clients.host)
            error = result.error if not result.ok else None
            if result.detail.get("changed") or error != self._adjust_errors.get(w.target.id):
                actions.log_action(result, w.target)
                self.metrics.inc("sentinel_oom_score_adj_reapplied_total", outcome=result.outcome)
            if error is None:
                self._adjust_errors.pop(w.target.id, None)
            else:
                self._adjust_errors[w.target.id] = error

    def _adjusted_from_state(self) -> dict[str, int]:
        """The ``oom_score_adj`` values set before a restart of sentinel, by target."""
        out: dict[str, int] = {}
        since = self.clock() - HISTORY_WINDOW
        for target_id, d in self.store.latest_outcomes(
            "oom_score_adj", outcome="done", since=since
        ).items():
            value = (d.evidence.get("params") or {}).get("value")
            if isinstance(value, int):
                out[target_id] = value
        return out

    def _export(self, view: list[Watched]) -> None:
        self.metrics.set("sentinel_targets", float(len(view)))
        self.metrics.clear("sentinel_forecast_eta_seconds")
        self.metrics.clear("sentinel_forecast_observed_eta_seconds")
        self.metrics.clear("sentinel_memory_trend_bytes_per_second")
        self.metrics.clear("sentinel_memory_usage_bytes")
        for w in view:
            labels = {"target": w.target.name, "constraint": w.constraint}
            self.metrics.set(
                "sentinel_memory_usage_bytes", float(w.sample.usage_bytes), target=w.target.name
            )
            self.metrics.set(
                "sentinel_memory_trend_bytes_per_second", w.trend_bytes_per_s, target=w.target.name
            )
            if w.eta_seconds is not None:
                self.metrics.set("sentinel_forecast_eta_seconds", w.eta_seconds, **labels)
            if w.observed_eta_seconds is not None:
                self.metrics.set(
                    "sentinel_forecast_observed_eta_seconds", w.observed_eta_seconds, **labels
                )

    # -- decisions ------------------------------------------------------------------------------

    def evaluate_now(self) -> None:
        """Decide on the last snapshot and the kills that came in, and carry out: quick
        actions here (notifications, ``oom_score_adj``), each firing that holds a
        disruptive action on the worker (the action and what follows it, in order)."""
        with self._eval_lock:
            now = self.clock()
            events: list[KillEvent] = []
            while True:
                try:
                    events.append(self._events.get_nowait())
                except queue.Empty:
                    break
            snapshot = self.snapshot
            try:
                state = State(targets=tuple(snapshot.states()), history=self._history(now))
                decisions = evaluate(self.policy, state, events, now)
            except Exception:
                for e in events:  # the next evaluation handles these kills
                    self._events.put(e)
                raise
            records = {
                (e.target.id, e.record.pid): e.record for e in events if e.record is not None
            }
            firings: dict[tuple[str, str], list[tuple[Decision, KillRecord | None]]] = {}
            for decision in decisions:
                pid = decision.evidence.get("pid")
                record = records.get((decision.target.id, pid)) if isinstance(pid, int) else None
                firings.setdefault((decision.rule, decision.target.id), []).append(
                    (decision, record)
                )
            for firing in firings.values():
                self._predicted(firing[0][0], now)
                # A snapshot waits for the probe's report (up to its timeout): on the worker,
                # with what follows it, so that the report comes before a restart and into
                # the notifications after it, and never holds up the evaluator.
                first = next(
                    (i for i, (d, _) in enumerate(firing) if d.disruptive or d.kind == "snapshot"),
                    None,
                )
                for decision, record in firing[:first]:
                    self._carry_out(decision, now, record, snapshot)
                if first is not None:
                    self._hand_over(firing[first:], now, snapshot)
            # Decided, and what was decided is in the state (notifications queued,
            # disruptive actions recorded as pending): the kills are handled.
            self.store.mark_kills_handled(e.kill_id for e in events if e.kill_id is not None)

    def _predicted(self, decision: Decision, now: float) -> None:
        """``OOMPredicted`` on the pod when a rule fires on the forecast (not in dry run:
        nothing is done, nothing is said on the pod)."""
        if self.kube is None or decision.evidence.get("condition") != "projected_oom_within":
            return
        if self.dry_run or decision.dry_run:
            return
        key = f"predicted:{decision.rule}:{decision.target.id}:{decision.at:.3f}"
        self._kube_event(
            key, predicted_event(decision.target, decision.evidence, self.kube.node), now
        )

    def _history(self, now: float) -> History:
        """What cooldowns, budgets and the rate limit read: only the windows the policy
        looks back, through indexed queries (a year of state costs what a day does)."""
        return self.store.history(lookback(self.policy), now, outcomes=COUNTED_OUTCOMES)

    def _carry_out(
        self,
        decision: Decision,
        now: float,
        record: KillRecord | None,
        snapshot: Snapshot,
        *,
        after: Mapping[str, Any] | None = None,
        decision_id: int | None = None,
        probe: Mapping[str, Any] | None = None,
    ) -> ActionResult | None:
        """Carry out one decision (notify and escalate: queue it in the outbox). A
        disruptive one comes recorded already (``decision_id``, outcome ``pending``)."""
        dry = self.dry_run or decision.dry_run
        kind = decision.kind
        evidence = dict(decision.evidence)
        if isinstance(decision.action, (NotifyAction, Escalation)):
            notifiers = (
                [decision.action.notify]
                if isinstance(decision.action, NotifyAction)
                else list(decision.action.notifiers)
            )
            outcome = "dry_run" if dry else "queued"
            did = self._record(decision, now, dry, outcome, notifiers=notifiers)
            if not dry:
                payload = self._notification(
                    decision, evidence, record, snapshot, after, probe=probe
                )
                for name in notifiers:
                    self.store.enqueue(
                        dedupe_key=f"decision:{did}:{name}",
                        notifier=name,
                        payload=payload,
                        now=now,
                    )
                self._deliver_kick.set()
            self.metrics.inc("sentinel_actions_total", action=kind, outcome=outcome)
            event(log, "decision", **decision.to_dict(), outcome=outcome, notifiers=notifiers)
            return None
        if decision_id is None:
            decision_id = self._record(decision, now, dry, "pending")
            event(log, "decision", **decision.to_dict())
        fresh = self._fresh_target(decision.target)
        result = actions.execute(
            decision,
            fresh,
            clients=self.clients,
            dry_run=dry,
            recheck=lambda: self._recheck(decision, fresh),
        )
        if isinstance(decision.action, SnapshotAction):  # the report, kept with the decision
            self.store.set_evidence_key(decision_id, "result", result.to_dict())
        self.store.set_outcome(decision_id, result.outcome)
        self.metrics.inc("sentinel_actions_total", action=kind, outcome=result.outcome)
        if isinstance(decision.action, OomScoreAdjAction) and result.outcome == "done":
            # Copy on write: the tick reads the mapping it finds, never one being changed.
            self._adjusted = {**self._adjusted, decision.target.id: decision.action.oom_score_adj}
        return result

    def _hand_over(
        self, firing: list[tuple[Decision, KillRecord | None]], now: float, snapshot: Snapshot
    ) -> None:
        """Record a firing's first worker decision (disruptive, or a snapshot) as ``pending``
        (cooldowns and budgets see it at once) and give the firing to the worker."""
        decision = firing[0][0]
        dry = self.dry_run or decision.dry_run
        did = self._record(decision, now, dry, "pending")
        event(log, "decision", **decision.to_dict())
        self.worker.submit(_Firing(self, firing, did, now, snapshot))

    def _run_firing(self, job: _Firing) -> None:
        """On the worker: the disruptive action (or the snapshot before it), then the rest
        of the firing in order (a notification after a restart says whether the target came
        back; after a snapshot it names the probe's top growth sites)."""
        after: dict[str, Any] | None = None
        probe: Mapping[str, Any] | None = None
        ended = False
        for i, (decision, record) in enumerate(job.firing):
            try:
                result = self._carry_out(
                    decision,
                    job.now,
                    record,
                    job.snapshot,
                    after=after,
                    decision_id=job.decision_id if i == 0 else None,
                    probe=probe,
                )
            except Exception:
                if i == 0:
                    self.store.set_outcome(job.decision_id, "failed")
                raise
            if result is not None and isinstance(result.detail.get("report"), Mapping):
                probe = result.detail["report"]
            if result is not None and decision.kind in RESTARTING and not ended:
                ended = True  # the firing's restart, evict or delete_pod (after a snapshot)
                self._after_pod_action(job, decision, result)
            if decision.kind == "restart" and result is not None and result.outcome == "done":
                self._restarted.put(decision.target.id)  # its memory starts over
                self._discover_now.set()
                after = self._after_restart(decision.target)

    def _after_pod_action(self, job: _Firing, decision: Decision, result: ActionResult) -> None:
        """Kubernetes: ``PreemptiveRestart`` on the pod; an eviction a PodDisruptionBudget
        kept refusing is escalated once, to the rule's notifiers."""
        if result.dry_run:
            return
        if self.kube is not None and decision.target.runtime == "kubernetes":
            payload = restart_event(
                decision.target, decision.kind, result.outcome, result.error, self.kube.node
            )
            self._kube_event(f"action:{job.decision_id}", payload, self.clock())
        if result.detail.get("blocked"):
            rule = next((r for r in self.policy.rules if r.name == decision.rule), None)
            notifiers = (rule.notifier_names if rule is not None else ()) or tuple(
                self.policy.notifiers
            )
            blocked = replace(
                decision,
                action=Escalation(
                    restarts=0,
                    per=rule.max_restarts.per if rule is not None else 0.0,
                    notifiers=notifiers,
                    message="eviction blocked by a PodDisruptionBudget",
                ),
                reason=f"eviction blocked by a PodDisruptionBudget: {result.error}",
            )
            self._carry_out(blocked, self.clock(), None, job.snapshot)

    def _cancel_firing(self, job: _Firing) -> None:
        self.store.set_outcome(job.decision_id, "dropped")
        decision = job.firing[0][0]
        event(
            log,
            "action-cancelled",
            rule=decision.rule,
            action=decision.kind,
            target=decision.target.to_dict(),
            reason="sentinel stopped before carrying it out",
        )

    def _record(self, decision: Decision, now: float, dry: bool, outcome: str, **extra: Any) -> int:
        """Write the decision and its evidence to the state; its id."""
        return self.store.add_decision(
            at=now,
            rule=decision.rule,
            target_id=decision.target.id,
            target_name=decision.target.name,
            action=decision.kind,
            dry_run=dry,
            outcome=outcome,
            evidence={**decision.to_dict(), **extra},
        )

    def _notification(
        self,
        decision: Decision,
        evidence: Mapping[str, Any],
        record: KillRecord | None,
        snapshot: Snapshot,
        after: Mapping[str, Any] | None = None,
        *,
        probe: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What a notifier renders: kind, rule, target, reason, evidence, the kill record,
        and the allocation probe's report when a ``snapshot`` of the firing brought one."""
        if decision.kind == "escalate":
            kind = "escalation"
        elif evidence.get("condition") == "oom_killed" or record is not None:
            kind = "kill"
        else:
            kind = "action"
        out: dict[str, Any] = {
            "kind": kind,
            "rule": decision.rule,
            "target": decision.target.to_dict(),
            "reason": decision.reason,
            "evidence": dict(evidence),
            "text": f"{decision.rule}: {decision.reason} ({decision.target.name})",
            "at": decision.at,
            "host": _hostname(),
        }
        if after is not None:
            out["after"] = dict(after)
        if probe is not None:
            out["probe"] = dict(probe)
        if record is not None:
            data = record.to_dict()
            data.pop("tasks", None)  # hundreds of rows: kept in the state, not in messages
            out["record"] = data
        watched = snapshot.watched.get(decision.target.id)
        return enrich(
            out,
            store=self.store,
            target_id=decision.target.id,
            now=decision.at,
            record=record,
            forecast=watched.forecast if watched is not None else None,
            host_total_bytes=snapshot.host_total_bytes,
        )

    def _after_restart(self, before: Target) -> dict[str, Any]:
        """Did the target come back, and at what memory (for the restart's message).

        A container is started again by the restart itself. A process (sidecar mode) is
        brought back by its own restart policy, a moment later: watch for a new process in
        its cgroup for up to :data:`COMEBACK_WAIT_S`."""
        target = self._fresh_target(before)
        if self.sidecar is not None and before.runtime == "process" and before.cgroup:
            deadline = time.monotonic() + COMEBACK_WAIT_S
            while True:
                back = self.sidecar.target_in(before.cgroup)
                if back is not None and back.pid != before.pid:
                    target = back
                    break
                if time.monotonic() > deadline or self._stop.wait(0.2):
                    break
        running = target.pid is not None and target.pid != before.pid
        out: dict[str, Any] = {"running": running}
        if target.cgroup:
            with contextlib.suppress(SentinelError, OSError):
                out["usage_bytes"] = self.fs.sample(target.cgroup).usage_bytes
            if "usage_bytes" not in out and self.sidecar is not None and running:
                sample = self.sidecar.sample(target.cgroup)
                if sample is not None:
                    out["usage_bytes"] = sample.usage_bytes
        return out

    def _fresh_target(self, target: Target) -> Target:
        """The target as it is now (Docker re-read), for the action and its re-check."""
        if target.runtime == "docker" and self.docker is not None:
            try:
                info = self.docker.inspect(target.id)
            except ContainerGone:
                return target
            except SentinelError as e:
                log.warning("re-read %s: %s", target.name, e)
                return target
            fresh = self.monitor.container_target(info)
            return fresh if fresh is not None else target
        return target

    def _recheck(self, decision: Decision, fresh: Target) -> bool:
        snapshot = self.snapshot  # the newest: the worker may run well after the decision
        points: tuple[MemoryPoint, ...] = snapshot.memory.get(fresh.id, ())
        watched = snapshot.watched.get(fresh.id)
        forecast = watched.forecast if watched is not None else None
        if fresh.cgroup:
            with contextlib.suppress(SentinelError):
                s = self.fs.sample(fresh.cgroup)
                points = (*points, MemoryPoint(s.t, s.usage_bytes, s.effective_limit_bytes))
        return still_holds(decision, TargetState(fresh, forecast, points), self.clock())

    # -- notifications ----------------------------------------------------------------------------

    def _deliverer(self) -> None:
        while not self._stop.is_set():
            self._deliver_kick.wait(self.options.deliver_every)
            self._deliver_kick.clear()
            if not self._stop.is_set():
                try:
                    self.deliver()
                except Exception:  # a bug must not end delivery: the outbox keeps the items
                    log.exception("delivering notifications failed")

    def deliver(self) -> None:
        with self._deliver_lock:
            sent, failed = deliver(self.store, self.senders, self.clock())
        if sent:
            self.metrics.inc("sentinel_notifications_sent_total", sent)
        if failed:
            self.metrics.inc("sentinel_notification_failures_total", failed)
        self.metrics.set("sentinel_notifications_pending", float(self.store.pending_count()))

    def _describe_metrics(self) -> None:
        m = self.metrics
        m.describe("sentinel_kills_total", "counter", "Kernel OOM kills recorded, by scope.")
        m.describe(
            "sentinel_actions_total", "counter", "Decisions carried out, by action and outcome."
        )
        m.describe(
            "sentinel_forecast_eta_seconds",
            "gauge",
            "Seconds to the projected OOM kill (the confident forecast rules act on).",
        )
        m.describe(
            "sentinel_forecast_observed_eta_seconds",
            "gauge",
            "Seconds to the limit at the trend of the last minutes, while usage clearly rises.",
        )
        m.describe(
            "sentinel_memory_trend_bytes_per_second",
            "gauge",
            "Growth of each target's memory over the last minutes (negative when falling).",
        )
        m.describe("sentinel_memory_usage_bytes", "gauge", "Memory usage of each target.")
        m.describe("sentinel_targets", "gauge", "Targets watched.")
        m.describe("sentinel_ticks_total", "counter", "Sample ticks run.")
        m.describe("sentinel_tick_cpu_seconds_total", "counter", "CPU time spent in ticks.")
        m.describe("sentinel_tick_duration_seconds", "gauge", "Wall time of the last tick.")
        m.describe("sentinel_notifications_pending", "gauge", "Notifications in the outbox.")
        m.describe(
            "sentinel_kmsg_lost_records_total", "counter", "kmsg records overwritten unread."
        )


@dataclass
class _Firing:
    """A firing of one rule on one target, from its disruptive action on: a worker job."""

    daemon: Daemon
    firing: list[tuple[Decision, KillRecord | None]]
    decision_id: int
    now: float
    snapshot: Snapshot

    @property
    def deadline_s(self) -> float:
        """The longest this job may take: every action's own limit, plus a margin."""
        total = 0.0
        for decision, _ in self.firing:
            action = decision.action
            if isinstance(action, RestartAction):
                total += float(action.restart.grace_period) + 60.0 + COMEBACK_WAIT_S
            elif isinstance(action, RunAction):
                total += float(action.run.timeout) + 5.0
            elif isinstance(action, SnapshotAction):
                total += float(action.snapshot.timeout) + 5.0
            else:
                total += 10.0
        return total

    def run(self) -> None:
        self.daemon._run_firing(self)

    def cancel(self) -> None:
        self.daemon._cancel_firing(self)


def _soon() -> datetime:
    return datetime.now(UTC)


def points_to_keep(policy: Policy) -> int:
    """Memory readings per target that the policy's conditions can look back on."""
    longest = max(
        (
            float(rule.when.memory_above.for_)
            for rule in policy.rules
            if rule.when is not None and rule.when.memory_above is not None
        ),
        default=0.0,
    )
    interval = float(policy.settings.sample_interval)
    return max(4, int(longest / interval) + 4)


def tick_deadline(policy: Policy) -> float:
    """Seconds without a successful tick after which sentinel is unhealthy: three sample
    intervals, and at least a minute (a slow Docker daemon can hold up one discovery).
    Actions do not count: they run on the worker, never inside a tick."""
    return max(60.0, 3 * float(policy.settings.sample_interval))


def _hostname() -> str:
    return os.uname().nodename


def _boot_id(proc: Path) -> str:
    try:
        return (proc / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown-boot"
