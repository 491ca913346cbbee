"""A real leaking process in a real memory cgroup: the forecast sees the kill coming.

The leak runs in a 256 MiB cgroup below the test's own and grows about 4 MiB/s until the
kernel kills it (about a minute). The monitor that ``sentinel top`` and the daemon use
samples it every second; before half of the time to the kill has passed, one of its ETAs
must be within 20% of the real kill time. Meanwhile ``sentinel top --once`` lists that
cgroup with an ETA.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import cgroups
from sentinel.runtime.monitor import Monitor
from sentinel.sources.cgroup import CgroupFS
from sentinel.sources.procfs import Proc

SENTINEL = str(Path(sys.executable).parent / "sentinel")
TOP_WINDOW = ("--window", "22", "--interval", "1")

pytestmark = pytest.mark.kernel


def test_eta_of_a_real_leak_and_sentinel_top() -> None:
    with cgroups.temporary(limit_bytes=256 * cgroups.MIB) as cg:
        monitor = Monitor(CgroupFS(clock=time.time), Proc(clock=time.time), all_cgroups=True)
        etas: list[tuple[float, float]] = []
        top: dict[str, object] = {}
        try:
            start = time.time()
            leak = cgroups.allocate(cg, 20, grow_mib=2, every=0.5)

            def run_top() -> None:
                out = subprocess.run(
                    [
                        SENTINEL,
                        "top",
                        "--once",
                        "--no-docker",
                        "--format",
                        "json",
                        "--window",
                        "22",
                        "--interval",
                        "1",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                top["rc"] = out.returncode
                top["rows"] = json.loads(out.stdout) if out.stdout.strip() else []

            top_thread = threading.Thread(target=run_top)
            time.sleep(8)
            top_thread.start()
            monitor.discover()
            while leak.poll() is None and time.time() - start < 150:
                for w in monitor.tick():
                    if w.sample.cgroup == cg.path and w.eta_seconds is not None:
                        etas.append((w.sample.t, w.eta_seconds))
                time.sleep(1.0)
                monitor.discover()
            assert leak.wait(timeout=30) == -9  # the kernel's OOM kill
            killed = time.time()
            top_thread.join(timeout=120)
        finally:
            monitor.close()
    half = start + (killed - start) / 2
    good = [
        (t, eta) for t, eta in etas if t <= half and abs(t + eta - killed) <= 0.2 * (killed - t)
    ]
    assert good, (
        f"kill at +{killed - start:.0f}s; ETAs: {[(round(t - start), round(e)) for t, e in etas]}"
    )
    assert top["rc"] == 0
    rows = [r for r in top["rows"] if isinstance(r, dict) and r["cgroup"] == cg.path]  # type: ignore[union-attr]
    assert len(rows) == 1, top
    row = rows[0]
    assert row["limit_bytes"] == 256 * cgroups.MIB
    assert isinstance(row["eta_seconds"], float)
    assert row["constraint"] == "cgroup"
    assert row["usage_bytes"] > 20 * cgroups.MIB
