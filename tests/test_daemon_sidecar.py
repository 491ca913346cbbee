"""End to end: ``sentinel run --mode sidecar`` in its own PID namespace, beside an app.

``unshare --pid --fork --mount-proc`` makes the namespace (as ``docker run
--pid=container:APP`` or Kubernetes ``shareProcessNamespace`` would); sentinel is its pid 1
here, and a supervisor loop beside it plays the app's restart policy: it runs a leaking
Python process in a memory cgroup of its own (made by ``tests/cgroups.py`` under this
test's cgroup, with a 192 MiB limit) and starts it again whenever it exits, noting each
exit status in a file. Sentinel sees only the processes of the namespace, samples the
app's cgroup, and restarts the app by SIGTERM to it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

import cgroups
from daemon_process import SentinelProcess, kernel_kills

pytestmark = pytest.mark.kernel

MIB = 1 << 20
SUPERVISOR = r"""
(
  while :; do
    sh -c 'echo $$ > "$SIDECAR_PROCS" && exec "$0" -S -c "$SIDECAR_ALLOC" "$SIDECAR_MIB" 1 0.5' \
      "$SIDECAR_PYTHON" </dev/null >/dev/null 2>&1
    echo "$?" >> "$SIDECAR_EXITS"
    sleep 0.2
  done
) &
exec "$@"
"""
"""pid 1 of the namespace: starts the supervisor loop, then becomes sentinel."""


def policy(when: str) -> str:
    return f"""\
version: 1
settings:
  sample_interval: 1s
notifiers:
  ops-log:
    type: log
rules:
  - name: restart-leaker
    match: {{runtime: process}}
    when: {when}
    do:
      - restart: {{grace_period: 2s}}
      - notify: ops-log
    cooldown: 2m
"""


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("when", "baseline_mib"),
    [
        pytest.param("{projected_oom_within: 30s}", 8, id="projected_oom_within"),
        pytest.param("{memory_above: {bytes: 48Mi, for: 2s}}", 24, id="memory_above"),
    ],
)
def test_sidecar_restarts_the_leaking_app_before_the_kernel_kills_it(
    tmp_path: Path, when: str, baseline_mib: int
) -> None:
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux unshare is needed"
    exits = tmp_path / "app-exits"
    exits.touch()
    with cgroups.temporary(limit_bytes=192 * MIB) as cg:
        env = {
            "SIDECAR_PROCS": str(cg.dir / "cgroup.procs"),
            "SIDECAR_ALLOC": cgroups.ALLOCATOR,
            "SIDECAR_MIB": str(baseline_mib),
            "SIDECAR_PYTHON": sys.executable,
            "SIDECAR_EXITS": str(exits),
        }
        prefix = [unshare, "--pid", "--fork", "--mount-proc", "sh", "-c", SUPERVISOR, "sh"]
        with SentinelProcess.start(
            policy(when), tmp_path, args=["--mode", "sidecar"], prefix=prefix, env=env
        ) as s:
            s.wait_ready()
            assert s.logs("selftest")[0]["mode"] == "sidecar"

            def restarted() -> list[str]:
                codes = exits.read_text().split()
                if codes and codes[0] != "143":
                    pytest.fail(f"the app exited {codes[0]} before sentinel restarted it")
                return codes

            s.wait_for(restarted, "sentinel to restart the app (SIGTERM: exit 143)", 150)
            assert kernel_kills(memcg=cg.path) == [], "the kernel killed the app"
            done = [
                e
                for e in s.events()
                if e["event"] == "decision" and e["action"] == "restart" and e["outcome"] == "done"
            ]
            assert len(done) == 1, s.events()
            assert done[0]["target_id"].startswith("process:")
            assert done[0]["target_id"].endswith(cg.path)
            actions = s.logs("action", action="restart", outcome="done")
            assert actions[0]["detail"]["via"] == "signal"
            assert actions[0]["target"]["runtime"] == "process"
            # The supervisor brought the app back, and sentinel watches the new one.
            s.wait_for(lambda: len(cg.pids()) == 1, "the app to run again", 20)
            # The restart's message follows once the comeback is seen (on the worker).
            s.wait_for(
                lambda: s.notifications(kind="action", rule="restart-leaker"),
                "the restart's notification",
                30,
            )
