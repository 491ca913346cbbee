"""Shared test setup. Real components first: see tests/cgroups.py and docker fixtures.

Markers (registered in pyproject.toml):

- ``kernel``: the test makes the kernel's OOM killer act (real kills read back from
  ``/dev/kmsg``);
- ``root``: the test needs root: real memory cgroups, ``/dev/kmsg``, Docker or the kernel's
  OOM killer. Given here to every ``kernel`` test and to every test that uses one of
  :data:`ROOT_FIXTURES` (directly or through another fixture); modules that need root in
  other ways say so with ``pytestmark``.

``pytest -m "not root"`` runs the rest as any user, without cgroups, kmsg or Docker
(tests/test_markers.py proves it, as an unprivileged user).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import cgroups

# docker_daemon, run_container, ...; sentinel_image; docker_run
pytest_plugins = ["docker_fixtures", "image_fixtures", "container_sentinel"]

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20

ROOT_FIXTURES = frozenset({"docker_daemon", "memory_cgroup"})
"""Fixtures that need root: a test that uses one (even through another fixture, as every
Docker fixture goes through ``docker_daemon``) is marked ``root``."""


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("kernel") is not None or fixtures & ROOT_FIXTURES:
            item.add_marker(pytest.mark.root)


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def memory_cgroup() -> Iterator[cgroups.Cgroup]:
    """A fresh memory cgroup limited to 64 MiB below this process's (needs root); its
    processes are killed and it is removed after the test."""
    with cgroups.temporary(limit_bytes=64 * MIB) as group:
        yield group
