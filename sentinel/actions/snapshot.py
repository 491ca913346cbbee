"""``snapshot``: ask the allocation probe in the target (:mod:`sentinel.probe`) for a report
of its top growth sites, wait for it, and bring back a bounded summary.

The request goes two ways, whichever the target allows:

- a file ``request-ID`` in the probe's directory (the policy's ``dir``, or the
  ``SENTINEL_PROBE_DIR`` of the target's main process reached through ``/proc/PID/root``);
  the probe answers with ``report-ID.json`` there, whether or not a signal reaches it;
- ``SIGUSR2`` to the target's main process (through a pidfd, after the safety rail; a
  container through Docker's API only when sentinel cannot see its process and the container
  is labelled ``sentinel.probe``). It is sent only to a process seen to handle SIGUSR2: to
  one without the probe its default action would be to end it. With a directory the signal
  only wakes the probe at once (it looks for requests every second anyway).

Without a directory the report cannot be read back: the probe writes it to its own
directory or stderr, and the action says so. :func:`summarize` (pure) cuts a report down to
what a decision keeps and a message shows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sentinel.actions import signal as signal_action
from sentinel.actions._host import Host, pid_namespace
from sentinel.actions._result import DockerControl, done, failed, refused, would
from sentinel.errors import SentinelError
from sentinel.model import ActionResult, Target

ACTION = "snapshot"
SIGNAL = "SIGUSR2"
PROBE_DIR_ENV = "SENTINEL_PROBE_DIR"
PROBE_LABEL = "sentinel.probe"
"""A container label saying the app runs the probe: Docker's API may signal it."""
POLL_S = 0.1
REPORT_READ_LIMIT = 8 << 20
"""Bytes of a report read at most (a report of 10 sites is a few KiB)."""
SITES_KEPT = 10
FRAMES_KEPT = 8
TEXT_LIMIT = 300
SUMMARY_LIMIT = 24 << 10
"""Bytes of JSON a summary may take in the state and in a notification."""


def take(
    target: Target,
    *,
    timeout: float,
    directory: str | None,
    dry_run: bool,
    docker: DockerControl | None = None,
    host: Host | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ActionResult:
    """Ask the probe in ``target`` for a report and wait up to ``timeout`` seconds for it."""
    host = host or Host()
    detail: dict[str, Any] = {"timeout_s": timeout}
    if target.is_self:
        return refused(ACTION, target, "the target is sentinel itself", detail, dry_run=dry_run)
    pid = _main_pid(target, docker, detail)
    shared = _directory(target, directory, pid, host, detail)
    signal_ok, why_not = _may_signal(target, pid, host)
    detail["signal"] = signal_ok
    if not signal_ok:
        detail["no_signal"] = why_not
    if shared is None and not signal_ok:
        return failed(
            ACTION,
            target,
            f"no way to ask the probe: {detail.get('no_dir', 'no directory')}; {why_not}",
            detail,
            dry_run=dry_run,
        )
    if dry_run:
        return would(ACTION, target, detail)
    request_id = f"{int(time.time())}-{uuid.uuid4().hex[:12]}"
    if shared is not None:
        detail["request"] = request_id
        try:
            _write_request(shared, request_id)
        except OSError as e:
            detail["dir_error"] = f"cannot write a request in {shared}: {e.strerror}"
            shared = None
            if not signal_ok:
                return failed(ACTION, target, detail["dir_error"], detail)
    if signal_ok:
        sent = signal_action.send(target, SIGNAL, dry_run=False, docker=docker, host=host)
        detail["signalled"] = sent.ok
        if not sent.ok:
            detail["signal_error"] = sent.error
            if shared is None:
                return failed(ACTION, target, sent.error or "the signal failed", detail)
    if shared is None:
        detail["report"] = None
        detail["note"] = (
            "signalled; no shared directory to read the report from (the probe wrote it to "
            "its SENTINEL_PROBE_DIR, or its stderr)"
        )
        return done(ACTION, target, detail)
    started = time.monotonic()
    path = shared / f"report-{request_id}.json"
    while True:
        report = _read_report(path)
        if report is not None:
            break
        if time.monotonic() - started >= timeout:
            with contextlib.suppress(OSError):
                (shared / f"request-{request_id}").unlink()
            return failed(
                ACTION,
                target,
                f"no report from the probe within {timeout:g}s (is the app started with "
                "sentinel_probe, and is its SENTINEL_PROBE_DIR this directory?)",
                detail,
            )
        sleep(POLL_S)
    detail["waited_s"] = round(time.monotonic() - started, 3)
    with contextlib.suppress(OSError):
        path.unlink()
    if isinstance(report, str):
        return failed(ACTION, target, report, detail)
    detail["report"] = summarize(report)
    return done(ACTION, target, detail)


def _main_pid(target: Target, docker: DockerControl | None, detail: dict[str, Any]) -> int | None:
    pid = target.pid if target.pid is not None and target.pid > 0 else None
    if target.runtime == "docker" and docker is not None:
        with contextlib.suppress(SentinelError):
            info = docker.inspect(target.id)
            pid = info.pid or None
    if pid is not None:
        detail["pid"] = pid
    return pid


def _sees_host_pids(host: Host) -> bool:
    return pid_namespace(host, host.self_pid) == host.host_pid_ns


def _directory(
    target: Target, given: str | None, pid: int | None, host: Host, detail: dict[str, Any]
) -> Path | None:
    """The probe's directory as sentinel sees it, or ``None`` (``detail`` says why)."""
    if given is not None:
        path = Path(given.replace("{name}", _safe(target.name)).replace("{id}", _safe(target.id)))
        detail["dir"] = str(path)
        return path
    if pid is None:
        detail["no_dir"] = "no `dir` given and the target's process is not known"
        return None
    if target.runtime == "docker" and not _sees_host_pids(host):
        detail["no_dir"] = "no `dir` given and sentinel cannot see the container's process"
        return None
    try:
        environ = (host.proc / str(pid) / "environ").read_bytes()
    except OSError as e:
        detail["no_dir"] = f"no `dir` given and /proc/{pid}/environ: {e.strerror}"
        return None
    found = parse_probe_dir(environ)
    if found is None:
        detail["no_dir"] = f"no `dir` given and process {pid} has no {PROBE_DIR_ENV}"
        return None
    path = host.proc / str(pid) / "root" / found.lstrip("/")
    detail["dir"] = str(path)
    return path


def parse_probe_dir(environ: bytes) -> str | None:
    """``SENTINEL_PROBE_DIR`` from the bytes of ``/proc/PID/environ`` (absolute paths only)."""
    for entry in environ.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key.decode(errors="replace") == PROBE_DIR_ENV:
            text = value.decode(errors="replace").strip()
            return text if text.startswith("/") else None
    return None


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:100] or "_"


def _may_signal(target: Target, pid: int | None, host: Host) -> tuple[bool, str]:
    """May SIGUSR2 be sent: only to a process that handles it (its default ends a process)."""
    if pid is None:
        return False, "the target's main process is not known"
    if target.runtime == "docker" and not _sees_host_pids(host):
        if PROBE_LABEL in target.labels:
            return True, ""
        return False, (
            f"sentinel cannot see whether the container handles {SIGNAL} (label it "
            f"{PROBE_LABEL}=true to have Docker deliver it)"
        )
    try:
        status = host.reader().status(pid)
    except SentinelError as e:
        return False, f"cannot read process {pid}: {e}"
    if not status.catches(signal.SIGUSR2):
        return False, f"process {pid} does not handle {SIGNAL} (no probe): not signalled"
    return True, ""


def _write_request(directory: Path, request_id: str) -> None:
    """``request-ID``, whole (written aside, then renamed)."""
    tmp = directory / f".request-{request_id}.tmp"
    tmp.write_text(json.dumps({"id": request_id, "at": time.time()}) + "\n")
    os.replace(tmp, directory / f"request-{request_id}")


def _read_report(path: Path) -> dict[str, Any] | str | None:
    """The report, ``None`` while it is not there, or why it cannot be used."""
    try:
        with path.open("rb") as f:
            data = f.read(REPORT_READ_LIMIT + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot read the probe's report {path.name}: {e.strerror}"
    if len(data) > REPORT_READ_LIMIT:
        return f"the probe's report {path.name} is larger than {REPORT_READ_LIMIT >> 20} MiB"
    try:
        report = json.loads(data)
    except ValueError as e:
        return f"the probe's report {path.name} is not JSON ({e})"
    if not isinstance(report, dict) or not isinstance(report.get("sites"), list):
        return f"the probe's report {path.name} is not a report of sentinel_probe"
    return report


# --- the summary kept and shown (pure) ----------------------------------------------------


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:TEXT_LIMIT]


def _path(value: Any) -> str | None:
    """A source path: a long one keeps its end, where the file's name is."""
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= TEXT_LIMIT else "…" + text[-(TEXT_LIMIT - 1) :]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _frame(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping):
        return None
    return {
        "file": _path(value.get("file")),
        "line": _int(value.get("line")),
        "code": _text(value.get("code")),
    }


def summarize(report: Mapping[str, Any], *, sites: int = SITES_KEPT) -> dict[str, Any]:
    """What a decision keeps and a message shows of a probe report, with known keys and
    types only, text cut to :data:`TEXT_LIMIT` and the whole under :data:`SUMMARY_LIMIT`
    bytes of JSON (tracebacks are dropped first, then sites)."""
    kept: list[dict[str, Any]] = []
    for site in report.get("sites") or []:
        if not isinstance(site, Mapping) or len(kept) >= sites:
            continue
        frames = [f for f in (_frame(x) for x in site.get("traceback") or []) if f is not None]
        kept.append(
            {
                "file": _path(site.get("file")),
                "line": _int(site.get("line")),
                "code": _text(site.get("code")),
                "size_bytes": _int(site.get("size_bytes")),
                "growth_bytes": _int(site.get("growth_bytes")),
                "growth_count": _int(site.get("growth_count")),
                "growth_per_hour_bytes": _int(site.get("growth_per_hour_bytes")),
                "since_previous_bytes": _int(site.get("since_previous_bytes")),
                "steady": site.get("steady") is True,
                "points": _int(site.get("points")),
                "traceback": frames[-FRAMES_KEPT:],
            }
        )
    totals, overhead, baseline = (
        _mapping(report.get(k)) for k in ("totals", "overhead", "baseline")
    )
    out: dict[str, Any] = {
        "pid": _int(report.get("pid")),
        "at": _number(report.get("at")),
        "baseline_at": _number(baseline.get("at")),
        "baseline": _text(baseline.get("kind")),
        "frames": _int(report.get("frames")),
        "reports": _int(report.get("reports")),
        "totals": {
            k: _int(totals.get(k))
            for k in (
                "traced_bytes",
                "growth_bytes",
                "growth_per_hour_bytes",
                "since_previous_bytes",
            )
        },
        "overhead": {
            "tracemalloc_bytes": _int(overhead.get("tracemalloc_bytes")),
            "report_s": _number(overhead.get("report_s")),
            "cpu_s": _number(overhead.get("cpu_s")),
        },
        "sites": kept,
        "steady": [f"{s['file']}:{s['line']}" for s in kept if s["steady"]],
    }
    if len(json.dumps(out)) > SUMMARY_LIMIT:
        for s in out["sites"]:
            s["traceback"] = []
    while len(json.dumps(out)) > SUMMARY_LIMIT and out["sites"]:
        out["sites"].pop()
        out["steady"] = [f"{s['file']}:{s['line']}" for s in out["sites"] if s["steady"]]
    return out
