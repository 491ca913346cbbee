"""``run``: a hook, like earlyoom's pre/post-kill scripts.

The command runs without a shell, in a new session (its own process group), with stdin from
``/dev/null`` and sentinel's environment plus the target and the decision described in
``SENTINEL_*`` variables (:func:`environment`). sentinel's secrets are not in that
environment (:func:`sentinel.redact.hook_environment`: the variables its notifiers read,
``SLACK_*``, anything holding a token) unless the rule names them in ``pass_env``. Its output
is captured up to :data:`MAX_OUTPUT` characters per stream, with every secret sentinel knows
redacted (:func:`sentinel.redact.scrub`); on timeout its whole process group is killed
(SIGKILL). Not run at all in dry run.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sentinel import redact
from sentinel.actions._result import done, failed, would
from sentinel.model import ActionResult, Target

ACTION = "run"
MAX_OUTPUT = 8192
"""Characters of stdout and of stderr kept for the log and the state; the rest is counted."""
_MARGIN = 4096
"""Bytes read past :data:`MAX_OUTPUT` so that a secret across the cut is still redacted."""
REAP_S = 5.0
"""How long to wait for the killed process group's pipes to close and the hook to be
reaped after a timeout."""


def environment(
    target: Target,
    *,
    rule: str = "",
    action: str = ACTION,
    reason: str = "",
    evidence: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> dict[str, str]:
    """The ``SENTINEL_*`` variables a hook sees. Unknown values are empty strings, so every
    variable is always set."""
    evidence = dict(evidence or {})

    def text(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    eta = evidence.get("projected_oom_in_s")
    return {
        "SENTINEL_TARGET_ID": target.id,
        "SENTINEL_TARGET_NAME": target.name,
        "SENTINEL_TARGET_RUNTIME": target.runtime,
        "SENTINEL_TARGET_IMAGE": text(target.image),
        "SENTINEL_TARGET_PID": text(target.pid),
        "SENTINEL_TARGET_CGROUP": text(target.cgroup),
        "SENTINEL_TARGET_LABELS": json.dumps(dict(target.labels), sort_keys=True),
        "SENTINEL_RULE": rule,
        "SENTINEL_ACTION": action,
        "SENTINEL_REASON": reason,
        "SENTINEL_ETA_SECONDS": text(eta),
        "SENTINEL_USAGE_BYTES": text(evidence.get("usage_bytes")),
        "SENTINEL_LIMIT_BYTES": text(evidence.get("limit_bytes")),
        "SENTINEL_DRY_RUN": "1" if dry_run else "0",
        "SENTINEL_EVIDENCE": json.dumps(evidence, sort_keys=True, default=str),
    }


def run(
    target: Target,
    command: Sequence[str],
    timeout: float,
    *,
    dry_run: bool,
    rule: str = "",
    reason: str = "",
    evidence: Mapping[str, Any] | None = None,
    pass_env: Sequence[str] = (),
) -> ActionResult:
    """Run ``command`` for ``target``; ok when it exits 0 within ``timeout`` seconds.
    ``pass_env`` names variables of sentinel's environment to hand on even if secret."""
    env = environment(target, rule=rule, reason=reason, evidence=evidence, dry_run=dry_run)
    shown = [redact.scrub(arg) for arg in command]  # an argument may carry a URL's secret
    detail: dict[str, Any] = {"command": shown, "timeout_s": timeout}
    if pass_env:
        detail["pass_env"] = list(pass_env)
    if dry_run:
        return would(ACTION, target, {**detail, "env": env})
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**redact.hook_environment(os.environ, pass_env), **env},
            start_new_session=True,
        )
    except OSError as e:
        return failed(ACTION, target, f"cannot start {command[0]}: {e.strerror}", detail)
    with proc:
        out, timed_out = _collect(proc, t0 + timeout)
        code = proc.returncode
    detail.update(
        pid=proc.pid,
        exit_code=code,
        timed_out=timed_out,
        took_s=round(time.monotonic() - t0, 3),
    )
    for name, (kept, total) in out.items():
        detail[name] = redact.scrub(kept.decode("utf-8", "replace"))[:MAX_OUTPUT]
        detail[f"{name}_bytes"] = total
    if timed_out:
        error = f"timed out after {timeout:g}s: its process group was killed"
        return failed(ACTION, target, error, detail)
    if code != 0:
        how = f"killed by signal {-code}" if code < 0 else f"exited {code}"
        return failed(ACTION, target, f"{command[0]} {how}", detail)
    return done(ACTION, target, detail)


def _collect(
    proc: subprocess.Popen[bytes], deadline: float
) -> tuple[dict[str, tuple[bytes, int]], bool]:
    """Read both pipes until they close, keeping :data:`MAX_OUTPUT` bytes of each (and a
    margin), and reap the hook; past ``deadline`` kill its process group. Whether it timed out."""
    assert proc.stdout is not None
    assert proc.stderr is not None
    names = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    kept = {name: bytearray() for name in names.values()}
    totals = dict.fromkeys(names.values(), 0)
    timed_out = False
    with selectors.DefaultSelector() as sel:
        for fd in names:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if timed_out:
                    break  # something outside the group holds the pipes: stop reading
                timed_out = True
                _kill_group(proc)
                deadline = time.monotonic() + REAP_S
                continue
            for key, _ in sel.select(remaining):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fd)
                    continue
                name = names[key.fd]
                totals[name] += len(data)
                room = MAX_OUTPUT + _MARGIN - len(kept[name])
                if room > 0:
                    kept[name] += data[:room]
    try:
        proc.wait(timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        proc.wait(timeout=REAP_S)
    return {name: (bytes(kept[name]), totals[name]) for name in kept}, timed_out


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the hook's process group (its pgid is its pid: a new session)."""
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
        os.killpg(proc.pid, signal.SIGKILL)
