"""End to end: a leaking Python service, the allocation probe in it, and ``sentinel run --mode
sidecar`` beside it in its own PID namespace (``unshare --pid --fork --mount-proc``, as in
tests/test_daemon_sidecar.py), with a Slack notifier pointed at the local Slack-compatible
server (the real ``slack_sdk`` talks to it).

A supervisor loop plays the app's restart policy: it runs the app in a memory cgroup limited
to 256 MiB and starts it again when it exits, noting each exit status. The rule is
``snapshot`` then ``restart`` then ``notify``: the Slack message of the preemptive restart
must name the leaking file and line, found by the probe, before the kernel kills anything.
The app runs with ``python -S`` and the exported probe file only: no sentinel, no
site-packages.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cgroups
from daemon_process import SentinelProcess, kernel_kills
from sentinel.cli import main as sentinel_main
from slack_server import CHANNEL, TOKEN, Message, SlackServer, slack_server

pytestmark = pytest.mark.kernel

MIB = 1 << 20
SUPERVISOR = r"""
(
  while :; do
    sh -c 'echo $$ > "$APP_PROCS" && cd "$APP_DIR" && exec $APP_CMD' </dev/null >/dev/null 2>&1
    echo "$?" >> "$APP_EXITS"
    sleep 0.2
  done
) &
exec "$@"
"""
"""pid 1 of the namespace: starts the supervisor loop, then becomes sentinel."""

SERVICE = """\
import time
import sentinel_probe; sentinel_probe.start()

SESSIONS = []


def handle(request):
    SESSIONS.append(request.encode() + b"s" * 65536)  # the deliberate leak
    return len(request)


while True:
    handle(f"GET /items/{time.time()}")
    time.sleep(0.015)
"""
SERVICE_LEAK_LINE = 8

SCHEDULER = """\
import time

RUNS = []  # every job run, kept for the dashboard


def run_job(name):
    result = {"job": name, "at": time.time(), "ok": True}
    RUNS.append(repr(result) + "." * 32768)
    return result


while True:
    for name in ("sync", "report", "cleanup"):
        run_job(name)
    time.sleep(0.02)
"""
SCHEDULER_LIST_LINE = 8


@pytest.fixture
def server() -> Iterator[SlackServer]:
    with slack_server() as s:
        yield s


def policy(server: SlackServer, snapshot: str) -> str:
    return f"""\
version: 1
settings:
  sample_interval: 1s
notifiers:
  team:
    type: slack
    channel: {CHANNEL}
    token_env: SLACK_BOT_TOKEN
    api_url: {server.api_url}
rules:
  - name: leak
    match: {{runtime: process}}
    when: {{projected_oom_within: 45s}}
    do:
      - snapshot: {snapshot}
      - restart: {{grace_period: 2s}}
      - notify: team
    cooldown: 5m
"""


def restart_message(server: SlackServer) -> list[Message]:
    return [m for m in server.messages if m.text.startswith("Restarted ")]


def run_beside_sentinel(
    tmp_path: Path, server: SlackServer, app: str, command: str, snapshot: str
) -> tuple[Message, list[dict[str, Any]]]:
    """The app (``command`` in ``tmp_path/app``, beside the exported probe) under the
    supervisor, sentinel beside it: the restart's Slack message and ``sentinel events``."""
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux unshare is needed"
    app_dir = tmp_path / "app"
    assert sentinel_main(["probe", "export", str(app_dir)]) == 0
    (app_dir / app).write_text(SERVICE if app == "service.py" else SCHEDULER)
    probe_dir = tmp_path / "shared-probe"
    exits = tmp_path / "app-exits"
    exits.touch()
    with cgroups.temporary(limit_bytes=256 * MIB) as cg:
        env = {
            "APP_PROCS": str(cg.dir / "cgroup.procs"),
            "APP_DIR": str(app_dir),
            "APP_CMD": command.replace("PYTHON", sys.executable),
            "APP_EXITS": str(exits),
            "SENTINEL_PROBE_DIR": str(probe_dir),
            "SENTINEL_PROBE_WARMUP": "2s",
            "SLACK_BOT_TOKEN": TOKEN,
        }
        prefix = [unshare, "--pid", "--fork", "--mount-proc", "sh", "-c", SUPERVISOR, "sh"]
        with SentinelProcess.start(
            policy(server, snapshot.replace("PROBE_DIR", str(probe_dir))),
            tmp_path,
            args=["--mode", "sidecar"],
            prefix=prefix,
            env=env,
        ) as s:
            s.wait_ready()

            def restarted() -> list[Message]:
                codes = exits.read_text().split()
                if codes and codes[0] != "143":
                    pytest.fail(f"the app exited {codes[0]} before sentinel restarted it")
                return restart_message(server)

            (message,) = s.wait_for(restarted, "the restart's Slack message", 180)
            codes = exits.read_text().split()
            assert codes[:1] == ["143"], codes  # SIGTERM from sentinel, not the OOM killer
            assert kernel_kills(memcg=cg.path) == [], "the kernel killed the app"
            rows = s.events()
    decisions = [r for r in rows if r["event"] == "decision" and r["rule"] == "leak"]
    assert [r["action"] for r in decisions] == ["snapshot", "restart", "notify"], decisions
    assert [r["outcome"] for r in decisions[:2]] == ["done", "done"], decisions
    return message, rows


def growth_text(message: Message) -> str:
    found = [b["text"]["text"] for b in message.blocks if "Top growth sites" in str(b)]
    assert len(found) == 1, message.blocks
    return str(found[0])


@pytest.mark.timeout(300)
def test_the_restart_message_names_the_leaking_file_and_line(
    tmp_path: Path, server: SlackServer
) -> None:
    """The service enables the probe in one line; the policy names the shared directory."""
    message, rows = run_beside_sentinel(
        tmp_path,
        server,
        "service.py",
        "PYTHON -S service.py",
        "{timeout: 10s, dir: PROBE_DIR}",
    )
    assert message.channel == CHANNEL
    text = growth_text(message)
    first = text.split("\n")[1]
    assert first.startswith(f"1. `{tmp_path}/app/service.py:{SERVICE_LEAK_LINE}` +"), text
    assert "/h" in first
    assert 'SESSIONS.append(request.encode() + b"s" * 65536)' in text
    assert "sentinel did: snapshot (done), restart (done)" in str(message.blocks)
    assert f"service.py:{SERVICE_LEAK_LINE}" in message.text
    (row,) = [r for r in rows if r.get("action") == "snapshot"]
    top = row["probe"]["sites"][0]
    assert (top["file"], top["line"]) == (f"{tmp_path}/app/service.py", SERVICE_LEAK_LINE)
    assert top["growth_bytes"] > 8 * MIB
    assert row["probe"]["overhead"]["tracemalloc_bytes"] > 0


@pytest.mark.timeout(300)
def test_the_seeds_scheduler_story_names_the_module_level_list(
    tmp_path: Path, server: SlackServer
) -> None:
    """A scheduler that keeps every job run in a module-level list, run through the probe's
    runner with no change to its code; sentinel finds the probe's directory in the app's
    environment."""
    message, rows = run_beside_sentinel(
        tmp_path,
        server,
        "scheduler.py",
        "PYTHON -S -m sentinel_probe -- scheduler.py",
        "{timeout: 10s}",
    )
    text = growth_text(message)
    first = text.split("\n")[1]
    site = f"{tmp_path}/app/scheduler.py:{SCHEDULER_LIST_LINE}"
    assert first.startswith(f"1. `{site}` +"), text
    rate = first.split(", ", 1)[1]
    assert rate.split(" ", 2)[1].endswith("B/h"), first  # e.g. "12.3 GiB/h"
    assert 'RUNS.append(repr(result) + "." * 32768)' in text
    (row,) = [r for r in rows if r.get("action") == "snapshot"]
    assert row["probe"]["sites"][0]["growth_per_hour_bytes"] > 1 << 30  # ~17 GiB/h
