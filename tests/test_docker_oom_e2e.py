"""End to end: a real container leaks, the kernel OOM-kills it, `sentinel parse` finds it.

Needs root, a Docker daemon (started by the ``docker_daemon`` fixture) and /dev/kmsg.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from docker_fixtures import RunContainer

SENTINEL = Path(sys.executable).parent / "sentinel"


def _kill_records_for(container_id: str) -> list[dict[str, Any]]:
    """The records of `sentinel parse kmsg --format json` that name this container."""
    result = subprocess.run(
        [str(SENTINEL), "parse", "kmsg", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Exit 1 means "no record at all", which the caller's wait loop may see early on.
    assert result.returncode in (0, 1), f"sentinel parse: exit {result.returncode}\n{result.stderr}"
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return [r for r in records if r.get("container_id") == container_id]


@pytest.mark.kernel
@pytest.mark.timeout(180)
def test_container_oom_kill_is_parsed_from_kmsg(
    run_container: RunContainer, leaker_image: str
) -> None:
    # The leaker waits for USR1, so its host pid can be read while it surely runs.
    container = run_container(
        leaker_image, "--wait-usr1", "--rate", "256", "--step-ms", "20", memory="64m"
    )
    state = container.state()
    assert state["Status"] == "running", container.logs()
    pid = state["Pid"]
    assert pid > 0

    container.signal("USR1")
    exit_code = container.wait(timeout=120)

    state = container.state()
    logs = container.logs()
    assert exit_code == 137, logs
    assert state["OOMKilled"] is True, (state, logs)
    assert state["ExitCode"] == 137

    # The kernel logs the kill before the process dies; allow kmsg readers a moment anyway.
    deadline = time.monotonic() + 15
    records = _kill_records_for(container.id)
    while not records and time.monotonic() < deadline:
        time.sleep(0.5)
        records = _kill_records_for(container.id)
    assert len(records) == 1, f"want one kill record for {container.id}, got {records}"
    record = records[0]
    assert record["runtime"] == "docker"
    assert record["constraint"] == "CONSTRAINT_MEMCG"
    assert record["global"] is False
    assert record["comm"] == "leaker"
    assert record["pid"] == pid
    assert record["oom_memcg"].endswith(container.id)
    assert record["anon_rss_kb"] > 32 << 10  # most of the 64 MiB limit was the leak
