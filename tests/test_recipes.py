"""The README's run recipes, as written: the commands the container tests run are the
README's (token for token, names aside), the Docker Compose file brings up an app and its
sidecar that restarts it before the kill, and the systemd unit passes ``systemd-analyze
verify``."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from container_sentinel import SentinelContainer, inspect
from daemon_process import SENTINEL, wait_for
from docker_fixtures import NAME_PREFIX, docker
from sentinel.cli import build_parser
from test_container_host import host_command
from test_container_sidecar import LEAK, POLICY, app_command, sidecar_command

README = Path(__file__).resolve().parents[1] / "README.md"
PWD_POLICY = Path("$PWD/policy.yaml")


def section(title: str) -> str:
    """The README text under heading ``title`` up to the next heading of any level."""
    text = README.read_text()
    start = text.index(title)
    end = re.compile(r"^#{2,3} ", re.M).search(text, start + len(title))
    return text[start : end.start() if end else len(text)]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def commands(block: str) -> list[list[str]]:
    """Each shell command of a ``sh`` block as the shell splits it (``$PWD`` unexpanded)."""
    joined = block.replace("\\\n", " ")
    return [shlex.split(line) for line in joined.splitlines() if line.strip()]


def test_the_host_container_command_is_the_one_tested() -> None:
    (block,) = blocks(section("### Docker: one host container per machine"), "sh")
    (readme,) = commands(block)
    tested = host_command("sentinel", "sentinel-state", PWD_POLICY, sys_resource=True)
    i = tested.index("SLACK_BOT_TOKEN")
    del tested[i - 1 : i + 1]  # the test's one extra flag: the Slack token
    assert readme == ["docker", *tested]


def test_the_sidecar_commands_are_the_ones_tested() -> None:
    block, pause_block = blocks(section("### Docker: a sidecar beside one app"), "sh")
    app, sidecar = commands(block)
    assert sidecar == [
        "docker",
        *sidecar_command("app-sentinel", "app", "app-sentinel-state", PWD_POLICY),
    ]
    tested_app = app_command("app", "IMAGE")
    del tested_app[tested_app.index("--network") : tested_app.index("--network") + 2]
    assert app == ["docker", *tested_app[: len(tested_app) - len(LEAK)]]

    _, pause_app, pause_sidecar = commands(pause_block)
    assert pause_sidecar == [
        "docker",
        *sidecar_command("app-sentinel", "app-pause", "app-sentinel-state", PWD_POLICY),
    ]
    assert pause_app[:6] == ["docker", "run", "-d", "--name", "app", "--pid"]


@pytest.fixture
def compose(docker_daemon: str) -> str:
    """The ``docker-compose`` command (Debian's, installed when missing)."""
    found = shutil.which("docker-compose")
    if found is None:
        result = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker-compose"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which("docker-compose")
        assert found is not None, f"apt-get install docker-compose failed:\n{result.stderr}"
    return found


@pytest.fixture
def project(compose: str, tmp_path: Path) -> Iterator[str]:
    name = f"{NAME_PREFIX}compose-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(
        [compose, "-p", name, "down", "--volumes", "--timeout", "2"],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=False,
    )


@pytest.mark.kernel
@pytest.mark.timeout(300)
def test_the_compose_file_restarts_the_app_before_the_kill(
    tmp_path: Path, compose: str, project: str, leaker_image: str, sentinel_image: str
) -> None:
    (block,) = blocks(section("### Docker Compose: app and sidecar"), "yaml")
    app_image = "    image: IMAGE                     # your app\n"
    assert app_image in block
    leak = ", ".join(f"'{a}'" for a in LEAK)
    text = block.replace(app_image, f"    image: {leaker_image}\n    command: [{leak}]\n")
    (tmp_path / "docker-compose.yaml").write_text(text)
    (tmp_path / "policy.yaml").write_text(POLICY)
    up = subprocess.run(
        [compose, "-p", project, "up", "-d"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    app, side = f"{project}_app_1", f"{project}_app-sentinel_1"
    s = SentinelContainer(side, f"{project}_app-sentinel-state")
    wait_for(lambda: s.logs("selftest"), f"the sidecar's self-test\n{s.describe()}", 60)
    selftest = s.logs("selftest")[0]
    assert selftest["app_memory"] == "proc"
    assert selftest["app_can_be_stopped"] is True
    os.kill(int(inspect(app)["State"]["Pid"]), signal.SIGUSR1)  # start leaking
    wait_for(
        lambda: inspect(app)["RestartCount"] >= 1,
        f"the restart before the kill\n{s.describe()}",
        120,
    )
    assert not inspect(app)["State"]["OOMKilled"]
    wait_for(lambda: s.notifications(rule="restart-app"), f"the notification\n{s.describe()}", 60)
    assert docker("inspect", side).returncode == 0


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    (unit,) = blocks(section("### systemd: sentinel as a host process"), "ini")
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M)
    assert exec_start is not None
    argv = shlex.split(exec_start.group(1))
    assert argv[0] == "/opt/sentinel/bin/sentinel"  # where the install line puts it
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run"
    assert args.config == "/etc/sentinel/policy.yaml"
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("no systemd-analyze on this machine")
    path = tmp_path / "sentinel.service"
    path.write_text(unit.replace("/opt/sentinel/bin/sentinel", str(SENTINEL)))
    result = subprocess.run(
        [verify, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [
        line for line in (result.stdout + result.stderr).splitlines() if "sentinel.service" in line
    ]
    assert problems == [], result.stdout + result.stderr
