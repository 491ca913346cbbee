"""Actions on real processes this test starts, each inside a memory-limited cgroup
(tests/cgroups.py): restart, signal, oom_score_adj, hooks, the safety rail, dry run and the
dispatcher's re-check. Nothing here touches a process the test did not start, except to
prove that the safety rail refuses it (sentinel itself, its parents, pid 1)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

import cgroups
from daemon_process import Lines
from sentinel.actions import Clients, execute, hook, oom_score_adj, restart, signal
from sentinel.actions._host import Host
from sentinel.model import Target
from sentinel.policy import Decision
from sentinel.policy.model import NotifyAction, RestartAction, RunAction, SignalAction

MIB = 1 << 20

APP = r"""
import signal, subprocess, sys, time
mode = sys.argv[1]
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif mode == "exit-on-term":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.signal(signal.SIGUSR2, lambda *_: print("usr2", flush=True))
children = [subprocess.Popen(["sleep", "60"]) for _ in range(int(sys.argv[2]))]
print("ready", *[c.pid for c in children], flush=True)
for line in sys.stdin:  # "fork": one more child
    children.append(subprocess.Popen(["sleep", "60"]))
    print("child", children[-1].pid, flush=True)
while True:
    time.sleep(60)
"""


@pytest.fixture
def cg(memory_cgroup: cgroups.Cgroup) -> cgroups.Cgroup:
    return memory_cgroup  # 64 MiB, removed after the test (tests/conftest.py)


class App:
    """A Python process in a limited cgroup; ``children`` are its ``sleep`` children."""

    def __init__(self, cg: cgroups.Cgroup, mode: str = "exit-on-term", children: int = 0):
        self.proc = cg.spawn(
            [sys.executable, "-S", "-c", APP, mode, str(children)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.lines = Lines(self.proc.stdout)
        words = self.readline().split()
        assert words[0] == "ready", words
        self.children = [int(w) for w in words[1:]]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def readline(self, timeout: float = 10) -> str:
        """The app's next line ("" once it exited); fails after ``timeout``."""
        line = self.lines.next(timeout, "a line from the app")
        return (line or "").strip()

    def assert_alive(self) -> None:
        """Alive and answering: a SIGTERM delivered before this call would have ended it
        before it answers (the handler runs before the next line is read)."""
        assert self.answers(), "the app exited"

    def answers(self) -> bool:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("fork\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return False
        line = self.readline()
        if not line:
            return False
        word, pid = line.split()
        assert word == "child", line
        self.children.append(int(pid))
        return True

    def fork(self) -> int:
        assert self.answers(), "the app exited"
        return self.children[-1]

    def target(self) -> Target:
        return Target(id=f"pid:{self.pid}", name="app", runtime="process", pid=self.pid)


def in_cgroup(cg: cgroups.Cgroup, argv: Sequence[str]) -> list[str]:
    """A hook command that joins ``cg`` before it execs ``argv``."""
    return ["sh", "-c", f'echo $$ > "{cg.dir / "cgroup.procs"}" && exec "$@"', "sh", *argv]


def adj(pid: int) -> int:
    return int(Path(f"/proc/{pid}/oom_score_adj").read_text())


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def gone_soon(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --- restart -----------------------------------------------------------------------------


def test_restart_process_sigterm_within_grace(cg: cgroups.Cgroup) -> None:
    app = App(cg)
    result = restart.restart(app.target(), 5.0, dry_run=False)
    assert result.ok, result
    assert result.outcome == "done"
    assert result.detail["killed"] is False
    assert result.detail["took_s"] < 5
    assert app.proc.wait(timeout=5) == 0  # it exited on SIGTERM, by itself


def test_restart_process_sigkill_after_grace(cg: cgroups.Cgroup) -> None:
    app = App(cg, "ignore-term")
    result = restart.restart(app.target(), 0.3, dry_run=False)
    assert result.ok, result
    assert result.detail["killed"] is True
    assert 0.3 <= result.detail["took_s"] < 5
    assert app.proc.wait(timeout=5) == -9


def test_restart_dry_run_changes_nothing(cg: cgroups.Cgroup) -> None:
    app = App(cg, "exit-on-term")
    result = restart.restart(app.target(), 0.1, dry_run=True)
    assert result.ok
    assert result.dry_run
    assert result.outcome == "dry_run"
    assert "SIGTERM" in result.detail["would"]
    app.assert_alive()  # a SIGTERM sent would have ended it (exit-on-term) before this


def test_restart_gone_process_is_a_result(cg: cgroups.Cgroup) -> None:
    app = App(cg)
    app.proc.kill()
    app.proc.wait()
    result = restart.restart(app.target(), 1.0, dry_run=False)
    assert not result.ok
    assert result.outcome == "failed"
    assert "gone" in (result.error or "")


# --- the safety rail ---------------------------------------------------------------------


def _guarded_targets() -> list[tuple[str, Target]]:
    me, parent = os.getpid(), os.getppid()
    return [
        ("self", Target(id=f"pid:{me}", name="me", runtime="process", pid=me)),
        ("parent", Target(id=f"pid:{parent}", name="parent", runtime="process", pid=parent)),
        ("init", Target(id="pid:1", name="init", runtime="process", pid=1)),
        ("is_self", Target(id="x", name="x", runtime="process", pid=None, is_self=True)),
    ]


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize(("what", "target"), _guarded_targets())
def test_safety_rail_refuses(what: str, target: Target, dry_run: bool) -> None:
    for result in (
        restart.restart(target, 0.0, dry_run=dry_run),
        signal.send(target, "SIGKILL", dry_run=dry_run),
    ):
        assert not result.ok, (what, result)
        assert result.outcome == "refused", (what, result)
    assert alive(os.getpid())


def test_oom_score_adj_skips_sentinel_itself() -> None:
    me = Target(id="me", name="me", runtime="process", pid=os.getpid())
    before = adj(os.getpid())
    result = oom_score_adj.apply(me, 1000, dry_run=False)
    assert adj(os.getpid()) == before
    skipped = [s["pid"] for s in result.detail["skipped"]]
    assert os.getpid() in skipped


# --- signal ------------------------------------------------------------------------------


def test_signal_reaches_process(cg: cgroups.Cgroup) -> None:
    app = App(cg)
    result = signal.send(app.target(), "SIGUSR2", dry_run=False)
    assert result.ok, result
    assert result.detail["number"] == 12
    assert app.readline() == "usr2"


def test_signal_dry_run_sends_nothing(cg: cgroups.Cgroup) -> None:
    app = App(cg)  # exits at once on SIGTERM
    result = signal.send(app.target(), "SIGTERM", dry_run=True)
    assert result.outcome == "dry_run"
    assert result.detail["pid"] == app.pid
    # A signal of our own after the dry run is handled: the app did not get the SIGTERM
    # (it would have exited first, and this read would find the pipe closed).
    app.proc.send_signal(12)  # SIGUSR2: the app prints "usr2"
    assert app.readline() == "usr2"
    app.assert_alive()  # both pending at once, Python runs SIGUSR2's handler first


# --- oom_score_adj -----------------------------------------------------------------------


def test_oom_score_adj_every_process_and_reapply(cg: cgroups.Cgroup) -> None:
    app = App(cg, children=2)
    target = app.target()
    result = oom_score_adj.apply(target, 500, dry_run=False)
    assert result.ok, result
    pids = [app.pid, *app.children]
    assert sorted(p["pid"] for p in result.detail["processes"]) == sorted(pids)
    assert all(p["after"] == 500 for p in result.detail["processes"])
    assert [adj(p) for p in pids] == [500, 500, 500]

    newcomer = app.fork()
    assert adj(newcomer) == 500  # inherited from its parent: nothing to do
    Path(f"/proc/{app.children[0]}/oom_score_adj").write_text("0")  # someone reset one
    again = oom_score_adj.reapply(target, 500)
    assert again.ok, again
    assert again.detail["changed"] == [app.children[0]]
    assert all(adj(p) == 500 for p in [*pids, newcomer])


def test_oom_score_adj_dry_run_writes_nothing(cg: cgroups.Cgroup) -> None:
    app = App(cg, children=1)
    result = oom_score_adj.apply(app.target(), -500, dry_run=True)
    assert result.ok
    assert result.outcome == "dry_run"
    assert sorted(result.detail["changed"]) == sorted([app.pid, *app.children])
    assert adj(app.pid) == 0
    assert adj(app.children[0]) == 0


# --- hooks -------------------------------------------------------------------------------

PRINT_ENV = (
    "import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
    "if k.startswith('SENTINEL_')}))"
)


def test_hook_sees_the_target_in_its_environment(cg: cgroups.Cgroup) -> None:
    target = Target(
        id="abc123",
        name="scheduler-1",
        runtime="docker",
        image="acme/s:1",
        pid=4242,
        labels={"team": "data"},
    )
    evidence = {"projected_oom_in_s": 42.0, "usage_bytes": 180 * MIB, "limit_bytes": 192 * MIB}
    result = hook.run(
        target,
        in_cgroup(cg, [sys.executable, "-S", "-c", PRINT_ENV]),
        10.0,
        dry_run=False,
        rule="restart-leaking-scheduler",
        reason="the forecast says so",
        evidence=evidence,
    )
    assert result.ok, result
    env = json.loads(result.detail["stdout"])
    assert env["SENTINEL_TARGET_ID"] == "abc123"
    assert env["SENTINEL_TARGET_NAME"] == "scheduler-1"
    assert env["SENTINEL_TARGET_PID"] == "4242"
    assert env["SENTINEL_TARGET_IMAGE"] == "acme/s:1"
    assert json.loads(env["SENTINEL_TARGET_LABELS"]) == {"team": "data"}
    assert env["SENTINEL_RULE"] == "restart-leaking-scheduler"
    assert env["SENTINEL_ACTION"] == "run"
    assert env["SENTINEL_REASON"] == "the forecast says so"
    assert env["SENTINEL_ETA_SECONDS"] == "42"
    assert env["SENTINEL_USAGE_BYTES"] == str(180 * MIB)
    assert env["SENTINEL_LIMIT_BYTES"] == str(192 * MIB)
    assert env["SENTINEL_DRY_RUN"] == "0"
    assert json.loads(env["SENTINEL_EVIDENCE"]) == evidence
    assert result.detail["exit_code"] == 0


def test_hook_timeout_kills_its_process_group(cg: cgroups.Cgroup) -> None:
    target = Target(id="t", name="t", runtime="process")
    script = "sleep 60 & echo $!; sleep 60"
    t0 = time.monotonic()
    result = hook.run(target, in_cgroup(cg, ["sh", "-c", script]), 0.5, dry_run=False)
    took = time.monotonic() - t0
    assert not result.ok
    assert result.detail["timed_out"] is True
    assert "timed out" in (result.error or "")
    assert took < 5
    background = int(result.detail["stdout"].split()[0])
    assert gone_soon(background), "the hook's background child survived the timeout"
    deadline = time.monotonic() + 5  # a killed task leaves the cgroup once it is reaped
    while cg.pids() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cg.pids() == []


def test_hook_output_is_bounded_and_exit_code_reported(cg: cgroups.Cgroup) -> None:
    target = Target(id="t", name="t", runtime="process")
    code = "import sys; sys.stdout.write('x' * 100000); sys.stderr.write('bad'); sys.exit(3)"
    result = hook.run(target, in_cgroup(cg, [sys.executable, "-S", "-c", code]), 10, dry_run=False)
    assert not result.ok
    assert result.detail["exit_code"] == 3
    assert len(result.detail["stdout"]) == hook.MAX_OUTPUT
    assert result.detail["stdout_bytes"] == 100000
    assert result.detail["stderr"] == "bad"
    assert "exited 3" in (result.error or "")


def test_hook_missing_program_is_a_result() -> None:
    target = Target(id="t", name="t", runtime="process")
    result = hook.run(target, ["/nonexistent/hook"], 1.0, dry_run=False)
    assert not result.ok
    assert "cannot start" in (result.error or "")


def test_hook_dry_run_does_not_run(tmp_path: Path, cg: cgroups.Cgroup) -> None:
    marker = tmp_path / "ran"
    target = Target(id="t", name="t", runtime="process")
    result = hook.run(target, in_cgroup(cg, ["touch", str(marker)]), 5.0, dry_run=True)
    assert result.outcome == "dry_run"
    assert result.detail["env"]["SENTINEL_DRY_RUN"] == "1"
    assert not marker.exists()


# --- the dispatcher ----------------------------------------------------------------------


def _decision(target: Target, action: object, *, dry_run: bool = False) -> Decision:
    return Decision(
        rule="test-rule",
        target=target,
        action=action,  # type: ignore[arg-type]
        at=1_700_000_000.0,
        reason="test",
        evidence={"usage_bytes": 10 * MIB, "limit_bytes": 64 * MIB},
        dry_run=dry_run,
    )


RESTART = RestartAction.model_validate({"restart": {"grace_period": "2s"}})
SIGUSR2 = SignalAction.model_validate({"signal": "USR2"})


def test_execute_drops_when_no_longer_holds(
    cg: cgroups.Cgroup, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(cg)
    caplog.set_level(logging.INFO, logger="sentinel.actions")
    calls: list[int] = []

    def recheck() -> bool:
        calls.append(1)
        return False

    result = execute(
        _decision(app.target(), RESTART),
        app.target(),
        clients=Clients(),
        dry_run=False,
        recheck=recheck,
    )
    assert calls == [1]
    assert result.outcome == "dropped"
    assert result.error == "dropped: no longer holds"
    app.assert_alive()  # not restarted: a SIGTERM would have ended it before it answers
    line = json.loads(caplog.records[-1].getMessage())
    assert line["outcome"] == "dropped"
    assert line["rule"] == "test-rule"


def test_execute_acts_and_logs_one_json_line(
    cg: cgroups.Cgroup, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(cg)
    caplog.set_level(logging.INFO, logger="sentinel.actions")
    result = execute(
        _decision(app.target(), SIGUSR2),
        app.target(),
        clients=Clients(),
        dry_run=False,
        recheck=lambda: True,
    )
    assert result.ok, result
    assert app.readline() == "usr2"
    records = [r for r in caplog.records if r.name == "sentinel.actions"]
    assert len(records) == 1
    line = json.loads(records[0].getMessage())
    assert line["action"] == "signal"
    assert line["target"]["pid"] == app.pid
    assert line["params"] == {"value": "SIGUSR2"}
    assert line["evidence"]["limit_bytes"] == 64 * MIB
    assert line["dry_run"] is False
    assert line["outcome"] == "done"


def test_execute_dry_run_from_decision_or_caller(cg: cgroups.Cgroup) -> None:
    app = App(cg)
    for decision_dry, caller_dry in ((True, False), (False, True)):
        result = execute(
            _decision(app.target(), RESTART, dry_run=decision_dry),
            app.target(),
            clients=Clients(),
            dry_run=caller_dry,
            recheck=lambda: True,
        )
        assert result.outcome == "dry_run"
    assert app.proc.poll() is None


def test_execute_refuses_notify() -> None:
    target = Target(id="t", name="t", runtime="process", pid=None)
    with pytest.raises(ValueError, match="notify"):
        execute(
            _decision(target, NotifyAction(notify="ops")),
            target,
            clients=Clients(),
            dry_run=False,
            recheck=lambda: True,
        )


def test_execute_runs_hook_with_decision(cg: cgroups.Cgroup) -> None:
    target = Target(id="t", name="t", runtime="process")
    action = RunAction.model_validate(
        {
            "run": {
                "command": in_cgroup(cg, [sys.executable, "-S", "-c", PRINT_ENV]),
                "timeout": "5s",
            }
        }
    )
    result = execute(
        _decision(target, action),
        target,
        clients=Clients(host=Host()),
        dry_run=False,
        recheck=lambda: True,
    )
    assert result.ok, result
    env = json.loads(result.detail["stdout"])
    assert env["SENTINEL_RULE"] == "test-rule"
    assert env["SENTINEL_LIMIT_BYTES"] == str(64 * MIB)
