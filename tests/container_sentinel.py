"""sentinel in its own container image, for the container-mode end-to-end tests.

Containers here are started with the exact ``docker run`` commands the README gives
(``run_container`` in ``docker_fixtures`` adds ``--memory`` and ``--network none``, which
these commands must not have), under unique names, and removed with their named volumes
when the test ends, whatever its outcome:

    def test_x(docker_run: DockerRun) -> None:
        name = docker_run.name("sentinel")
        docker_run(["run", "-d", "--name", name, ...], volumes=[...])
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from daemon_process import json_lines
from docker_fixtures import NAME_PREFIX, docker


@dataclass
class DockerRun:
    """Runs docker commands that create containers and volumes, and removes them all."""

    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def name(self, what: str) -> str:
        """A unique container or volume name for ``what``; removed at the end of the test."""
        return f"{NAME_PREFIX}{what}-{self.run_id}"

    def __call__(
        self, args: Sequence[str], *, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` (a ``run`` with ``--name`` is remembered for removal)."""
        args = list(args)
        if "--name" in args:
            self.containers.append(args[args.index("--name") + 1])
        for i, arg in enumerate(args[:-1]):
            if arg == "-v" and ":" in args[i + 1] and not args[i + 1].startswith("/"):
                self.volumes.append(args[i + 1].split(":", 1)[0])
        result = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=120, check=False, env=env
        )
        if check and result.returncode != 0:
            pytest.fail(f"docker {' '.join(args)}: exit {result.returncode}\n{result.stderr}")
        return result

    def cleanup(self) -> list[str]:
        problems = []
        for name in reversed(self.containers):
            result = docker("rm", "--force", name, check=False)
            if result.returncode != 0 and "No such container" not in result.stderr:
                problems.append(f"{name}: {result.stderr.strip()}")
        for volume in dict.fromkeys(self.volumes):
            result = docker("volume", "rm", "--force", volume, check=False)
            if result.returncode != 0:
                problems.append(f"volume {volume}: {result.stderr.strip()}")
        return problems


@pytest.fixture
def docker_run(docker_daemon: str) -> Iterator[DockerRun]:
    runner = DockerRun()
    yield runner
    problems = runner.cleanup()
    if problems:
        pytest.fail("could not remove test containers:\n" + "\n".join(problems))


def exits(name: str, since: str) -> list[tuple[str, int | None]]:
    """Docker's ``die`` and ``oom`` events of container ``name`` since the RFC 3339 time
    ``since``: ``[("die", exit code), ("oom", None), ...]`` (``docker inspect`` forgets the
    exit code of a run once the restart policy starts the next one)."""
    result = docker(
        "events",
        "--since",
        since,
        "--until",
        datetime.now(UTC).isoformat(),
        "--filter",
        f"container={name}",
        "--format",
        "{{json .}}",
    )
    out: list[tuple[str, int | None]] = []
    for line in result.stdout.splitlines():
        event = json.loads(line)
        if event.get("status") == "die":
            out.append(("die", int(event["Actor"]["Attributes"]["exitCode"])))
        elif event.get("status") == "oom":
            out.append(("oom", None))
    return out


def inspect(name: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(docker("inspect", name).stdout)
    return data[0]


@dataclass(frozen=True)
class SentinelContainer:
    """A sentinel container: its log (stderr: JSON lines), its notifications (stdout: the
    ``log`` notifier's JSON lines) and its state volume."""

    name: str
    state_volume: str

    def _logs(self) -> tuple[str, str]:
        result = docker("logs", self.name, check=False)
        return result.stdout, result.stderr

    def logs(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """Log lines (all runs of the container), with ``event`` and ``match``ing keys."""
        lines = json_lines(self._logs()[1])
        return [
            line
            for line in lines
            if (event is None or line.get("event") == event)
            and all(line.get(k) == v for k, v in match.items())
        ]

    def notifications(self, **match: Any) -> list[dict[str, Any]]:
        return [
            n for n in json_lines(self._logs()[0]) if all(n.get(k) == v for k, v in match.items())
        ]

    def events(self, image: str, since: str = "2h") -> list[dict[str, Any]]:
        """``sentinel events`` read from the state volume by a second container."""
        result = docker(
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            f"{self.state_volume}:/var/lib/sentinel",
            image,
            "events",
            "--state",
            "/var/lib/sentinel/state.db",
            "--since",
            since,
            "--format",
            "json",
            check=False,
        )
        assert result.returncode in (0, 1), result.stderr
        return json_lines(result.stdout)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = inspect(self.name)["State"]
        return state

    def describe(self) -> str:
        """The container's state and the end of its log, for failure messages."""
        out, err = self._logs()
        return f"{self.name}: {self.state()}\nstdout:\n{out[-3000:]}\nstderr:\n{err[-5000:]}"
