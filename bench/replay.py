#!/usr/bin/env python3
"""Replay trace folders through the forecaster in process: scores and samples per second.

Scores like ../shared/forecast-bench/evaluate.py (fires at the first sample whose ETA is
within the lead; a leak is caught when that is at least 60 s before the kill) without a
process per trace, and says which traces were missed or falsely fired on.
Usage: replay.py DIR [DIR ...] [--lead 900] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from sentinel.forecast import Forecaster

MIN_LEAD = 60.0


def read(path: Path) -> list[tuple[float, float]]:
    with path.open() as fh:
        next(fh)
        return [(float(a), float(b)) for a, b in (line.split(",") for line in fh if line.strip())]


def fire(rows: list[tuple[float, float]], limit: float, lead: float) -> float | None:
    f = Forecaster(limit)
    update = f.update
    for t, u in rows:
        eta = update(t, u)
        if eta is not None and eta <= lead:
            return t
    return None


def speed(rows_by_trace: list[tuple[list[tuple[float, float]], float]]) -> tuple[int, float]:
    n = 0
    t0 = time.perf_counter()
    for rows, limit in rows_by_trace:
        update = Forecaster(limit).update
        for t, u in rows:
            update(t, u)
        n += len(rows)
    return n, time.perf_counter() - t0


def score_dir(d: Path, lead: float, verbose: bool) -> dict[str, object]:
    manifest = json.loads((d / "manifest.json").read_text())
    caught = nleak = false = nok = false_under80 = 0
    leads: list[float] = []
    per_kind: dict[str, list[int]] = {}
    bad: list[str] = []
    for name, m in manifest.items():
        rows = read(d / name)
        f = fire(rows, m["limit"], lead)
        k = per_kind.setdefault(m["kind"], [0, 0])
        k[1] += 1
        if m["leak"]:
            nleak += 1
            if f is not None and m["kill_t"] - f >= MIN_LEAD:
                caught += 1
                k[0] += 1
                leads.append(m["kill_t"] - f)
            else:
                got = "never" if f is None else f"{m['kill_t'] - f:.0f}s before"
                bad.append(f"MISS {name} fired {got}")
        else:
            nok += 1
            if f is None:
                k[0] += 1
            else:
                false += 1
                peak = max(u for _, u in rows) / m["limit"]
                false_under80 += peak < 0.8
                bad.append(f"FALSE {name} at t={f:.0f} (peak {peak:.0%})")
    if verbose:
        for b in bad:
            print("  " + b)
    return {
        "set": d.name,
        "caught": f"{caught}/{nleak}",
        "false_restarts": f"{false}/{nok}",
        "false_under_80pct": false_under80,
        "median_lead_s": round(statistics.median(leads)) if leads else 0,
        "per_kind_ok": {k: f"{a}/{b}" for k, (a, b) in per_kind.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--lead", type=float, default=900.0)
    ap.add_argument("--verbose", "-v", action="store_true")
    a = ap.parse_args()
    for d in a.dirs:
        print(json.dumps(score_dir(d, a.lead, a.verbose)))


if __name__ == "__main__":
    main()
