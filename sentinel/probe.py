"""sentinel's allocation probe: which lines of a Python service hold the memory it gained.

This one file imports nothing but the standard library, so it runs in an app's image
without sentinel or its dependencies: ``sentinel probe export DIR`` writes it as
``DIR/sentinel_probe.py``. Enable it with one line::

    import sentinel_probe; sentinel_probe.start()

or with no change to the code, through the runner (the script runs as ``__main__``)::

    python -m sentinel_probe -- app.py ARGS...       # the exported copy
    python -m sentinel.probe -- app.py ARGS...       # where sentinel is installed
    python -m sentinel_probe -- -m package.main ARGS...

It starts :mod:`tracemalloc`, takes a *baseline* after a warm-up, and writes a JSON
*report* when asked: on ``SIGUSR2`` (its handler only wakes the probe's thread, and calls
a handler the app installed before it), or when a file ``request-ID`` appears in its
directory; it answers the request with ``report-ID.json`` (written whole, then renamed).
A report lists the allocation sites (``file:line``) that grew most since the baseline,
with their growth since the previous report, their allocation traceback, and whether they
grew at every report and checkpoint so far (``steady``: a leak grows steadily; a cache
or a burst does not); the totals; and the probe's own cost.

Settings, from the environment (read by :func:`start` without arguments):

- ``SENTINEL_PROBE_DIR``: the directory for requests and reports (shared with sentinel: a
  volume). Without it the probe answers only ``SIGUSR2``, with the report on stderr.
- ``SENTINEL_PROBE_FRAMES``: frames kept per allocation (default 1: the cost figures are in
  sentinel's README, ``bench/probe_overhead``); more frames show who called the line.
- ``SENTINEL_PROBE_WARMUP``: seconds (or ``30s``, ``5m``) before the baseline is taken,
  so start-up allocations do not count as growth (default 30 s). A report asked for
  earlier compares with the start of tracing and becomes the baseline.
- ``SENTINEL_PROBE_INTERVAL``: a quiet checkpoint (no report) this often, so that the
  trend has points between reports (default 10 minutes; ``0``: none).
- ``SENTINEL_PROBE_TOP``: sites per report (default 10).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import linecache
import os
import re
import runpy
import select
import signal
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

ENV_DIR = "SENTINEL_PROBE_DIR"
ENV_FRAMES = "SENTINEL_PROBE_FRAMES"
ENV_WARMUP = "SENTINEL_PROBE_WARMUP"
ENV_INTERVAL = "SENTINEL_PROBE_INTERVAL"
ENV_TOP = "SENTINEL_PROBE_TOP"
DEFAULT_FRAMES = 1
"""One frame: the site itself. ``bench/probe_overhead`` measures the cost (README)."""
DEFAULT_WARMUP_S = 30.0
DEFAULT_INTERVAL_S = 600.0
DEFAULT_TOP = 10
POLL_S = 1.0
"""How often the directory is looked at for requests (a signal wakes the probe at once)."""
TRACKED = 64
"""Sites whose size is followed from report to report (the trend): the ones that grew most."""
POINTS = 48
"""Sizes kept per followed site: the trend covers the last this many reports and checkpoints."""
FRAMES_SHOWN = 10
CODE_LIMIT = 200
REPORT_KEEP_S = 86400.0
"""Reports nobody took away are removed after a day."""
REPORT_VERSION = 1
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_REGISTRY = "_sentinel_probe"
"""Attribute of :mod:`sys` holding the running probe: one per process, whichever copy of
this module (``sentinel.probe``, ``sentinel_probe``, ``__main__``) started it."""

Site = tuple[str, int]


def _seconds(text: str) -> float:
    """``30``, ``30s``, ``5m``, ``1h`` -> seconds."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*", text)
    if m is None:
        raise ValueError(f"expected seconds such as 30, 30s, 5m or 1h; found {text!r}")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2) or "s"]
    return float(m.group(1)) * scale


def _say(text: str) -> None:
    """One line on stderr (the app's): the probe never raises into the app."""
    try:
        sys.stderr.write(f"sentinel_probe: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def _env(name: str, parse: Callable[[str], Any], default: Any, env: dict[str, str]) -> Any:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return parse(text)
    except ValueError as e:
        _say(f"{name}: {e}; using {default}")
        return default


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"expected a whole number of at least 1; found {text!r}")
    return value


class Probe:
    """The probe of this process: tracemalloc, the baseline, the trend, the reports.

    Its thread does all the work; the signal handler only writes a byte to a pipe.
    ``clock`` is wall-clock seconds (reports carry it)."""

    def __init__(
        self,
        directory: str | None = None,
        *,
        frames: int = DEFAULT_FRAMES,
        warmup: float = DEFAULT_WARMUP_S,
        interval: float = DEFAULT_INTERVAL_S,
        top: int = DEFAULT_TOP,
        poll: float = POLL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.frames = frames
        self.warmup = warmup
        self.interval = interval
        self.top = top
        self.poll = poll
        self.clock = clock
        self.started_at = 0.0
        self.baseline: dict[Site, tuple[int, int]] | None = None
        self.baseline_at = 0.0
        self.baseline_kind = "start"
        self.previous: dict[Site, tuple[int, int]] | None = None
        self.previous_at: float | None = None
        self.trend: dict[Site, list[tuple[float, int]]] = {}
        self.reports = 0
        self.checkpoints = 0
        self.busy_s = 0.0
        self.cpu_s = 0.0
        self.signal_installed = False
        self._previous_handler: Any = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self._signal_seq = 0
        self._last_checkpoint = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Probe:
        if not tracemalloc.is_tracing():
            tracemalloc.start(self.frames)
        self.frames = tracemalloc.get_traceback_limit()
        self.started_at = self.clock()
        self._last_checkpoint = self.started_at
        if self.directory:
            try:
                os.makedirs(self.directory, exist_ok=True)
            except OSError as e:
                _say(f"cannot make {self.directory} ({e.strerror}): requests are not answered")
        self._install_signal()
        self._thread = threading.Thread(target=self._run, name="sentinel-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.signal_installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR2, self._previous_handler or signal.SIG_DFL)
            self.signal_installed = False

    def _install_signal(self) -> None:
        """Handle SIGUSR2, keeping the app's own handler (it is called too). Only the main
        thread may install handlers: from another thread the probe answers requests only."""
        if threading.current_thread() is not threading.main_thread():
            _say("started outside the main thread: SIGUSR2 is not handled (requests are)")
            return
        self._previous_handler = signal.getsignal(signal.SIGUSR2)
        signal.signal(signal.SIGUSR2, self._on_signal)
        self.signal_installed = True

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._wake()
        previous = self._previous_handler
        if callable(previous):
            previous(signum, frame)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a full pipe: the thread is awake already
            os.write(self._wake_w, b"!")

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            signalled = self._sleep()
            if self._stop.is_set():
                return
            try:
                self._round(signalled)
            except Exception as e:  # the app goes on whatever happens here
                _say(f"report failed: {type(e).__name__}: {e}")

    def _sleep(self) -> bool:
        """Until the next poll, a due baseline or checkpoint, or a signal: was it a signal?"""
        now = self.clock()
        due = [now + self.poll] if self.directory else [now + 3600.0]
        if self.baseline is None:
            due.append(self.started_at + self.warmup)
        elif self.interval > 0:
            due.append(self._last_checkpoint + self.interval)
        timeout = max(0.0, min(due) - now)
        ready, _, _ = select.select([self._wake_r], [], [], timeout)
        if not ready:
            return False
        with contextlib.suppress(OSError):
            os.read(self._wake_r, 4096)
        return not self._stop.is_set()

    def _round(self, signalled: bool) -> None:
        now = self.clock()
        if self.baseline is None and now >= self.started_at + self.warmup:
            self._timed(lambda: self._take_baseline("warmup"))
        answered = 0
        for request_id in self._requests():
            self._timed(functools.partial(self._answer, request_id))
            answered += 1
        if signalled and not answered:
            self._timed(self._answer_signal)
        elif (
            self.baseline is not None
            and self.interval > 0
            and self.clock() >= self._last_checkpoint + self.interval
        ):
            self._timed(self._checkpoint)

    def _timed(self, fn: Callable[[], None]) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            fn()
        finally:
            self.busy_s += time.perf_counter() - wall
            self.cpu_s += time.thread_time() - cpu

    # -- snapshots ------------------------------------------------------------------------

    def _sizes(self) -> tuple[dict[Site, tuple[int, int]], tracemalloc.Snapshot]:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            (
                tracemalloc.Filter(False, __file__),
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, linecache.__file__),
                tracemalloc.Filter(False, "<unknown>"),
            )
        )
        sizes: dict[Site, tuple[int, int]] = {}
        for stat in snapshot.statistics("lineno"):
            frame = stat.traceback[0]
            sizes[(frame.filename, frame.lineno)] = (stat.size, stat.count)
        return sizes, snapshot

    def _take_baseline(self, kind: str) -> None:
        sizes, _ = self._sizes()
        self._set_baseline(sizes, self.clock(), kind)

    def _set_baseline(self, sizes: dict[Site, tuple[int, int]], at: float, kind: str) -> None:
        self.baseline, self.baseline_at, self.baseline_kind = sizes, at, kind
        self.previous, self.previous_at = None, None
        self.trend = {}
        self._last_checkpoint = at

    def _follow(self, sizes: dict[Site, tuple[int, int]], at: float) -> None:
        """Add a point to the trend of the sites that grew most since the baseline."""
        base = self.baseline or {}
        growth = sorted(
            ((sizes[s][0] - base.get(s, (0, 0))[0], s) for s in sizes),
            reverse=True,
        )[:TRACKED]
        trend: dict[Site, list[tuple[float, int]]] = {}
        for _, site in growth:
            points = self.trend.get(site) or [(self.baseline_at, base.get(site, (0, 0))[0])]
            trend[site] = [*points, (at, sizes[site][0])][-POINTS:]
        self.trend = trend

    def _checkpoint(self) -> None:
        sizes, _ = self._sizes()
        at = self.clock()
        self._follow(sizes, at)
        self.checkpoints += 1
        self._last_checkpoint = at

    # -- reports --------------------------------------------------------------------------

    def report(self, request_id: str | None = None, trigger: str = "request") -> dict[str, Any]:
        """Take a snapshot and build the report (it also moves the trend on)."""
        cpu = time.thread_time()
        wall = time.perf_counter()
        sizes, snapshot = self._sizes()
        at = self.clock()
        if self.baseline is None:
            # Asked before the warm-up ended: compare with the start of tracing (everything
            # traced was allocated since), and make this the baseline for what follows.
            self._set_baseline({}, self.started_at, "start")
            early = True
        else:
            early = False
        base = self.baseline or {}
        previous = self.previous
        self._follow(sizes, at)
        span = max(at - self.baseline_at, 1e-9)
        rows = []
        for site in sizes.keys() | base.keys():
            size, count = sizes.get(site, (0, 0))
            b_size, b_count = base.get(site, (0, 0))
            rows.append((size - b_size, count - b_count, size, count, site))
        rows.sort(key=lambda r: (-r[0], r[4]))
        tracebacks = self._tracebacks(snapshot, {r[4] for r in rows[: self.top]})
        sites = []
        for growth, growth_count, size, count, site in rows[: self.top]:
            if growth <= 0:
                break
            points = self.trend.get(site, [])
            steady = len(points) >= 3 and all(b[1] > a[1] for a, b in itertools.pairwise(points))
            p_size, p_count = (previous or {}).get(site, (0, 0))
            sites.append(
                {
                    "file": site[0],
                    "line": site[1],
                    "code": _code(site),
                    "size_bytes": size,
                    "count": count,
                    "growth_bytes": growth,
                    "growth_count": growth_count,
                    "growth_per_hour_bytes": round(growth / span * 3600.0),
                    "since_previous_bytes": size - p_size if previous is not None else None,
                    "since_previous_count": count - p_count if previous is not None else None,
                    "steady": steady,
                    "points": len(points) - 1,
                    "traceback": tracebacks.get(site) or [_frame(site)],
                }
            )
        traced, peak = tracemalloc.get_traced_memory()
        baseline = {"at": self.baseline_at, "kind": self.baseline_kind}
        previous_at = self.previous_at
        total = sum(s for s, _ in sizes.values())
        base_total = sum(s for s, _ in base.values())
        prev_total = sum(s for s, _ in previous.values()) if previous is not None else None
        self.reports += 1
        self.previous, self.previous_at = sizes, at
        if early:
            self._set_baseline(sizes, at, "request")
            self.previous, self.previous_at = sizes, at
        self._last_checkpoint = at
        took = time.perf_counter() - wall
        return {
            "version": REPORT_VERSION,
            "probe": "sentinel_probe",
            "request": request_id,
            "trigger": trigger,
            "pid": os.getpid(),
            "argv": [str(a)[:CODE_LIMIT] for a in sys.argv[:8]],
            "at": at,
            "started_at": self.started_at,
            "baseline": baseline,
            "previous_at": previous_at,
            "frames": self.frames,
            "totals": {
                "traced_bytes": traced,
                "traced_peak_bytes": peak,
                "sites_bytes": total,
                "growth_bytes": total - base_total,
                "growth_per_hour_bytes": round((total - base_total) / span * 3600.0),
                "since_previous_bytes": total - prev_total if prev_total is not None else None,
            },
            "sites": sites,
            "steady": [f"{s['file']}:{s['line']}" for s in sites if s["steady"]],
            "reports": self.reports,
            "checkpoints": self.checkpoints,
            "overhead": {
                "tracemalloc_bytes": tracemalloc.get_tracemalloc_memory(),
                "report_s": round(took, 4),
                "report_cpu_s": round(time.thread_time() - cpu, 4),
                "busy_s": round(self.busy_s + took, 4),
                "cpu_s": round(self.cpu_s + time.thread_time() - cpu, 4),
            },
        }

    def _tracebacks(
        self, snapshot: tracemalloc.Snapshot, sites: set[Site]
    ) -> dict[Site, list[dict[str, Any]]]:
        """For each site: the traceback that allocated most of what it holds now."""
        if self.frames <= 1 or not sites:
            return {}
        best: dict[Site, tuple[int, list[dict[str, Any]]]] = {}
        for stat in snapshot.statistics("traceback"):
            last = stat.traceback[-1]
            site = (last.filename, last.lineno)
            if site in sites and stat.size > best.get(site, (-1, []))[0]:
                frames = list(stat.traceback)[-FRAMES_SHOWN:]
                best[site] = (stat.size, [_frame((f.filename, f.lineno)) for f in frames])
        return {site: frames for site, (_, frames) in best.items()}

    def _requests(self) -> list[str]:
        if not self.directory:
            return []
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        out = []
        for name in sorted(names):
            if name.startswith("request-") and REQUEST_ID.match(name[len("request-") :]):
                out.append(name[len("request-") :])
        return out

    def _answer(self, request_id: str) -> None:
        assert self.directory is not None
        report = self.report(request_id, "request")
        self._write(f"report-{request_id}.json", report)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.directory, f"request-{request_id}"))
        self._prune()

    def _answer_signal(self) -> None:
        self._signal_seq += 1
        report = self.report(None, "signal")
        if self.directory:
            name = f"report-signal-{os.getpid()}-{int(report['at'])}-{self._signal_seq}.json"
            self._write(name, report)
        else:
            _say("report " + json.dumps(report, separators=(",", ":")))

    def _write(self, name: str, report: dict[str, Any]) -> None:
        """Whole or not at all: a reader never sees half a report."""
        assert self.directory is not None
        path = os.path.join(self.directory, name)
        tmp = os.path.join(self.directory, f".{name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(report, f, separators=(",", ":"))
        os.replace(tmp, path)

    def _prune(self) -> None:
        assert self.directory is not None
        cutoff = time.time() - REPORT_KEEP_S
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            if name.startswith("report-") and name.endswith(".json"):
                path = os.path.join(self.directory, name)
                try:
                    if os.stat(path).st_mtime < cutoff:
                        os.unlink(path)
                except OSError:
                    pass


def _code(site: Site) -> str:
    return linecache.getline(site[0], site[1]).strip()[:CODE_LIMIT]


def _frame(site: Site) -> dict[str, Any]:
    return {"file": site[0], "line": site[1], "code": _code(site)}


def running() -> Any:
    """The probe of this process (``None`` before :func:`start`), whichever copy of this
    module started it."""
    return getattr(sys, _REGISTRY, None)


def start(
    directory: str | None = None,
    *,
    frames: int | None = None,
    warmup: float | None = None,
    interval: float | None = None,
    top: int | None = None,
    env: dict[str, str] | None = None,
) -> Any:
    """Start the probe of this process (once: a second call returns the first probe).
    Arguments left out are read from the environment (``SENTINEL_PROBE_*``)."""
    existing = getattr(sys, _REGISTRY, None)
    if existing is not None:
        return existing
    env = dict(os.environ if env is None else env)
    probe = Probe(
        directory if directory is not None else (env.get(ENV_DIR, "").strip() or None),
        frames=frames
        if frames is not None
        else _env(ENV_FRAMES, _positive_int, DEFAULT_FRAMES, env),
        warmup=warmup if warmup is not None else _env(ENV_WARMUP, _seconds, DEFAULT_WARMUP_S, env),
        interval=(
            interval
            if interval is not None
            else _env(ENV_INTERVAL, _seconds, DEFAULT_INTERVAL_S, env)
        ),
        top=top if top is not None else _env(ENV_TOP, _positive_int, DEFAULT_TOP, env),
    )
    setattr(sys, _REGISTRY, probe)
    return probe.start()


USAGE = "usage: python -m sentinel_probe [--] SCRIPT [ARGS...] | -m MODULE [ARGS...]"


def main(argv: Sequence[str] | None = None) -> int:
    """The runner: start the probe, then run the app's script (or module) as ``__main__``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
        return 0 if args else 2
    start()
    if args[0] == "-m":
        if len(args) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = [args[1], *args[2:]]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return 0
    script = args[0]
    if not os.path.exists(script):
        print(f"sentinel_probe: {script}: no such file", file=sys.stderr)
        return 2
    sys.argv = [script, *args[1:]]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(os.path.abspath(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
