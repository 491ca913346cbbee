"""End to end: the real ``sentinel run`` against a real Docker daemon and the real kernel.

Each test writes a policy, starts ``sentinel run`` as a subprocess (state in ``tmp_path``,
``sample_interval: 1s``, listening on 127.0.0.1), starts leaker containers labelled with
the test's own tag (every rule matches that tag only: sentinel acts on nothing else), and
reads what sentinel did: the ``log`` notifier's lines on stdout, the JSON log on stderr,
``/readyz`` and ``/metrics``, ``sentinel events --format json``, Docker's view of the
containers and the kernel log (``sentinel parse kmsg``). Sentinel always gets SIGTERM at
the end and must exit 0.

The test that restarts dockerd comes last: it disturbs every other user of the daemon.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cgroups
from daemon_process import SENTINEL, SentinelProcess, kernel_kills, kmsg_marker, wait_for
from docker_fixtures import DOCKER_UP, Container, RunContainer, docker

pytestmark = pytest.mark.kernel

MIB = 1 << 20


def policy(rules: str, *, settings: str = "") -> str:
    """A policy with a 1 s sample interval, the ``ops-log`` notifier and ``rules``."""
    return f"""\
version: 1
settings:
  sample_interval: 1s
{settings}
notifiers:
  ops-log:
    type: log
rules:
{rules}"""


@pytest.fixture
def tag() -> str:
    """This test's label value: ``sentinel.e2e=<tag>`` on every container it starts."""
    return uuid.uuid4().hex[:16]


def labelled(tag: str, *more: str) -> list[str]:
    options = ["--label", f"sentinel.e2e={tag}"]
    for label in more:
        options += ["--label", label]
    return options


def started_at(c: Container) -> str:
    return str(c.state()["StartedAt"])


def container_pids(c: Container) -> list[int]:
    """Every process of a running container: its memory cgroup's ``cgroup.procs``."""
    pid = c.state()["Pid"]
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hid, controllers, path = line.split(":", 2)
        if (cgroups.version() == "v1" and "memory" in controllers.split(",")) or (
            cgroups.version() == "v2" and hid == "0"
        ):
            procs = cgroups.memory_root() / path.strip("/") / "cgroup.procs"
            return sorted(int(p) for p in procs.read_text().split())
    raise AssertionError(f"no memory cgroup for pid {pid}")


def oom_score_adjs(pids: list[int]) -> dict[int, int]:
    out = {}
    for pid in pids:
        try:
            out[pid] = int(Path(f"/proc/{pid}/oom_score_adj").read_text())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def assert_not_killed(c: Container, before: str) -> None:
    """Fail when the kernel killed the container (not stopped by sentinel's restart, which
    exits 0 on SIGTERM and starts it again)."""
    state = c.state()
    if state["StartedAt"] == before and (state["OOMKilled"] or state["ExitCode"] == 137):
        pytest.fail(
            f"the kernel killed {c.name} before sentinel restarted it "
            f"(OOMKilled={state['OOMKilled']}, exit {state['ExitCode']})"
        )


def report_kills(tag: str) -> str:
    """The rule that notifies ops-log of every kernel kill of this test's containers."""
    return f"""\
  - name: report-every-kill
    match: {{labels: {{sentinel.e2e: "{tag}"}}}}
    when: {{oom_killed: true}}
    do:
      - notify: ops-log
"""


def decisions(s: SentinelProcess, **match: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in s.events()
        if e["event"] in ("decision", "escalation") and all(e.get(k) == v for k, v in match.items())
    ]


# --- a. restart before the kernel's kill ---------------------------------------------------


@pytest.mark.timeout(240)
def test_restarts_a_leaking_container_before_the_kernel_kills_it(
    tmp_path: Path, run_container: RunContainer, leaker_image: str, tag: str
) -> None:
    rules = f"""\
  - name: restart-leaker
    match: {{labels: {{sentinel.e2e: "{tag}"}}}}
    when: {{projected_oom_within: 30s}}
    do:
      - restart: {{grace_period: 2s}}
      - notify: ops-log
    cooldown: 2m
"""
    with SentinelProcess.start(policy(rules), tmp_path) as s:
        s.wait_ready()
        c = run_container(
            leaker_image, "--rate", "2", "--baseline", "8", memory="192m", options=labelled(tag)
        )
        first = started_at(c)

        def restarted() -> bool:
            assert_not_killed(c, first)
            return started_at(c) != first

        s.wait_for(restarted, "sentinel to restart the leaker", timeout=150)
        assert c.state()["Status"] == "running"
        assert kernel_kills(c.id) == [], "the kernel killed the container"

        done = decisions(s, target_id=c.id, action="restart", outcome="done")
        assert len(done) == 1, s.events()
        evidence = done[0]["evidence"]
        assert evidence["condition"] == "projected_oom_within"
        assert evidence["constraint"] == "cgroup"
        assert evidence["projected_oom_in_s"] <= 30
        assert evidence["limit_bytes"] == 192 * MIB
        actions = s.logs("action", target_id=c.id, action="restart", outcome="done")
        assert actions
        assert actions[0]["detail"]["started_at_after"] != actions[0]["detail"]["started_at_before"]
        (note,) = s.notifications(target_id=c.id, kind="action", rule="restart-leaker")
        assert note["after"]["running"] is True  # the message says it came back ...
        assert note["after"]["usage_bytes"] < note["memory"]["usage_bytes"]  # ... and freed
        assert note["forecast"]["eta_seconds"] <= 30
        assert (s.metric("sentinel_actions_total", action="restart", outcome="done") or 0) >= 1


# --- b. the parent's headroom -------------------------------------------------------------


@pytest.fixture
def parent_cgroup(docker_daemon: str, tag: str) -> Iterator[str]:
    """``/docker/sentinel-test-<tag>`` with a 256 MiB limit, for ``--cgroup-parent``
    (Docker's cgroupfs driver); its containers and cgroups are removed afterwards."""
    driver = docker("info", "--format", "{{.CgroupDriver}}").stdout.strip()
    if driver != "cgroupfs":
        pytest.fail(f"this test needs Docker's cgroupfs cgroup driver, not {driver}")
    path = f"/docker/sentinel-test-{tag}"
    cg = cgroups.Cgroup(path=path, dir=cgroups.memory_root() / path.strip("/"))
    cg.dir.mkdir(parents=False)
    try:
        cg.set_limit(256 * MIB)
        yield path
    finally:
        ids = docker("ps", "-aq", "--filter", f"label=sentinel.e2e={tag}").stdout.split()
        if ids:
            docker("rm", "--force", *ids, check=False)
        # runc made the parent in every v1 hierarchy; each goes once empty.
        dirs = [cg.dir] + [
            d for d in Path("/sys/fs/cgroup").glob(f"*/docker/sentinel-test-{tag}") if d != cg.dir
        ]
        for d in dirs:
            deadline = time.monotonic() + 10
            while d.exists():
                try:
                    d.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


@pytest.mark.timeout(240)
def test_forecasts_against_the_parent_headroom(
    tmp_path: Path,
    run_container: RunContainer,
    leaker_image: str,
    tag: str,
    parent_cgroup: str,
) -> None:
    rules = f"""\
  - name: restart-leaker
    match: {{labels: {{sentinel.e2e: "{tag}", role: leaker}}}}
    when: {{projected_oom_within: 30s}}
    do:
      - restart: {{grace_period: 2s}}
      - notify: ops-log
    cooldown: 2m
"""
    parent = ["--cgroup-parent", parent_cgroup]
    with SentinelProcess.start(policy(rules), tmp_path) as s:
        s.wait_ready()
        # 128 MiB held + a leaker: the parent (256 MiB) runs out when the leaker reaches
        # 128 MiB, long before its own 192 MiB limit.
        steady = run_container(
            leaker_image,
            "--rate",
            "0",
            "--baseline",
            "128",
            memory="192m",
            options=[*parent, *labelled(tag, "role=steady")],
        )
        leaker = run_container(
            leaker_image,
            "--rate",
            "2",
            "--baseline",
            "8",
            memory="192m",
            options=[*parent, *labelled(tag, "role=leaker")],
        )
        first = started_at(leaker)

        def restarted() -> bool:
            assert_not_killed(leaker, first)
            assert steady.state()["Status"] == "running", "the parent's OOM killed the steady one"
            return started_at(leaker) != first

        s.wait_for(restarted, "sentinel to restart the leaker", timeout=150)
        assert kernel_kills(leaker.id) == []
        assert kernel_kills(steady.id) == []
        done = decisions(s, target_id=leaker.id, action="restart", outcome="done")
        assert len(done) == 1, s.events()
        evidence = done[0]["evidence"]
        assert evidence["constraint"] == "parent"
        assert evidence["limit_bytes"] == 256 * MIB
        assert "parent limit" in done[0]["reason"]
        assert decisions(s, target_id=steady.id) == []


# --- c. a kill, recorded and notified -----------------------------------------------------


@pytest.mark.timeout(120)
def test_a_kernel_kill_is_stored_and_notified_once(
    tmp_path: Path, run_container: RunContainer, leaker_image: str, tag: str
) -> None:
    rules = report_kills(tag)
    with SentinelProcess.start(policy(rules), tmp_path) as s:
        s.wait_ready()
        c = run_container(
            leaker_image,
            "--rate",
            "64",
            "--step-ms",
            "20",
            memory="64m",
            options=labelled(tag, "team=data"),
        )
        assert c.wait(timeout=60) == 137
        assert c.state()["OOMKilled"] is True
        s.wait_for(lambda: s.notifications(target_id=c.id), "the kill notification", 20)
        s.settle()  # read past the kill, ticked, outbox empty: a duplicate would be here
        notes = s.notifications(target_id=c.id)
        assert len(notes) == 1, notes
        note = notes[0]
        assert note["kind"] == "kill"
        assert note["notifier"] == "ops-log"
        assert note["rule"] == "report-every-kill"
        assert note["target"]["name"] == c.name
        assert note["target"]["image"] == leaker_image
        assert {"sentinel.e2e": tag, "team": "data"}.items() <= note["target"]["labels"].items()
        assert note["record"]["container_id"] == c.id
        assert note["record"]["comm"] == "leaker"

        kills = [e for e in s.events() if e["event"] == "kill" and e["target_id"] == c.id]
        assert len(kills) == 1, kills
        assert kills[0]["target"] == c.name
        assert kills[0]["image"] == leaker_image
        assert {"sentinel.e2e": tag, "team": "data"}.items() <= kills[0]["labels"].items()
        assert kills[0]["scope"] == "cgroup"
        assert [k["backlog"] for k in s.logs("kill", target_id=c.id)] == [False]
        # A fresh state: what the kernel logged before sentinel started is not acted on.
        assert len(s.logs("kmsg-backlog")) == 1
        assert (s.metric("sentinel_kills_total", scope="cgroup") or 0) >= 1


# --- d. the restart budget ----------------------------------------------------------------


@pytest.mark.timeout(180)
def test_restarts_that_do_not_help_escalate_once(
    tmp_path: Path, run_container: RunContainer, leaker_image: str, tag: str
) -> None:
    # A leak comes back after every restart: above half the limit for 2 s, restart.
    rules = f"""\
  - name: restart-leaker
    match: {{labels: {{sentinel.e2e: "{tag}"}}}}
    when: {{memory_above: {{percent: 50, for: 2s}}}}
    do:
      - restart: {{grace_period: 1s}}
      - notify: ops-log
    cooldown: 3s
    max_restarts: {{count: 2, per: 1h}}
"""
    with SentinelProcess.start(policy(rules), tmp_path) as s:
        s.wait_ready()
        c = run_container(leaker_image, "--rate", "8", memory="192m", options=labelled(tag))
        escalation = s.wait_for(
            lambda: s.notifications(target_id=c.id, kind="escalation"),
            "the escalation",
            timeout=120,
        )
        after = started_at(c)
        # No restart after the escalation: the leak runs on to the kernel's kill.
        assert c.wait(timeout=60) == 137
        assert started_at(c) == after
        s.settle()  # the kill read, ticks after it: a restart or escalation would be here
        restarts = decisions(s, target_id=c.id, action="restart")
        assert [d["outcome"] for d in restarts] == ["done", "done"], restarts
        escalations = decisions(s, target_id=c.id, event="escalation")
        assert len(escalations) == 1, escalations
        assert escalations[0]["reason"].startswith("restarts are not helping: likely leak")
        assert len(s.notifications(target_id=c.id, kind="escalation")) == 1
        assert "restarts are not helping: likely leak" in escalation[0]["text"]
        assert len(s.logs("action", target_id=c.id, action="restart")) == 2


# --- e. dry run ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["--dry-run", "settings.dry_run"])
def test_dry_run_changes_nothing_and_says_what_it_would_do(
    tmp_path: Path, run_container: RunContainer, leaker_image: str, tag: str, how: str
) -> None:
    rules = f"""\
  - name: restart-big
    match: {{labels: {{sentinel.e2e: "{tag}"}}}}
    when: {{memory_above: {{bytes: 32Mi, for: 2s}}}}
    do:
      - restart: {{grace_period: 1s}}
      - notify: ops-log
  - name: deprioritize
    match: {{labels: {{sentinel.e2e: "{tag}"}}}}
    do:
      - oom_score_adj: 500
"""
    settings = "  dry_run: true" if how == "settings.dry_run" else ""
    args = ["--dry-run"] if how == "--dry-run" else []
    with SentinelProcess.start(policy(rules, settings=settings), tmp_path, args=args) as s:
        s.wait_ready()
        assert s.logs("selftest")[0]["dry_run"] is True
        c = run_container(
            leaker_image, "--rate", "0", "--baseline", "64", memory="128m", options=labelled(tag)
        )
        first = c.state()
        would = s.wait_for(
            lambda: s.logs("action", target_id=c.id, action="restart"),
            "the dry-run restart line",
            timeout=40,
        )
        assert would[0]["outcome"] == "dry_run"
        assert would[0]["dry_run"] is True
        assert "docker stop" in would[0]["detail"]["would"]
        adj = s.wait_for(
            lambda: s.logs("action", target_id=c.id, action="oom_score_adj"),
            "the dry-run oom_score_adj line",
            timeout=20,
        )
        assert adj[0]["outcome"] == "dry_run"
        assert adj[0]["detail"]["processes"][0]["would"] == 500
        s.settle()  # ticks after the dry-run lines: a real restart or write would be done
        assert s.logs("action", target_id=c.id, outcome="done") == []
        now = c.state()
        assert (now["StartedAt"], now["Pid"]) == (first["StartedAt"], first["Pid"])
        assert set(oom_score_adjs(container_pids(c)).values()) == {0}
        assert s.notifications() == []
        rows = decisions(s, target_id=c.id)
        assert rows
        assert all(r["dry_run"] for r in rows)
        assert {r["outcome"] for r in rows} == {"dry_run"}


# --- f. oom_score_adj on every process, again after a restart ------------------------------


@pytest.mark.timeout(120)
def test_oom_score_adj_reaches_every_process_and_survives_a_restart(
    tmp_path: Path, run_container: RunContainer, leaker_image: str, tag: str
) -> None:
    rules = f"""\
  - name: deprioritize
    match: {{labels: {{sentinel.e2e: "{tag}"}}}}
    do:
      - oom_score_adj: 500
"""
    with SentinelProcess.start(policy(rules), tmp_path) as s:
        s.wait_ready()
        c = run_container(
            leaker_image, "--rate", "0", "--fork", "2", memory="64m", options=labelled(tag)
        )

        def all_adjusted() -> dict[int, int] | None:
            pids = container_pids(c)
            values = oom_score_adjs(pids)
            ok = len(pids) == 3 and set(values.values()) == {500}
            return values if ok else None

        before = s.wait_for(all_adjusted, "oom_score_adj 500 on the 3 processes", 30)
        docker("restart", "--time", "1", c.id)
        after = s.wait_for(all_adjusted, "oom_score_adj 500 after the restart", 30)
        assert before is not None
        assert after is not None
        assert set(after).isdisjoint(before), "the restart should have made new processes"
        done = s.logs("action", target_id=c.id, action="oom_score_adj", outcome="done")
        assert done, s.stderr()[-3000:]
        rows = decisions(s, target_id=c.id, action="oom_score_adj")
        assert {r["outcome"] for r in rows} == {"done"}


# --- g. faults ----------------------------------------------------------------------------


def test_an_invalid_policy_stops_sentinel_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nsettings:\n  sample_interval: 1s\nrules:\n"
        "  - name: x\n    when: {projected_oom_within: soon}\n    do: [{notify: nobody}]\n"
    )
    result = subprocess.run(
        [str(SENTINEL), "run", "-c", str(bad), "--state", str(tmp_path / "s.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result
    assert f"{bad}:6" in result.stderr, result.stderr
    assert "projected_oom_within" in result.stderr
    assert not (tmp_path / "s.db").exists()


@pytest.mark.timeout(180)
def test_sigkill_and_start_again_loses_nothing_and_repeats_nothing(
    tmp_path: Path, run_container: RunContainer, leaker_image: str, tag: str
) -> None:
    rules = (
        report_kills(tag)
        + f"""\
  - name: restart-big
    match: {{labels: {{sentinel.e2e: "{tag}", role: steady}}}}
    when: {{memory_above: {{bytes: 16Mi, for: 1s}}}}
    do:
      - restart: {{grace_period: 1s}}
    cooldown: 1h
"""
    )

    def fast_leaker() -> Container:
        return run_container(
            leaker_image,
            "--rate",
            "64",
            "--step-ms",
            "20",
            memory="48m",
            options=labelled(tag, "role=leaker"),
        )

    text = policy(rules)
    first = SentinelProcess.start(text, tmp_path / "first", state=tmp_path / "state.db")
    try:
        first.wait_ready()
        steady = run_container(
            leaker_image,
            "--rate",
            "0",
            "--baseline",
            "32",
            memory="64m",
            options=labelled(tag, "role=steady"),
        )
        one = fast_leaker()
        assert one.wait(timeout=60) == 137
        first.wait_for(lambda: first.notifications(target_id=one.id), "the first kill", 20)
        first.wait_for(
            lambda: decisions(first, target_id=steady.id, action="restart", outcome="done"),
            "the restart of the steady one",
            30,
        )
        first.wait_for(lambda: first.pending() == 0, "the outbox to mark it sent", 20)
        mark = kmsg_marker()  # and the kmsg position stored past the kill
        first.wait_for(lambda: (first.kmsg_position() or -1) >= mark, "the kmsg position", 20)
    finally:
        first.stop(signal.SIGKILL)
    assert first.exit_code == -signal.SIGKILL

    two = fast_leaker()  # killed while sentinel is down
    assert two.wait(timeout=60) == 137
    with SentinelProcess.start(text, tmp_path / "second", state=tmp_path / "state.db") as second:
        second.wait_ready()
        second.wait_for(
            lambda: second.notifications(target_id=two.id), "the kill made while down", 30
        )
        second.settle()  # read past both kills, ticked, sent: a repeat would be here
        assert second.notifications(target_id=one.id) == []
        assert len(second.notifications(target_id=two.id)) == 1
        kills = [e for e in second.events() if e["event"] == "kill"]
        assert [k["target_id"] for k in kills if k["target_id"] in (one.id, two.id)] == [
            one.id,
            two.id,
        ]
        restarts = decisions(second, target_id=steady.id, action="restart")
        assert len(restarts) == 1, restarts
        assert second.logs("action", target_id=steady.id) == []


@pytest.mark.timeout(240)
def test_dockerd_restart_sentinel_reconnects_and_goes_on(
    tmp_path: Path, run_container: RunContainer, leaker_image: str, tag: str
) -> None:
    """Last in the file: restarting dockerd stops every container on the host."""
    rules = report_kills(tag)
    with SentinelProcess.start(policy(rules), tmp_path) as s:
        s.wait_ready()
        _restart_dockerd()
        s.wait_for(
            lambda: [
                line for line in s.logs() if str(line.get("msg", "")).startswith("docker events:")
            ],
            "sentinel to notice that dockerd went away",
            30,
        )
        c = run_container(
            leaker_image, "--rate", "0", "--baseline", "16", memory="64m", options=labelled(tag)
        )
        s.wait_for(
            lambda: s.metric("sentinel_memory_usage_bytes", target=c.name),
            "sentinel to watch a container started after the restart",
            60,
        )
        s.wait_for(lambda: s.logs("docker-connected"), "the reconnect line", 30)
        assert s.get("/healthz")[0] == 200
        assert s.get("/readyz")[0] == 200
        assert (s.metric("sentinel_docker_reconnects_total") or 0) >= 1


def _restart_dockerd() -> None:
    """SIGTERM to dockerd, wait until it is gone, start it again with scripts/docker-up."""
    found = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True, check=False)
    pids = [int(p) for p in found.stdout.split()]
    assert pids, "no dockerd running"
    for pid in pids:
        os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        return not any(_alive(pid) for pid in pids)

    wait_for(gone, "dockerd to stop", 60)
    result = subprocess.run(
        [str(DOCKER_UP)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
