"""sentinel's own container image for tests, built once per session.

Loaded from ``tests/conftest.py`` through ``pytest_plugins``.

- ``sentinel_image`` (session): runs ``scripts/image``, which builds ``sentinel:local`` from the
  Dockerfile without any registry (a debootstrap base and a local wheelhouse) and only when its
  inputs changed, and returns the image's name. When the build fails, the tests that use the
  fixture fail with the script's output.
- ``build_image()``: one run of ``scripts/image``, for tests of the script itself.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IMAGE_SCRIPT = REPO / "scripts" / "image"
SENTINEL_IMAGE = "sentinel:local"
BUILD_TIMEOUT_S = 900
"""A cold build (debootstrap, wheel downloads) takes about a minute; the lock may add a wait."""


@dataclass(frozen=True)
class ImageBuild:
    """What one run of ``scripts/image`` printed."""

    image_id: str
    """The last line on stdout: ``sha256:...``."""
    log: str
    """The progress lines (stderr)."""


def _text(output: bytes | str | None) -> str:
    """A ``TimeoutExpired``'s output: bytes even with ``text=True``, or None."""
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def build_image(timeout: float = BUILD_TIMEOUT_S) -> ImageBuild:
    """Run ``scripts/image`` for ``sentinel:local``; fail the test with its output on failure."""
    env = {**os.environ, "SENTINEL_IMAGE": SENTINEL_IMAGE}
    try:
        result = subprocess.run(
            [str(IMAGE_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        output = _text(e.stdout) + _text(e.stderr)
        pytest.fail(f"{IMAGE_SCRIPT} did not finish within {timeout}s\n{output}")
    if result.returncode != 0:
        pytest.fail(
            f"building {SENTINEL_IMAGE} failed: {IMAGE_SCRIPT} exited {result.returncode}\n"
            f"{result.stdout}{result.stderr}"
        )
    lines = result.stdout.strip().splitlines()
    if not lines or not lines[-1].startswith("sha256:"):
        pytest.fail(f"{IMAGE_SCRIPT} printed no image id last\n{result.stdout}{result.stderr}")
    return ImageBuild(image_id=lines[-1], log=result.stderr)


@pytest.fixture(scope="session")
def sentinel_image(docker_daemon: str) -> str:
    """The name of sentinel's image (``sentinel:local``), built when missing or stale."""
    build_image()
    return SENTINEL_IMAGE
