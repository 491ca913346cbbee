"""``sentinel top`` on this machine: the host line, the header, a real limited cgroup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import cgroups
from sentinel.cli.top import fit_name

SENTINEL = str(Path(sys.executable).parent / "sentinel")

pytestmark = pytest.mark.kernel


def test_table_shows_the_host_and_a_limited_cgroup() -> None:
    with cgroups.temporary(limit_bytes=64 * cgroups.MIB) as cg:
        cgroups.allocate(cg, 16)
        out = subprocess.run(
            [SENTINEL, "top", "--once", "--no-docker", "--format", "table", "--window", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert out.returncode == 0, out.stderr
    host, header, *rows = out.stdout.splitlines()
    assert host.startswith("host: ")
    assert "available" in host
    assert header.split() == [
        "NAME",
        "USAGE",
        "LIMIT",
        "%LIM",
        "WSET",
        "TREND/h",
        "ETA",
        "BINDS",
        "ADJ",
    ]
    # A long path keeps its end (the test's unique cgroup name), not the shared beginning.
    (row,) = [r for r in rows if r.split()[0] == fit_name(cg.path)]
    assert row.split()[0].endswith(cg.path.rsplit("/", 1)[1])
    assert "64.0Mi" in row.split()
    assert "cgroup" in row.split()
