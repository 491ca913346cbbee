"""The allocation probe (sentinel/probe.py) as an app runs it: the exported single file, in an
empty directory, under ``python -S -I`` (no site-packages, no sentinel), beside real Python
apps in memory-limited cgroups. Requests, SIGUSR2 (chained to the app's own handler), the
baseline, the trend that tells a leak from churn, and the runner."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import cgroups
from daemon_process import Lines, wait_for
from sentinel.cli import main as sentinel_main

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "sentinel" / "probe.py"

APP = """\
import sys
LEAK = []
CACHE = [b""]
def grow(n):
    LEAK.append(bytearray(n << 20))  # LEAK LINE
def churn(n):
    CACHE[0] = bytes(n << 20)  # CHURN LINE
print("ready", flush=True)
for line in sys.stdin:
    word, n = line.split()
    {"grow": grow, "churn": churn}[word](int(n))
    print("ok", flush=True)
"""
LEAK_LINE = 5
CHURN_LINE = 7


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    """``sentinel probe export``: the probe alone in an otherwise empty directory."""
    where = tmp_path / "probe-only"
    assert sentinel_main(["probe", "export", str(where)]) == 0
    assert sorted(p.name for p in where.iterdir()) == ["sentinel_probe.py"]
    assert (where / "sentinel_probe.py").read_bytes() == PROBE.read_bytes()
    return where / "sentinel_probe.py"


def test_the_probe_imports_nothing_but_the_standard_library(exported: Path, tmp_path: Path) -> None:
    tree = ast.parse(PROBE.read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0
    }
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported
    # Imported and started with no site-packages and nothing of sentinel on the path.
    check = (
        "import sys; sys.path.insert(0, sys.argv[1]); import sentinel_probe; "
        "p = sentinel_probe.start(warmup=0); "
        "assert sentinel_probe.start() is p and sentinel_probe.running() is p; "
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    empty = tmp_path / "cwd"
    empty.mkdir()
    out = subprocess.run(
        [sys.executable, "-S", "-I", "-c", check, str(exported.parent)],
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    modules = set(json.loads(out.stdout.replace("'", '"')))
    assert "sentinel_probe" in modules
    assert "sentinel" not in modules
    foreign = modules - set(sys.stdlib_module_names) - set(sys.builtin_module_names)
    assert foreign <= {"sentinel_probe", "__main__"}, foreign


def test_the_runner_runs_a_module_as_main_and_bad_settings_say_so_in_one_line(
    exported: Path, tmp_path: Path
) -> None:
    pkg = tmp_path / "app" / "svc"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "main.py").write_text(
        "import sys, sentinel_probe\n"
        "print(__name__, sys.argv[1:], sentinel_probe.running().frames)\n"
    )
    env = {"SENTINEL_PROBE_FRAMES": "many", "PYTHONPATH": str(exported.parent)}
    result = subprocess.run(
        [sys.executable, "-S", "-m", "sentinel_probe", "--", "-m", "svc.main", "a", "-b"],
        cwd=tmp_path / "app",
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "__main__ ['a', '-b'] 1"
    assert result.stderr.strip().splitlines() == [
        "sentinel_probe: SENTINEL_PROBE_FRAMES: invalid literal for int() with base 10: "
        "'many'; using 1"
    ]
    missing = subprocess.run(
        [sys.executable, "-S", "-I", str(exported), "--", str(tmp_path / "nope.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    assert "nope.py: no such file" in missing.stderr


class ProbedApp:
    """The app above, run by the exported probe (``python -S -I sentinel_probe.py -- app``)
    in ``cg``, driven line by line on stdin."""

    def __init__(self, cg: cgroups.Cgroup, exported: Path, workdir: Path, **env: str) -> None:
        self.dir = workdir / "probe-dir"
        app = workdir / "app.py"
        app.write_text(APP)
        self.app = app
        self.proc = cg.spawn(
            [sys.executable, "-S", "-I", str(exported), "--", str(app)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "SENTINEL_PROBE_DIR": str(self.dir), **env},
        )
        assert self.proc.stdout is not None
        self.lines = Lines(self.proc.stdout)
        assert self.lines.next(30, "the app to start") == "ready\n"

    def do(self, word: str, mib: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{word} {mib}\n")
        self.proc.stdin.flush()
        assert self.lines.next(30, f"the app to {word}") == "ok\n"

    def ask(self, request_id: str) -> dict[str, Any]:
        """Write ``request-ID`` and wait for ``report-ID.json``."""
        (self.dir / f"request-{request_id}").write_text("")
        path = self.dir / f"report-{request_id}.json"
        wait_for(path.exists, f"report-{request_id}.json", 30, every=0.05)
        report: dict[str, Any] = json.loads(path.read_text())
        return report

    def site(self, report: dict[str, Any], line: int) -> dict[str, Any] | None:
        for s in report["sites"]:
            if s["file"] == str(self.app) and s["line"] == line:
                return dict(s)
        return None


def test_a_request_is_answered_with_the_leaking_line_and_the_trend_tells_leak_from_churn(
    memory_cgroup: cgroups.Cgroup, exported: Path, tmp_path: Path
) -> None:
    app = ProbedApp(memory_cgroup, exported, tmp_path, SENTINEL_PROBE_WARMUP="0")
    wait_for(app.dir.is_dir, "the probe's directory", 10)
    first = app.ask("r1")  # the baseline may be this request's (warm-up 0: a race)
    assert not (app.dir / "request-r1").exists()
    assert first["pid"] == app.proc.pid
    assert first["request"] == "r1"
    plan = [(2, 4), (2, 1), (2, 6), (2, 2)]  # the leak grows each time, the cache goes up and down
    reports = []
    for i, (grow, churn) in enumerate(plan):
        app.do("grow", grow)
        app.do("churn", churn)
        reports.append(app.ask(f"r{i + 2}"))
    last = reports[-1]
    top = last["sites"][0]
    assert (top["file"], top["line"]) == (str(app.app), LEAK_LINE)
    assert top["code"] == "LEAK.append(bytearray(n << 20))  # LEAK LINE"
    assert top["growth_bytes"] >= 7 << 20  # 8 MiB leaked since the baseline (or 6 at least)
    assert top["since_previous_bytes"] >= 2 << 20
    assert top["growth_per_hour_bytes"] > top["growth_bytes"]  # well under an hour
    assert top["traceback"][-1]["line"] == LEAK_LINE
    assert top["steady"] is True
    assert f"{app.app}:{LEAK_LINE}" in last["steady"]
    churn = app.site(last, CHURN_LINE)
    assert churn is not None
    assert churn["steady"] is False
    assert f"{app.app}:{CHURN_LINE}" not in last["steady"]
    assert last["totals"]["growth_bytes"] >= 7 << 20
    assert last["overhead"]["tracemalloc_bytes"] > 0
    assert last["overhead"]["cpu_s"] >= 0
    assert last["frames"] == 1
    assert last["reports"] == 5
    # Nothing half-written is ever left: only whole reports, and no temporary files.
    assert sorted(p.name for p in app.dir.iterdir() if p.name.startswith(".")) == []


def test_sigusr2_reaches_the_app_handler_too_and_a_report_asked_early_compares_with_the_start(
    memory_cgroup: cgroups.Cgroup, tmp_path: Path, exported: Path
) -> None:
    """One-line enable after the app's own handler: both answer each signal."""
    app = tmp_path / "svc.py"
    app.write_text(
        "import os, signal, sys, time\n"
        f"sys.path.insert(0, {str(exported.parent)!r})\n"
        "signal.signal(signal.SIGUSR2, lambda *_: os.write(1, b'app-usr2\\n'))\n"
        "import sentinel_probe; sentinel_probe.start()\n"
        "HELD = [bytearray(3 << 20)]  # HELD LINE\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    time.sleep(1)\n"
    )
    probe_dir = tmp_path / "shared"
    proc = memory_cgroup.spawn(
        [sys.executable, "-S", "-I", str(app)],
        stdout=subprocess.PIPE,
        env={**os.environ, "SENTINEL_PROBE_DIR": str(probe_dir), "SENTINEL_PROBE_WARMUP": "1h"},
    )
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    assert lines.next(30, "ready") == "ready\n"
    for n in (1, 2):
        os.kill(proc.pid, signal.SIGUSR2)
        assert lines.next(30, "the app's own handler") == "app-usr2\n"
        wait_for(
            lambda n=n: len(list(probe_dir.glob("report-signal-*.json"))) == n,  # type: ignore[misc]
            f"signal report {n}",
            30,
        )
    reports = sorted(
        (json.loads(p.read_text()) for p in probe_dir.glob("report-signal-*.json")),
        key=lambda r: r["reports"],
    )
    first, second = reports
    assert first["trigger"] == "signal"
    assert first["request"] is None
    # Asked long before the warm-up ended: growth since tracing started, then a baseline.
    assert first["baseline"]["kind"] == "start"
    held = [s for s in first["sites"] if s["line"] == 5 and s["file"] == str(app)]
    assert held
    assert held[0]["growth_bytes"] >= 3 << 20
    assert second["baseline"]["kind"] == "request"
    assert not [s for s in second["sites"] if s["line"] == 5]  # no growth since
    assert proc.poll() is None  # the default action of SIGUSR2 (exit) never ran


def test_without_a_directory_a_signal_report_goes_to_stderr(
    memory_cgroup: cgroups.Cgroup, tmp_path: Path, exported: Path
) -> None:
    app = tmp_path / "quiet.py"
    app.write_text("import time\nprint('ready', flush=True)\ntime.sleep(60)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_PROBE")}
    proc = memory_cgroup.spawn(
        [sys.executable, "-S", "-I", str(exported), "--", str(app)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env, "SENTINEL_PROBE_WARMUP": "0"},
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert Lines(proc.stdout).next(30, "ready") == "ready\n"
    os.kill(proc.pid, signal.SIGUSR2)
    line = Lines(proc.stderr).next(30, "the report on stderr")
    assert line is not None
    assert line.startswith("sentinel_probe: report {")
    report = json.loads(line.split(" ", 2)[2])
    assert report["pid"] == proc.pid
    assert report["trigger"] == "signal"
    assert proc.poll() is None
