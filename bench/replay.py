#!/usr/bin/env python3
"""Replay trace folders through the forecaster in process: scores, baselines, speed.

Scores like ../shared/forecast-bench/evaluate.py (a method fires at the first sample whose
ETA is within the lead; a leak is caught when that is at least 60 s before the kill; a
healthy trace it fires on is a false restart) without a process per trace, and says which
traces were missed or falsely fired on. The baselines are the scorer's own, re-implemented
here so that a clean clone without the shared folder scores them too: Prometheus-style
``predict_linear`` over 1 h (projecting the lead, and 4 h ahead as alert rules often do)
with ``for: 5m``, and a static "above 90% of the limit for 5 min" rule.
Usage: replay.py DIR [DIR ...] [--lead 900] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from sentinel.forecast import Forecaster

MIN_LEAD = 60.0
Rows = list[tuple[float, float]]
METHODS = ("sentinel", "predict_linear_1h_lead", "predict_linear_1h_4h", "threshold_90pct_5m")


def read(path: Path) -> Rows:
    with path.open() as fh:
        next(fh)
        return [(float(a), float(b)) for a, b in (line.split(",") for line in fh if line.strip())]


def fire(rows: Rows, limit: float, lead: float, known_leaker: bool = False) -> float | None:
    """When sentinel's confident ETA first comes within ``lead`` (None: never)."""
    f = Forecaster(limit)
    f.known_leaker = known_leaker
    update = f.update
    for t, u in rows:
        eta = update(t, u)
        if eta is not None and eta <= lead:
            return t
    return None


def predict_linear_fire(
    rows: Rows, limit: float, lead: float, window: float = 3600.0, hold: float = 300.0
) -> float | None:
    """Least squares over the last ``window`` s, as Prometheus ``predict_linear``, in an
    alert rule with ``for: 5m``, once half the window holds data (as the scorer does)."""
    q: deque[tuple[float, float]] = deque()
    ref = rows[0][0] if rows else 0.0
    since = None
    sx = sy = sxx = sxy = 0.0
    for t, u in rows:
        if t - ref > 2 * window:  # re-base the sums to keep precision
            ref = q[0][0] if q else t
            sx = sy = sxx = sxy = 0.0
            for a, b in q:
                x = a - ref
                sx += x
                sy += b
                sxx += x * x
                sxy += x * b
        x = t - ref
        q.append((t, u))
        sx += x
        sy += u
        sxx += x * x
        sxy += x * u
        while q and q[0][0] < t - window:
            ot, ou = q.popleft()
            ox = ot - ref
            sx -= ox
            sy -= ou
            sxx -= ox * ox
            sxy -= ox * ou
        n = len(q)
        if n < 2 or t - q[0][0] < window / 2:
            continue
        den = n * sxx - sx * sx
        if den <= 0:
            continue
        slope = (n * sxy - sx * sy) / den
        intercept = (sy - slope * sx) / n
        if intercept + slope * (x + lead) >= limit:
            since = t if since is None else since
            if t - since >= hold:
                return t
        else:
            since = None
    return None


def threshold_fire(
    rows: Rows, limit: float, frac: float = 0.9, hold: float = 300.0
) -> float | None:
    since = None
    for t, u in rows:
        if u >= frac * limit:
            since = t if since is None else since
            if t - since >= hold:
                return t
        else:
            since = None
    return None


def _fires(job: tuple[Path, str, dict[str, Any], float, bool]) -> dict[str, Any]:
    d, name, m, lead, baselines = job
    rows = read(d / name)
    limit = m["limit"]
    out: dict[str, Any] = {"name": name, "m": m, "peak": max(u for _, u in rows) / limit}
    out["sentinel"] = fire(rows, limit, lead)
    if m["leak"] and m["kind"].startswith("g_young"):
        out["sentinel_known_leaker"] = fire(rows, limit, lead, known_leaker=True)
    if baselines:
        out["predict_linear_1h_lead"] = predict_linear_fire(rows, limit, lead)
        out["predict_linear_1h_4h"] = predict_linear_fire(rows, limit, 4 * 3600.0)
        out["threshold_90pct_5m"] = threshold_fire(rows, limit)
    return out


def fire_all(d: Path, lead: float, baselines: bool = True) -> list[dict[str, Any]]:
    """Every method's firing time on every trace of ``d`` (two worker processes)."""
    manifest = json.loads((d / "manifest.json").read_text())
    jobs = [(d, name, m, lead, baselines) for name, m in manifest.items()]
    with ProcessPoolExecutor(min(2, os.cpu_count() or 1)) as ex:
        return list(ex.map(_fires, jobs, chunksize=4))


def score(fired: list[dict[str, Any]], method: str) -> dict[str, Any]:
    caught = nleak = false = nok = 0
    leads: list[float] = []
    young: list[float] = []
    per_kind: dict[str, list[int]] = {}
    bad: list[str] = []
    for r in fired:
        m = r["m"]
        f = r.get(method)
        k = per_kind.setdefault(m["kind"], [0, 0])
        k[1] += 1
        if m["leak"]:
            nleak += 1
            if f is not None and m["kill_t"] - f >= MIN_LEAD:
                caught += 1
                k[0] += 1
                leads.append(m["kill_t"] - f)
                if m["kind"].startswith("g_young"):
                    young.append(m["kill_t"] - f)
            else:
                got = "never" if f is None else f"{m['kill_t'] - f:.0f}s before"
                bad.append(f"MISS {r['name']} fired {got}")
        else:
            nok += 1
            if f is None:
                k[0] += 1
            else:
                false += 1
                bad.append(f"FALSE {r['name']} at t={f:.0f} (peak {r['peak']:.0%})")
    return {
        "method": method,
        "caught": caught,
        "leaks": nleak,
        "false_restarts": false,
        "healthy": nok,
        "median_lead_s": round(statistics.median(leads)) if leads else 0,
        "young_median_lead_s": round(statistics.median(young)) if young else None,
        "per_kind_ok": {k: f"{a}/{b}" for k, (a, b) in per_kind.items()},
        "bad": bad,
    }


def young_known(fired: list[dict[str, Any]]) -> tuple[int, int, float | None]:
    """Young leaks with the known-leaker hint: caught, of, median lead."""
    leads = []
    n = 0
    for r in fired:
        if "sentinel_known_leaker" not in r:
            continue
        n += 1
        f = r["sentinel_known_leaker"]
        if f is not None and r["m"]["kill_t"] - f >= MIN_LEAD:
            leads.append(r["m"]["kill_t"] - f)
    return len(leads), n, statistics.median(leads) if leads else None


def speed(dirs: list[Path]) -> tuple[int, float]:
    """Samples replayed through ``Forecaster.update`` and the seconds that took (one
    trace in memory at a time; reading the files is not timed)."""
    n = 0
    secs = 0.0
    for d in dirs:
        manifest = json.loads((d / "manifest.json").read_text())
        for name, m in manifest.items():
            rows = read(d / name)
            update = Forecaster(m["limit"]).update
            t0 = time.perf_counter()
            for t, u in rows:
                update(t, u)
            secs += time.perf_counter() - t0
            n += len(rows)
    return n, secs


def score_dir(d: Path, lead: float, verbose: bool) -> dict[str, object]:
    """sentinel's score on one folder (no baselines)."""
    s = score(fire_all(d, lead, baselines=False), "sentinel")
    if verbose:
        for b in s["bad"]:
            print("  " + b)
    del s["bad"]
    return {"set": d.name, **s}


def main(argv: list[str] | None = None, printer: Callable[[str], None] = print) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--lead", type=float, default=900.0)
    ap.add_argument("--verbose", "-v", action="store_true")
    a = ap.parse_args(argv)
    for d in a.dirs:
        printer(json.dumps(score_dir(d, a.lead, a.verbose)))


if __name__ == "__main__":
    main()
