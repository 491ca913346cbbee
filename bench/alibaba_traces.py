#!/usr/bin/env python3
"""Build traces from the real Alibaba GenAI container memory series.

Reads ``pod_memory_util_anon.csv`` (from ../shared/data/alibaba-genai-2026, utilisation
0..1 of the container's limit, ~57 s sampling, ~23 h) and writes OUT/NNN-KIND.csv plus a
manifest in the forecast-bench format. Every container with at least MIN_SAMPLES samples
becomes a healthy trace (``real``: these were not known to leak); a seeded subset also
becomes a leak (``real+leak``): the same real series with a synthetic leak added from a
random start (linear, or growing through jobs, or in steps), cut at the kill (the first
sample at or above the limit). The limit is chosen per container (256 MiB .. 8 GiB).
Usage: alibaba_traces.py OUT [--seed 11] [--leaks 100] [--data DIR]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import tarfile
from collections import defaultdict
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared/data/alibaba-genai-2026"
"""Where the archive is by default: the shared folder beside this repository's checkout."""
ARCHIVE = "pod_memory_util_anon.tar.gz"
MIN_SAMPLES = 120
LIMITS = (256 << 20, 512 << 20, 1 << 30, 2 << 30, 4 << 30, 8 << 30)


def load(archive: Path) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.name.endswith(".csv"):
                continue
            fh = tar.extractfile(member)
            if fh is None:
                continue
            for row in csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8")):
                series[row["container_ip"]].append(
                    (float(row["timestamp_anon"]), float(row["value"]))
                )
    for rows in series.values():
        rows.sort()
    return dict(series)


def leak_shape(rng: random.Random, rows: list[tuple[float, float]]) -> tuple[str, list[float]]:
    """A synthetic leak (fraction of the limit, per row) that kills within the series."""
    t0 = rows[0][0]
    span = rows[-1][0] - t0
    start = t0 + rng.uniform(0.0, 0.3) * span
    kind = rng.choice(("linear", "jobs", "steps"))
    peak = max(u for _, u in rows)
    # the leak alone would fill the headroom at 50% to 95% of the remaining series
    dur = (rows[-1][0] - start) * rng.uniform(0.5, 0.95)
    out = []
    if kind == "linear":
        rate = (1.0 - peak) / dur
        out = [rate * max(0.0, t - start) for t, _ in rows]
    elif kind == "jobs":
        # a job that has always run (from the first sample) starts leaving residue
        period = rng.choice((1800.0, 3600.0, 7200.0))
        width = period * rng.uniform(0.05, 0.3)
        height = rng.uniform(0.03, min(0.3, 0.9 * (1.0 - peak)))
        rate = (1.0 - peak - height) / dur
        for t, _ in rows:
            x = max(0.0, t - start)
            spike = height if ((t - t0) % period) < width else 0.0
            out.append(rate * (x // period) * period + spike)
    else:
        gap = rng.choice((1800.0, 3600.0))
        rate = (1.0 - peak) / dur
        for t, _ in rows:
            x = max(0.0, t - start)
            out.append(rate * (x // gap) * gap)
    return f"real+leak_{kind}", out


def build(out: Path, seed: int, leaks: int, data: Path = DATA) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.csv"):
        old.unlink()
    series = load(data / ARCHIVE)
    names = sorted(k for k, v in series.items() if len(v) >= MIN_SAMPLES)
    rng = random.Random(seed)
    manifest: dict[str, dict[str, object]] = {}
    n = 0

    def write(kind: str, rows: list[tuple[float, float]], fracs: list[float], leak: bool) -> None:
        nonlocal n
        limit = rng.choice(LIMITS)
        t0 = rows[0][0]
        lines = []
        kill_t = None
        for (t, _), frac in zip(rows, fracs, strict=True):
            if frac >= 1.0 and leak:
                lines.append(f"{t - t0:.0f},{limit}\n")
                kill_t = t - t0
                break
            lines.append(f"{t - t0:.0f},{int(min(max(frac, 0.0), 0.999) * limit)}\n")
        if leak and kill_t is None:
            return
        name = f"{n:03d}-{kind}.csv"
        (out / name).write_text("t,usage_bytes\n" + "".join(lines))
        manifest[name] = {"limit": limit, "kind": kind, "leak": leak, "kill_t": kill_t}
        n += 1

    for name in names:
        rows = series[name]
        write("real", rows, [u for _, u in rows], False)
    for name in rng.sample(names, min(leaks, len(names))):
        rows = series[name]
        kind, extra = leak_shape(rng, rows)
        write(kind, rows, [u + e for (_, u), e in zip(rows, extra, strict=True)], True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--leaks", type=int, default=100)
    ap.add_argument("--data", type=Path, default=DATA, help=f"folder holding {ARCHIVE}")
    a = ap.parse_args()
    print(f"wrote {build(a.out, a.seed, a.leaks, a.data)} traces to {a.out}")


if __name__ == "__main__":
    main()
