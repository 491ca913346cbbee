"""Shared test setup. Real components first: see tests/cgroups.py and docker fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

# docker_daemon, run_container, ...; sentinel_image; docker_run
pytest_plugins = ["docker_fixtures", "image_fixtures", "container_sentinel"]

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_dir() -> Path:
    return DATA
