"""``sentinel top`` on this machine: the host line, the header, a real limited cgroup."""

from __future__ import annotations

import json
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


def _top(fmt: str, window: float) -> str:
    out = subprocess.run(
        [SENTINEL, "top", "--once", "--no-docker", "--format", fmt, "--window", str(window)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_young_leak_shows_its_trend_and_eta_within_seconds() -> None:
    # 3 MiB/s from 20 MiB into 256 MiB: the kernel kills it about 80 s after it starts.
    # Within 10 s of sampling, top shows the trend it measures and an ETA (marked '~'
    # while only the trend says it); the JSON carries both answers.
    with cgroups.temporary(limit_bytes=256 * cgroups.MIB) as cg:
        leak = cgroups.allocate(cg, 20, grow_mib=3, every=1.0)
        try:
            rows = json.loads(_top("json", 8))
            table = _top("table", 8)
        finally:
            leak.kill()
            leak.wait()
    (row,) = [r for r in rows if r["cgroup"] == cg.path]
    assert 1.5 * cgroups.MIB < row["trend_bytes_per_s"] < 6 * cgroups.MIB
    assert row["trend_error_bytes_per_s"] < row["trend_bytes_per_s"]
    eta = row["eta_seconds"] if row["eta_seconds"] is not None else row["observed_eta_seconds"]
    assert eta is not None
    assert 10 < eta < 120
    assert row["observed_eta_low"] <= row["observed_eta_seconds"]
    assert row["confident"] is (row["eta_seconds"] is not None)
    (line,) = [r for r in table.splitlines()[2:] if r.split()[0] == fit_name(cg.path)]
    cells = line.split()
    trend, shown_eta = cells[5], cells[6]
    assert trend.startswith("+")
    assert trend.endswith(("Mi", "Gi"))
    assert shown_eta != "-"
    assert shown_eta.lstrip("~").endswith(("s", "m"))
