"""The ``snapshot`` action against real probed apps (in memory-limited cgroups), and the pure
parts around it: the policy key, the summary kept in the state, the Slack section (outside
text made inert), and the line ``sentinel events`` prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import cgroups
from daemon_process import Lines
from sentinel.actions import Clients, execute, snapshot
from sentinel.cli.run import _event_line
from sentinel.model import Target
from sentinel.notifiers.slack_render import render
from sentinel.policy import Decision
from sentinel.policy.load import load_policy
from sentinel.policy.model import SnapshotAction
from slack_server import message_problem

REPO = Path(__file__).resolve().parents[1]
APP = """\
import sys, time
sys.path.insert(0, sys.argv[1])
import sentinel_probe
sentinel_probe.start()
HELD = []
def handle(i):
    HELD.append(bytearray(1 << 20))  # the leak
for i in range(6):
    handle(i)
print("ready", flush=True)
time.sleep(120)
"""
LEAK_LINE = 7


def probed_app(cg: cgroups.Cgroup, tmp_path: Path, probe_dir: Path | None) -> subprocess.Popen[str]:
    (tmp_path / "sentinel_probe.py").write_bytes((REPO / "sentinel" / "probe.py").read_bytes())
    app = tmp_path / "service.py"
    app.write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_PROBE")}
    if probe_dir is not None:
        env["SENTINEL_PROBE_DIR"] = str(probe_dir)
    proc = cg.spawn(
        [sys.executable, "-S", "-I", str(app), str(tmp_path)],
        stdout=subprocess.PIPE,
        env={**env, "SENTINEL_PROBE_WARMUP": "1h"},
    )
    assert proc.stdout is not None
    assert Lines(proc.stdout).next(30, "the app") == "ready\n"
    return proc


def target(pid: int, **extra: Any) -> Target:
    return Target(id=f"pid:{pid}", name="service", runtime="process", pid=pid, **extra)


def test_snapshot_signals_the_probe_and_brings_back_the_leaking_line(
    memory_cgroup: cgroups.Cgroup, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    proc = probed_app(memory_cgroup, tmp_path, shared)
    result = snapshot.take(target(proc.pid), timeout=10, directory=str(shared), dry_run=False)
    assert result.outcome == "done", result
    assert result.detail["signal"] is True
    assert result.detail["signalled"] is True
    report = result.detail["report"]
    top = report["sites"][0]
    assert (top["file"], top["line"]) == (str(tmp_path / "service.py"), LEAK_LINE)
    assert top["code"] == "HELD.append(bytearray(1 << 20))  # the leak"
    assert top["growth_bytes"] >= 6 << 20
    assert report["pid"] == proc.pid
    assert list(shared.iterdir()) == []  # request answered and removed, report taken away
    assert proc.poll() is None


def test_without_a_dir_the_probe_dir_is_found_in_the_process_environment(
    memory_cgroup: cgroups.Cgroup, tmp_path: Path
) -> None:
    shared = tmp_path / "from-env"
    proc = probed_app(memory_cgroup, tmp_path, shared)
    decision = Decision(
        rule="probe",
        target=target(proc.pid),
        action=SnapshotAction(snapshot={"timeout": "10s"}),
        at=0.0,
        reason="test",
        evidence={},
        dry_run=False,
    )
    result = execute(
        decision, decision.target, clients=Clients(), dry_run=False, recheck=lambda: False
    )  # not disruptive: no re-check asked
    assert result.outcome == "done", result
    assert result.detail["dir"] == f"/proc/{proc.pid}/root{shared}"
    assert result.detail["report"]["sites"][0]["line"] == LEAK_LINE


def test_a_process_without_the_probe_is_never_sent_sigusr2(
    memory_cgroup: cgroups.Cgroup, tmp_path: Path
) -> None:
    """SIGUSR2's default action ends a process: no handler, no signal."""
    proc = memory_cgroup.spawn(
        [sys.executable, "-S", "-c", "import time; print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert Lines(proc.stdout).next(30, "ready") == "ready\n"
    result = snapshot.take(target(proc.pid), timeout=1, directory=None, dry_run=False)
    assert result.outcome == "failed"
    assert result.error is not None
    assert f"process {proc.pid} does not handle SIGUSR2" in result.error
    assert f"process {proc.pid} has no SENTINEL_PROBE_DIR" in result.error
    shared = tmp_path / "shared"
    shared.mkdir()
    timed_out = snapshot.take(target(proc.pid), timeout=0.5, directory=str(shared), dry_run=False)
    assert timed_out.outcome == "failed"
    assert "no report from the probe within 0.5s" in (timed_out.error or "")
    assert list(shared.iterdir()) == []  # the unanswered request is taken back
    assert proc.poll() is None


def test_dry_run_and_the_safety_rail_ask_nothing(
    memory_cgroup: cgroups.Cgroup, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    proc = probed_app(memory_cgroup, tmp_path, shared)
    dry = snapshot.take(target(proc.pid), timeout=5, directory=str(shared), dry_run=True)
    assert dry.outcome == "dry_run"
    assert dry.detail["signal"] is True
    assert list(shared.iterdir()) == []
    me = snapshot.take(
        target(os.getpid(), is_self=True), timeout=5, directory=str(shared), dry_run=False
    )
    assert me.outcome == "refused"
    assert list(shared.iterdir()) == []


# --- pure ---------------------------------------------------------------------------------


def test_snapshot_policy_forms() -> None:
    text = """\
version: 1
notifiers: {ops: {type: log}}
rules:
  - name: hourly-probe
    do: [{snapshot: null}]
    cooldown: 1h
  - name: leak
    when: {projected_oom_within: 10m}
    do:
      - snapshot: {timeout: 3s, dir: "/shared/probe/{name}"}
      - restart: {}
      - notify: ops
  - name: bare
    when: {projected_oom_within: 10m}
    do: [{snapshot: true}]
"""
    policy = load_policy(text, "p.yaml")
    first, second, third = (r.do[0] for r in policy.rules)
    assert isinstance(first, SnapshotAction)
    assert first.snapshot.timeout == 10.0
    assert isinstance(second, SnapshotAction)
    assert second.snapshot.timeout == 3.0
    assert second.snapshot.dir == "/shared/probe/{name}"
    assert isinstance(third, SnapshotAction)
    assert third.snapshot.dir is None
    assert not SnapshotAction.disruptive
    with pytest.raises(Exception, match=r"snapshot\.wait"):
        load_policy(text.replace("timeout: 3s", "wait: 3s"), "p.yaml")


def test_parse_probe_dir() -> None:
    env = b"PATH=/bin\0SENTINEL_PROBE_DIR=/shared/p\0HOME=/root\0"
    assert snapshot.parse_probe_dir(env) == "/shared/p"
    assert snapshot.parse_probe_dir(b"SENTINEL_PROBE_DIR=relative\0") is None
    assert snapshot.parse_probe_dir(b"") is None


def hostile_report(n: int = 100) -> dict[str, Any]:
    return {
        "pid": 42,
        "at": 7200.0,
        "baseline": {"at": 3600.0, "kind": "warmup"},
        "totals": {"growth_bytes": "lots", "traced_bytes": 1 << 30},
        "overhead": {"tracemalloc_bytes": 12345, "cpu_s": 0.5},
        "sites": [
            {
                "file": "/srv/" + "x" * 1000 + f"/<!channel>/*bold*_{i}`.py",
                "line": 10 + i,
                "code": "items.append(`<@U123>` & ~strike~)" + "y" * 1000,
                "growth_bytes": (100 - i) << 20,
                "growth_per_hour_bytes": (100 - i) << 20,
                "steady": i == 0,
                "points": 5,
                "traceback": [{"file": "z" * 5000, "line": j} for j in range(50)],
            }
            for i in range(n)
        ]
        + ["not a site", {"line": True}],
    }


def test_summary_is_bounded_and_typed() -> None:
    out = snapshot.summarize(hostile_report())
    assert len(json.dumps(out)) <= snapshot.SUMMARY_LIMIT
    assert 1 <= len(out["sites"]) <= snapshot.SITES_KEPT
    assert all(len(s["file"]) <= snapshot.TEXT_LIMIT for s in out["sites"])
    assert out["sites"][0]["file"].endswith("/<!channel>/*bold*_0`.py")  # the end is kept
    assert out["totals"]["growth_bytes"] is None  # not a number: dropped
    assert out["steady"] == [out["sites"][0]["file"] + ":10"]
    assert out["baseline_at"] == 3600.0


def action_notification(probe: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "action",
        "rule": "leak",
        "target": {"id": "pid:42", "name": "svc", "runtime": "process"},
        "reason": "projected OOM kill in 40s",
        "evidence": {"condition": "projected_oom_within"},
        "actions": [
            {"action": "snapshot", "outcome": "done"},
            {"action": "restart", "outcome": "done"},
        ],
        "after": {"running": True},
        "host": "h",
        "probe": probe,
    }


def test_slack_names_the_top_growth_sites_with_outside_text_made_inert() -> None:
    probe = snapshot.summarize(hostile_report())
    message = render(action_notification(probe))
    assert message_problem(message) is None
    growth = [b for b in message["blocks"] if "Top growth sites" in str(b)]
    assert len(growth) == 1
    text = growth[0]["text"]["text"]
    assert "pid 42; since its baseline 1h before" in text
    assert "<!channel>" not in text
    assert "&lt;!channel&gt;" in text
    assert "<@U123>" not in text
    assert "&lt;@U123&gt;" in text
    assert "`<" not in text
    assert "ˋ" in text
    assert "100 MiB/h · grew in every report" in text
    assert "*Steady growth* (grew at each of 5 reports and checkpoints" in text
    assert "Top growth site: " in message["text"]
    assert "<!channel>" not in message["text"]
    assert "*bold*" not in message["text"]  # outside the code block: lookalikes


def test_a_readable_report_names_file_and_line_everywhere() -> None:
    probe = snapshot.summarize(
        {
            "pid": 7,
            "sites": [
                {
                    "file": "/app/scheduler.py",
                    "line": 12,
                    "code": "RUNS.append(job)",
                    "growth_bytes": 50 << 20,
                    "growth_per_hour_bytes": 3 << 30,
                    "steady": True,
                    "points": 3,
                },
                {"file": "/app/other.py", "line": 3, "growth_bytes": 0},
            ],
        }
    )
    message = render(action_notification(probe))
    text = json.dumps(message["blocks"], ensure_ascii=False)
    assert "`/app/scheduler.py:12` +50 MiB, 3 GiB/h · grew in every report" in text
    assert "other.py" not in text  # did not grow
    assert message["text"].endswith("Top growth site: /app/scheduler.py:12 (+50 MiB, 3 GiB/h).")
    row = {
        "at": 0.0,
        "event": "decision",
        "rule": "leak",
        "action": "snapshot",
        "target": "svc",
        "outcome": "done",
        "dry_run": False,
        "reason": "projected OOM kill in 40s",
        "probe": probe,
        "error": None,
    }
    line = _event_line(row)
    assert line.endswith("top growth: /app/scheduler.py:12 +50 MiB, 3 GiB/h, steady")
    failed = _event_line({**row, "probe": None, "outcome": "failed", "error": "no report"})
    assert failed.endswith("; no report")
