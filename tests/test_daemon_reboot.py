"""After a reboot, the kills in the kernel's new buffer are handled, not taken for old.

The kmsg position is kept per boot. A first start ever treats what the buffer already
holds as history (stored, not notified); a start after a reboot (a position from another
boot in the state) must not: every kill of the new boot is newer than sentinel's last
stop. A real kernel kill in a memory cgroup of this test's own, read from the real
``/dev/kmsg``; the reboot is a state whose position names another boot.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import cgroups
from daemon_process import SentinelProcess, kernel_kills
from sentinel.store import Store

pytestmark = pytest.mark.kernel

MIB = 1 << 20
POLICY = """\
version: 1
settings:
  sample_interval: 1s
notifiers:
  ops-log: {type: log}
rules:
  - name: report-process-kills
    match: {runtime: process}
    when: {oom_killed: true}
    do:
      - notify: ops-log
"""


def killed_in(cg: cgroups.Cgroup) -> None:
    """A process in ``cg`` grows past the cgroup's limit: the kernel kills it."""
    proc = cgroups.allocate(cg, 8, grow_mib=4, every=0.02)
    assert proc.stdin is not None
    try:
        assert proc.wait(timeout=60) == -9
    finally:
        proc.stdin.close()
        if proc.stdout is not None:
            proc.stdout.close()
    assert kernel_kills(memcg=cg.path), "the kernel log has no kill in the test's cgroup"


def ours(s: SentinelProcess, cg: cgroups.Cgroup) -> list[dict[str, object]]:
    return [
        n
        for n in s.notifications(kind="kill")
        if isinstance(n.get("record"), dict) and n["record"].get("task_memcg") == cg.path
    ]


@pytest.mark.timeout(180)
def test_kills_after_a_reboot_are_notified_a_first_start_treats_them_as_history(
    tmp_path: Path,
) -> None:
    with cgroups.temporary(limit_bytes=48 * MIB) as cg:
        killed_in(cg)

        # A first start ever: the kill is in the buffer from before; stored, not notified.
        with SentinelProcess.start(POLICY, tmp_path / "first") as s:
            s.wait_ready()
            (backlog,) = s.wait_for(lambda: s.logs("kmsg-backlog"), "the backlog read", 60)
            assert backlog["acted_on"] is False
            stored = s.wait_for(
                lambda: [k for k in s.logs("kill") if k.get("task_memcg") == cg.path],
                "the kill to be stored",
                30,
            )
            assert [k["backlog"] for k in stored] == [True]
            assert ours(s, cg) == []

        # The same buffer, but the state was last read in another boot: sentinel was
        # stopped before this boot began, so the kill is newer than its last stop.
        rebooted = tmp_path / "rebooted"
        rebooted.mkdir()
        state = Store(rebooted / "state.db")
        state.set_position("kmsg", "a-boot-before-this-one", 123456)
        state.close()
        with SentinelProcess.start(POLICY, rebooted, state=rebooted / "state.db") as s:
            s.wait_ready()
            (note,) = s.wait_for(lambda: ours(s, cg), "the kill's notification", 60)
            assert note["rule"] == "report-process-kills"
            assert note["record"]["comm"].startswith("python")
            assert s.logs("kmsg-backlog") == []
            kills = [k for k in s.logs("kill") if k.get("task_memcg") == cg.path]
            assert [k["backlog"] for k in kills] == [False]
