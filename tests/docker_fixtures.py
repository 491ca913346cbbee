"""Real Docker for tests: the daemon, the leaker image, and containers that clean up.

Loaded from ``tests/conftest.py`` through ``pytest_plugins``. Everything goes through the
``docker`` CLI in a subprocess: tests must not depend on sentinel's own Docker client
(``sentinel.clients.docker``), which is one of the things they test.

- ``docker_daemon`` (session): runs ``scripts/docker-up``, which installs and starts
  dockerd when needed. When Docker cannot be had the tests that need it *fail*; set
  ``SENTINEL_SKIP_DOCKER=1`` to skip them instead.
- ``leaker_image`` (session): builds ``sentinel-test/leaker:latest`` from
  ``tests/images/leaker`` (only when its sources changed) and returns its name.
- ``run_container`` (per test): starts containers named ``sentinel-test-<uuid>``, always
  with a memory limit of at most 512 MiB, no swap beyond it and no network, and removes
  them with ``docker rm -f`` at teardown, whatever the test's outcome.

The kernel OOM killer really runs on the test machines: a container's limit is the only
thing that keeps a leak from taking the host down, so there is no way to start one
without a limit here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKER_UP = REPO / "scripts" / "docker-up"
BUILD_IMAGES = REPO / "tests" / "images" / "build.sh"
LEAKER_IMAGE = "sentinel-test/leaker:latest"
NAME_PREFIX = "sentinel-test-"
TEST_LABEL = "sentinel.test=1"
MAX_MEMORY_BYTES = 512 << 20
"""The largest memory limit a test container may have (the host has no swap)."""
DEFAULT_MEMORY = "64m"

# Options run_container sets itself; passing them in `options` would undo its guarantees.
_RESERVED_OPTIONS = ("-m", "--memory", "--memory-swap", "--name", "--network", "--net", "--rm")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def memory_bytes(limit: str) -> int:
    """Bytes in a Docker memory limit such as ``64m`` (units b, k, m, g; as docker reads them)."""
    match = re.fullmatch(r"(\d+)([bkmg]?)", limit.strip().lower())
    if match is None:
        raise ValueError(f"not a Docker memory limit: {limit!r} (expected e.g. '64m')")
    return int(match.group(1)) * _UNITS[match.group(2)]


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS``; on failure with ``check``, fail the test with docker's stderr."""
    try:
        result = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"docker {' '.join(args)}: no answer within {timeout}s")
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)}: exit {result.returncode}\n{result.stderr.strip()}")
    return result


@dataclass(frozen=True)
class Container:
    """A container that ``run_container`` started; removed at the end of the test."""

    name: str
    id: str
    """The full 64-hex container id."""

    def inspect(self) -> dict[str, Any]:
        """``docker inspect`` of this container."""
        data: list[dict[str, Any]] = json.loads(docker("inspect", self.id).stdout)
        return data[0]

    def state(self) -> dict[str, Any]:
        """The ``State`` object: Status, Pid, OOMKilled, ExitCode, ..."""
        state: dict[str, Any] = self.inspect()["State"]
        return state

    def signal(self, name: str) -> None:
        """Send a signal (``USR1``, ``TERM``, ...) to the container's main process."""
        docker("kill", "--signal", name, self.id)

    def wait(self, timeout: float = 60) -> int:
        """Block until the container stops; its exit code."""
        return int(docker("wait", self.id, timeout=timeout).stdout.strip())

    def logs(self) -> str:
        """What the container printed so far, stdout and stderr together."""
        result = docker("logs", self.id)
        return result.stdout + result.stderr


class RunContainer(Protocol):
    """The ``run_container`` fixture: start a container, get a :class:`Container`."""

    def __call__(
        self,
        image: str,
        *args: str,
        memory: str = DEFAULT_MEMORY,
        env: Mapping[str, str] | None = None,
        options: Sequence[str] = (),
    ) -> Container: ...


@pytest.fixture(scope="session")
def docker_daemon() -> str:
    """A Docker daemon that answers; the server version. Starts one when needed."""
    if os.environ.get("SENTINEL_SKIP_DOCKER") == "1":
        pytest.skip("SENTINEL_SKIP_DOCKER=1: tests that need Docker are skipped")
    try:
        result = subprocess.run(
            [str(DOCKER_UP)], capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{DOCKER_UP} did not finish within 600s")
    if result.returncode != 0:
        pytest.fail(
            f"Docker is not available: {DOCKER_UP} exited {result.returncode}\n"
            f"{result.stdout}{result.stderr}\n"
            "(set SENTINEL_SKIP_DOCKER=1 to skip the tests that need Docker)"
        )
    if shutil.which("docker") is None:
        pytest.fail(f"{DOCKER_UP} succeeded but there is no docker CLI on PATH")
    return docker("version", "--format", "{{.Server.Version}}").stdout.strip()


@pytest.fixture(scope="session")
def leaker_image(docker_daemon: str) -> str:
    """The name of the leaker image (tests/images/leaker), built when missing or stale."""
    try:
        result = subprocess.run(
            [str(BUILD_IMAGES)], capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{BUILD_IMAGES} did not finish within 600s")
    if result.returncode != 0:
        pytest.fail(
            f"building {LEAKER_IMAGE} failed: exit {result.returncode}\n"
            f"{result.stdout}{result.stderr}"
        )
    return LEAKER_IMAGE


@pytest.fixture
def run_container(docker_daemon: str) -> Iterator[RunContainer]:
    """Factory: start a detached, memory-limited, network-less test container.

    ``run_container(image, *args, memory="64m", env={...}, options=[...])`` runs
    ``docker run -d`` with ``--memory`` = ``--memory-swap`` = ``memory`` (at most 512m),
    ``--network none``, a unique ``sentinel-test-<uuid>`` name and the label
    ``sentinel.test=1``; ``args`` go to the image's entrypoint, ``options`` to
    ``docker run``. Every container it started is removed when the test ends.
    """
    started: list[str] = []

    def run(
        image: str,
        *args: str,
        memory: str = DEFAULT_MEMORY,
        env: Mapping[str, str] | None = None,
        options: Sequence[str] = (),
    ) -> Container:
        limit = memory_bytes(memory)
        if not 0 < limit <= MAX_MEMORY_BYTES:
            raise ValueError(f"memory={memory!r}: test containers need a limit of 1b..512m")
        for option in options:
            if option.split("=", 1)[0] in _RESERVED_OPTIONS:
                raise ValueError(f"run_container sets {option.split('=', 1)[0]} itself")
        name = f"{NAME_PREFIX}{uuid.uuid4().hex}"
        started.append(name)  # before `docker run`: a half-created container is removed too
        cmd = ["run", "--detach", "--name", name, "--label", TEST_LABEL]
        cmd += ["--memory", str(limit), "--memory-swap", str(limit), "--network", "none"]
        for key, value in (env or {}).items():
            cmd += ["--env", f"{key}={value}"]
        cmd += [*options, image, *args]
        container_id = docker(*cmd).stdout.strip()
        return Container(name=name, id=container_id)

    yield run

    failures = []
    for name in started:
        result = docker("rm", "--force", "--volumes", name, check=False)
        if result.returncode != 0 and "No such container" not in result.stderr:
            failures.append(f"{name}: {result.stderr.strip()}")
    if failures:
        pytest.fail("could not remove test containers:\n" + "\n".join(failures))
