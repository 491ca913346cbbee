"""``sentinel run`` as a real subprocess, for the daemon's end-to-end tests.

    with SentinelProcess.start(policy_text, tmp_path) as s:
        s.wait_ready()
        s.wait_for(lambda: s.notifications(kind="kill"), "a kill notification")
    # SIGTERM sent, exit code 0 checked

Its stdout (the ``log`` notifier: one JSON object per notification) and stderr (one JSON
log line per event) go to files in ``tmp_path``, read as they grow. It listens on
``127.0.0.1:0`` and the address it logs is read back, so parallel tests never race for a
port. :meth:`SentinelProcess.stop` sends SIGTERM and returns the exit code; the ``with``
block and :func:`stop_all` make sure no daemon outlives its test.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, AnyStr, Generic, TypeVar

from sentinel.store import Store

SENTINEL = Path(sys.executable).parent / "sentinel"
T = TypeVar("T")


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among ``text``'s lines (the effective policy is YAML: skipped)."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    out.append(value)
    return out


def wait_for(check: Callable[[], T], what: str, timeout: float = 60, every: float = 0.25) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


class Lines(Generic[AnyStr]):
    """The lines of a pipe, read by a thread, so that a read has a real deadline (a plain
    ``readline()`` blocks past any deadline while the writer says nothing)."""

    def __init__(self, stream: IO[AnyStr]) -> None:
        self._stream: IO[AnyStr] = stream
        self._lines: queue.Queue[AnyStr | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[AnyStr]) -> None:
        try:
            for line in stream:
                self._lines.put(line)
        except ValueError:  # closed under us: the end
            pass
        finally:
            self._lines.put(None)

    def close(self, timeout: float = 10) -> None:
        """After the writer exited: the reading thread ends at the end of the stream."""
        self._thread.join(timeout)
        self._stream.close()

    def next(self, timeout: float, what: str = "a line") -> AnyStr | None:
        """The next line (``None`` at the end of the stream); fails after ``timeout``."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}") from None


def kmsg_marker(text: str = "") -> int:
    """Write a line to the kernel log (needs root) and return its sequence number: a reader
    that has read past it has read everything the kernel logged before this call."""
    marker = f"sentinel-test marker {uuid.uuid4().hex} {text}".strip()
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.lseek(fd, 0, os.SEEK_END)  # only what is logged from now on
        with open("/dev/kmsg", "w") as w:
            w.write(marker + "\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                record = os.read(fd, 64 * 1024).decode("utf-8", "replace")
            except BlockingIOError:
                time.sleep(0.01)
                continue
            except BrokenPipeError:  # overwritten meanwhile: go on from the oldest held
                continue
            head, _, message = record.partition(";")
            if message.split("\n", 1)[0] == marker:
                return int(head.split(",")[1])
    finally:
        os.close(fd)
    raise AssertionError(f"the marker {marker!r} did not show up in /dev/kmsg")


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def kernel_kills(container_id: str | None = None, *, memcg: str | None = None) -> list[Any]:
    """Kill records in ``sentinel parse kmsg --format json`` naming ``container_id``, or
    whose victim's or OOM's memory cgroup is ``memcg``."""
    result = subprocess.run(
        [str(SENTINEL), "parse", "kmsg", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode in (0, 1), f"sentinel parse: exit {result.returncode}\n{result.stderr}"
    records = json_lines(result.stdout)
    if memcg is not None:
        return [r for r in records if memcg in (r.get("task_memcg"), r.get("oom_memcg"))]
    return [r for r in records if r.get("container_id") == container_id]


class SentinelProcess:
    """One ``sentinel run`` subprocess with its policy, state and output files."""

    def __init__(
        self, proc: subprocess.Popen[bytes], workdir: Path, state: Path, *, wrapped: bool = False
    ) -> None:
        self.proc = proc
        self.wrapped = wrapped
        """Started through a ``prefix`` that execs sentinel in a child (``unshare --fork``):
        signals go to that child."""
        self.workdir = workdir
        self.state = state
        self.stdout_path = workdir / f"stdout.{proc.pid}"
        self.stderr_path = workdir / f"stderr.{proc.pid}"
        self.exit_code: int | None = None

    @classmethod
    def start(
        cls,
        policy: str,
        workdir: Path,
        *,
        args: Sequence[str] = (),
        state: Path | None = None,
        prefix: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> SentinelProcess:
        """Write ``policy`` to ``workdir/policy.yaml`` and start ``sentinel run`` on it.

        ``prefix``: a command that runs sentinel (``unshare ...``); ``state`` defaults to
        ``workdir/state.db`` (pass the same one to start again on the same state).
        """
        workdir.mkdir(parents=True, exist_ok=True)
        policy_path = workdir / "policy.yaml"
        policy_path.write_text(policy)
        state = state or workdir / "state.db"
        argv = [
            *prefix,
            str(SENTINEL),
            "run",
            "-c",
            str(policy_path),
            "--state",
            str(state),
            "--listen",
            "127.0.0.1:0",
            *args,
        ]
        out = (workdir / "stdout.tmp").open("wb")
        err = (workdir / "stderr.tmp").open("wb")
        try:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        finally:
            out.close()
            err.close()
        (workdir / "stdout.tmp").rename(workdir / f"stdout.{proc.pid}")
        (workdir / "stderr.tmp").rename(workdir / f"stderr.{proc.pid}")
        return cls(proc, workdir, state, wrapped=bool(prefix))

    def __enter__(self) -> SentinelProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            code = self.stop()
            if exc[0] is None:
                assert code == 0, f"sentinel exited {code} on SIGTERM\n{self.stderr()[-3000:]}"

    # -- output ----------------------------------------------------------------------------

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def notifications(self, **match: Any) -> list[dict[str, Any]]:
        """Notifications (stdout) whose keys equal ``match`` (``target_id=`` matches
        ``target.id``)."""
        target_id = match.pop("target_id", None)
        out = []
        for n in json_lines(self.stdout()):
            if target_id is not None and (n.get("target") or {}).get("id") != target_id:
                continue
            if all(n.get(k) == v for k, v in match.items()):
                out.append(n)
        return out

    def logs(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """JSON log lines (stderr), by ``event`` and equal keys (``target_id=`` as above)."""
        target_id = match.pop("target_id", None)
        out = []
        for line in json_lines(self.stderr()):
            if event is not None and line.get("event") != event:
                continue
            if target_id is not None and (line.get("target") or {}).get("id") != target_id:
                continue
            if all(line.get(k) == v for k, v in match.items()):
                out.append(line)
        return out

    def events(self, since: str = "2h") -> list[dict[str, Any]]:
        """``sentinel events --format json`` on this daemon's state."""
        argv = ["events", "--state", str(self.state), "--since", since, "--format", "json"]
        result = subprocess.run(
            [str(SENTINEL), *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode in (0, 1), f"sentinel events: exit {result.returncode}\n{result}"
        return json_lines(result.stdout)

    def kmsg_position(self) -> int | None:
        """How far sentinel has read the kernel log (this boot), as its state says."""
        store = Store.open_read_only(self.state)
        try:
            return store.position("kmsg", boot_id())
        finally:
            store.close()

    def pending(self) -> int:
        """Notifications in the outbox not yet accepted by their receiver."""
        store = Store.open_read_only(self.state)
        try:
            return store.pending_count()
        finally:
            store.close()

    def ticks(self) -> float:
        return self.metric("sentinel_ticks_total") or 0.0

    def settle(self, ticks: int = 3, timeout: float = 60) -> None:
        """Until whatever sentinel would do about what happened before this call has been
        done: it has read the kernel log past a marker written now (every kill before it is
        stored and handed to the evaluator), ``ticks`` more sample ticks have run (each
        kicks an evaluation), and its outbox holds nothing unsent. Then "nothing else
        happened" is a fact, not a hope that a sleep was long enough."""
        mark = kmsg_marker()
        start = self.ticks()
        self.wait_for(
            lambda: (self.kmsg_position() or -1) >= mark, "sentinel to read past the marker"
        )
        self.wait_for(lambda: self.ticks() >= start + ticks, f"{ticks} more ticks", timeout)
        self.wait_for(lambda: self.pending() == 0, "an empty outbox", timeout)

    # -- HTTP ------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        found = self.logs("listening")
        assert found, f"sentinel has not said where it listens\n{self.stderr()[-3000:]}"
        return str(found[-1]["address"])

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.address}{path}", timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            body = e.read().decode()
            e.close()
            return int(e.code), body

    def metric(self, name: str, **labels: str) -> float | None:
        """A sample of ``/metrics`` (labels must all be present with these values)."""
        _, text = self.get("/metrics")
        for line in text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                return float(value)
        return None

    def wait_ready(self, timeout: float = 30) -> None:
        """Until ``/readyz`` answers 200 (the first tick is done)."""

        def ready() -> bool:
            self.assert_running()
            if not self.logs("listening"):
                return False
            return self.get("/readyz")[0] == 200

        wait_for(ready, "sentinel's /readyz", timeout)

    # -- lifecycle -------------------------------------------------------------------------

    def assert_running(self) -> None:
        code = self.proc.poll()
        assert code is None, f"sentinel exited {code}\n{self.stderr()[-5000:]}"

    def wait_for(self, check: Callable[[], T], what: str, timeout: float = 60) -> T:
        """:func:`wait_for`, failing at once (with sentinel's stderr) if sentinel exits."""

        def checked() -> T:
            self.assert_running()
            return check()

        return wait_for(checked, what, timeout)

    def _children(self) -> list[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig`` and wait for the exit; the exit code (SIGKILL if it hangs)."""
        if self.proc.poll() is None:
            if self.wrapped:
                for pid in self._children():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"sentinel did not stop within {timeout:g}s of {sig.name}\n"
                    f"{self.stderr()[-3000:]}"
                ) from None
        self.exit_code = self.proc.returncode
        return self.exit_code
