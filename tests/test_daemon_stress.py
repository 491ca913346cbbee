"""The daemon under load, and its stop, against the real kernel and a real Docker daemon.

The stress test runs for a minute with everything at once: ticks every 250 ms, real kernel
kills of processes in this test's memory cgroups, containers killed by their own limits
(each a kernel kill and a burst of Docker events: create, start, oom, die, destroy), and a
container restarted again and again by a rule (the action worker busy with grace periods
while kills come in). Then: no thread died or was restarted, no tick failed, ``/healthz``
answered 200 throughout, and every kill is stored and notified exactly once.

The stop test sends SIGTERM while a restart waits out its grace period and a second one
waits behind it: the first finishes, the second is marked ``dropped``; none stays
``pending``.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import cgroups
from daemon_process import SentinelProcess
from docker_fixtures import Container, RunContainer, docker

pytestmark = pytest.mark.kernel

MIB = 1 << 20
STRESS_S = 60.0


def stress_policy(tag: str) -> str:
    return f"""\
version: 1
settings:
  sample_interval: 250ms
  max_actions_per_minute: 1000
notifiers:
  ops-log: {{type: log}}
rules:
  - name: process-kills
    match: {{runtime: process}}
    when: {{oom_killed: true}}
    do:
      - notify: ops-log
  - name: container-kills
    match: {{labels: {{sentinel.e2e: "{tag}"}}}}
    when: {{oom_killed: true}}
    do:
      - notify: ops-log
  - name: restart-holder
    match: {{labels: {{sentinel.e2e: "{tag}", role: holder}}}}
    when: {{memory_above: {{bytes: 8Mi, for: 1s}}}}
    do:
      - restart: {{grace_period: 2s}}
      - notify: ops-log
    cooldown: 3s
    max_restarts: {{count: 1000, per: 1h}}
"""


def labelled(tag: str, *more: str) -> list[str]:
    options = ["--label", f"sentinel.e2e={tag}"]
    for label in more:
        options += ["--label", label]
    return options


class Load:
    """Runs the kills for :data:`STRESS_S`; what it caused, for the checks."""

    def __init__(self, run_container: RunContainer, image: str, tag: str) -> None:
        self.run_container = run_container
        self.image = image
        self.tag = tag
        self.process_memcgs: list[str] = []
        self.containers: list[Container] = []
        self.errors: list[str] = []
        self.until = time.monotonic() + STRESS_S

    def processes(self) -> None:
        """A process killed by its cgroup's limit every ~2 s."""
        try:
            while time.monotonic() < self.until:
                with cgroups.temporary(limit_bytes=24 * MIB) as cg:
                    proc = cgroups.allocate(cg, 4, grow_mib=4, every=0.01)
                    assert proc.stdin is not None
                    assert proc.stdout is not None
                    code = proc.wait(timeout=30)
                    proc.stdin.close()
                    proc.stdout.close()
                    if code != -9:
                        self.errors.append(f"allocator in {cg.path} exited {code}, not killed")
                        continue
                    self.process_memcgs.append(cg.path)
                time.sleep(1.5)
        except Exception as e:  # reported by the test, not lost in a thread
            self.errors.append(f"processes: {e!r}")

    def docker(self) -> None:
        """A container killed by its own limit every ~3 s (kernel kill + Docker events)."""
        try:
            while time.monotonic() < self.until:
                c = self.run_container(
                    self.image,
                    "--rate",
                    "64",
                    "--step-ms",
                    "10",
                    memory="24m",
                    options=labelled(self.tag),
                )
                code = c.wait(timeout=60)
                if code != 137:
                    self.errors.append(f"container {c.name} exited {code}, not killed")
                    continue
                self.containers.append(c)
                time.sleep(2.0)
        except Exception as e:
            self.errors.append(f"docker: {e!r}")


def healthz(s: SentinelProcess, stop: threading.Event, bad: list[str]) -> None:
    while not stop.wait(0.5):
        try:
            status, body = s.get("/healthz")
        except Exception as e:  # reported by the test
            bad.append(repr(e))
            continue
        if status != 200:
            bad.append(f"{status}: {body[:200]}")


@pytest.mark.timeout(400)
def test_a_minute_of_ticks_kills_and_docker_events_loses_nothing(
    tmp_path: Path, run_container: RunContainer, leaker_image: str
) -> None:
    tag = uuid.uuid4().hex[:16]
    with SentinelProcess.start(stress_policy(tag), tmp_path) as s:
        s.wait_ready()
        holder = run_container(
            leaker_image,
            "--baseline",
            "16",
            "--rate",
            "0",
            memory="64m",
            options=labelled(tag, "role=holder"),
        )
        load = Load(run_container, leaker_image, tag)
        stop_probe = threading.Event()
        unhealthy: list[str] = []
        threads = [
            threading.Thread(target=load.processes),
            threading.Thread(target=load.docker),
            threading.Thread(target=healthz, args=(s, stop_probe, unhealthy)),
        ]
        ticks_before = s.metric("sentinel_ticks_total") or 0
        for t in threads:
            t.start()
        for t in threads[:2]:
            t.join(timeout=STRESS_S + 120)
        stop_probe.set()
        threads[2].join(timeout=10)
        assert load.errors == []
        assert len(load.process_memcgs) >= 10, load.process_memcgs
        assert len(load.containers) >= 8, [c.name for c in load.containers]

        def stored(**match: Any) -> list[dict[str, Any]]:
            return s.logs("kill", **match)

        # Every kill stored and notified, once: wait for the last ones to come through.
        def missing() -> list[str]:
            notes = s.notifications(kind="kill")
            memcgs = {(n.get("record") or {}).get("task_memcg") for n in notes}
            ids = {(n.get("target") or {}).get("id") for n in notes}
            return [m for m in load.process_memcgs if m not in memcgs] + [
                c.name for c in load.containers if c.id not in ids
            ]

        try:
            s.wait_for(lambda: not missing(), "every kill's notification", 60)
        except AssertionError:
            lost = missing()
            seen = [(k.get("task_memcg"), k.get("backlog")) for k in stored()]
            pytest.fail(f"{len(lost)} kills not notified: {lost}\nstored: {seen}")
        notes = s.notifications(kind="kill")
        for memcg in load.process_memcgs:
            assert len(stored(task_memcg=memcg)) == 1, memcg
            mine = [n for n in notes if (n.get("record") or {}).get("task_memcg") == memcg]
            assert len(mine) == 1, (memcg, mine)
        for c in load.containers:
            assert len(stored(target_id=c.id)) == 1, c.name
            assert len([n for n in notes if (n.get("target") or {}).get("id") == c.id]) == 1

        # The worker kept restarting the holder while the kills came in.
        restarts = s.logs("action", action="restart", outcome="done")
        assert [a for a in restarts if a["target"]["id"] == holder.id], "no restart done"

        # No thread died, no tick failed, /healthz held, and ticks kept their pace.
        assert s.metric("sentinel_thread_crashes_total") in (None, 0)
        assert s.metric("sentinel_tick_failures_total") in (None, 0)
        assert unhealthy == []
        ticks = (s.metric("sentinel_ticks_total") or 0) - ticks_before
        assert ticks >= STRESS_S / 0.25 / 2, f"only {ticks} ticks in {STRESS_S:.0f}s"
        assert s.metric("sentinel_kmsg_lost_records_total") in (None, 0)
        assert "Traceback" not in s.stderr()


def stop_policy(tag: str) -> str:
    return f"""\
version: 1
settings:
  sample_interval: 500ms
notifiers:
  ops-log: {{type: log}}
rules:
  - name: restart-big
    match: {{labels: {{sentinel.e2e: "{tag}"}}}}
    when: {{memory_above: {{bytes: 8Mi, for: 1s}}}}
    do:
      - restart: {{grace_period: 8s}}
      - notify: ops-log
    cooldown: 10m
"""


@pytest.mark.timeout(180)
def test_stop_finishes_the_restart_in_progress_and_marks_the_one_waiting(
    tmp_path: Path, run_container: RunContainer, leaker_image: str
) -> None:
    tag = uuid.uuid4().hex[:16]
    # No SIGTERM handler as PID 1: each restart waits out its whole grace period.
    hold = ["--baseline", "16", "--rate", "0", "--no-term-handler"]
    with SentinelProcess.start(stop_policy(tag), tmp_path) as s:
        s.wait_ready()
        first = run_container(leaker_image, *hold, memory="64m", options=labelled(tag))
        second = run_container(leaker_image, *hold, memory="64m", options=labelled(tag))

        def pending() -> list[dict[str, Any]]:
            return [d for d in s.logs("decision", action="restart") if "outcome" not in d]

        s.wait_for(lambda: len(pending()) == 2, "both restarts to be decided", 60)
        # The worker has begun one restart: Docker saw its SIGTERM (ignored by PID 1).
        since = str(int(time.time()) - 120)

        def signalled() -> str:
            until = str(int(time.time()) + 1)
            out = docker(
                "events",
                "--since",
                since,
                "--until",
                until,
                "--filter",
                "event=kill",
                "--filter",
                f"label=sentinel.e2e={tag}",
                "--format",
                "{{.Actor.ID}}",
            ).stdout
            return out.strip()

        s.wait_for(signalled, "the first restart to begin", 30)
        t0 = time.monotonic()
        code = s.stop()
        took = time.monotonic() - t0
    assert code == 0, s.stderr()[-2000:]
    assert took < 8 + 15, f"stop took {took:.1f}s"
    decided = {
        d["target_id"]: d
        for d in s.events()
        if d["event"] == "decision" and d.get("action") == "restart"
    }
    assert set(decided) == {first.id, second.id}, decided
    outcomes = sorted(d["outcome"] for d in decided.values())
    assert "pending" not in outcomes
    assert outcomes == ["done", "dropped"], outcomes
    cancelled = s.logs("action-cancelled")
    assert len(cancelled) == 1
    assert cancelled[0]["action"] == "restart"
