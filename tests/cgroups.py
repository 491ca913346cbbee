"""Real memory cgroups for tests: create, limit, fill with processes, and always remove.

Every cgroup is made below the memory cgroup this process runs in (read from
``/proc/self/cgroup``), never elsewhere, and always with a memory limit: nothing a test
starts can allocate outside a limited cgroup. Processes join their cgroup *before* they
exec (``sh -c 'echo $$ > cgroup.procs; exec ...'``), so not one page is charged outside.

    with temporary(limit_bytes=256 * MIB) as cg:
        proc = allocate(cg, mib=64)         # returns once the memory is touched
        ...                                 # sample cg.path
    # processes killed, cgroups removed

Works with cgroup v1 (memory controller at /sys/fs/cgroup/memory) and v2. On v2 the
"no internal processes" rule applies: the memory controller can only be enabled for
children of a cgroup that has no processes of its own, so this process must not sit in
the cgroup it creates children under (:func:`create` says so when it does).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path("/sys/fs/cgroup")
MIB = 1 << 20
PREFIX = "sentinel-test-"
_counter = itertools.count()

ALLOCATOR = r"""
import sys
n = int(sys.argv[1]) << 20
step = int(sys.argv[2]) << 20 if len(sys.argv) > 2 else 0
pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
chunks = [b"\x01" * n]  # bytes * n writes every page: all of it is charged
print("ready", flush=True)
if step:
    import time
    while True:
        time.sleep(pause)
        chunks.append(b"\x01" * step)
sys.stdin.read()
"""


def version() -> str:
    """``"v2"`` when the unified hierarchy is mounted at /sys/fs/cgroup, else ``"v1"``."""
    return "v2" if (ROOT / "cgroup.controllers").exists() else "v1"


def memory_root() -> Path:
    return ROOT if version() == "v2" else ROOT / "memory"


def own_path() -> str:
    """This process's memory cgroup, as /proc/self/cgroup shows it."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    for line in lines:
        hid, controllers, path = line.split(":", 2)
        if version() == "v1" and "memory" in controllers.split(","):
            return path
        if version() == "v2" and hid == "0":
            return path
    raise RuntimeError("no memory cgroup in /proc/self/cgroup")


@dataclass
class Cgroup:
    """A memory cgroup this test made (``path`` as in /proc/PID/cgroup)."""

    path: str
    dir: Path
    children: list[Cgroup] = field(default_factory=list)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def limit_file(self) -> Path:
        return self.dir / ("memory.max" if version() == "v2" else "memory.limit_in_bytes")

    def set_limit(self, limit_bytes: int) -> None:
        if version() == "v1" and (self.dir / "memory.memsw.limit_in_bytes").exists():
            # No swap: the limit must bite on memory, not move pages out.
            with contextlib.suppress(OSError):
                (self.dir / "memory.swappiness").write_text("0")
        self.limit_file.write_text(str(limit_bytes))
        if version() == "v2":
            (self.dir / "memory.swap.max").write_text("0")

    def pids(self) -> list[int]:
        text = (self.dir / "cgroup.procs").read_text()
        return [int(p) for p in text.split()]

    def add(self, pid: int) -> None:
        (self.dir / "cgroup.procs").write_text(str(pid))

    def child(self, name: str | None = None, *, limit_bytes: int) -> Cgroup:
        """A cgroup below this one (removed with it)."""
        cg = create(name, limit_bytes=limit_bytes, parent=self)
        self.children.append(cg)
        return cg

    def spawn(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``argv`` inside this cgroup: it joins before it execs."""
        procs = str(self.dir / "cgroup.procs")
        wrapper = ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv]
        proc: subprocess.Popen[str] = subprocess.Popen(wrapper, text=True, **kwargs)
        self.procs.append(proc)
        return proc

    def kill(self) -> None:
        """SIGKILL everything in this cgroup and its children, and wait until it is empty."""
        for child in self.children:
            child.kill()
        deadline = time.monotonic() + 10
        while self.dir.exists() and (pids := self.pids()):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {pids} will not leave {self.dir}")
            time.sleep(0.01)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

    def remove(self) -> None:
        """Kill the processes, then remove the cgroup and its children (idempotent)."""
        self.kill()
        for child in self.children:
            child.remove()
        deadline = time.monotonic() + 10
        while self.dir.exists():
            try:
                self.dir.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)  # the last task's exit is still being accounted


def own() -> Cgroup:
    """The cgroup this process runs in (not to be removed)."""
    path = own_path()
    return Cgroup(path=path, dir=memory_root() / path.strip("/"))


def unique_name(prefix: str = PREFIX) -> str:
    return f"{prefix}{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"


def create(name: str | None = None, *, limit_bytes: int, parent: Cgroup | None = None) -> Cgroup:
    """A new memory cgroup with a limit, below ``parent`` (default: this process's cgroup)."""
    if not 0 < limit_bytes < 1 << 40:
        raise ValueError(f"test cgroups need a real memory limit, got {limit_bytes}")
    parent = parent or own()
    name = name or unique_name()
    if version() == "v2":
        control = parent.dir / "cgroup.subtree_control"
        if "memory" not in control.read_text().split():
            try:
                control.write_text("+memory")
            except OSError as e:
                raise RuntimeError(
                    f"cannot enable the memory controller below {parent.dir} ({e.strerror}):"
                    " on cgroup v2 the parent must have no processes of its own"
                ) from e
    cg = Cgroup(path=f"{parent.path.rstrip('/')}/{name}", dir=parent.dir / name)
    cg.dir.mkdir()
    try:
        cg.set_limit(limit_bytes)
    except BaseException:
        cg.dir.rmdir()
        raise
    return cg


@contextlib.contextmanager
def temporary(
    *, limit_bytes: int, name: str | None = None, parent: Cgroup | None = None
) -> Iterator[Cgroup]:
    """A cgroup that exists for the ``with`` block; its processes die when it ends."""
    cg = create(name, limit_bytes=limit_bytes, parent=parent)
    try:
        yield cg
    finally:
        cg.remove()


def allocate(
    cg: Cgroup, mib: int, *, grow_mib: int = 0, every: float = 0.0, ready_within: float = 60.0
) -> subprocess.Popen[str]:
    """A Python process in ``cg`` holding ``mib`` MiB of touched memory.

    Returns once the memory is allocated. With ``grow_mib``, it then allocates that much
    more every ``every`` seconds (a leak) until the cgroup's limit kills it.
    """
    argv = [sys.executable, "-S", "-c", ALLOCATOR, str(mib), str(grow_mib), str(every)]
    proc = cg.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    # A thread reads the line, so the deadline holds even when the allocator hangs silent.
    ready = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="allocate")
    line = ready.submit(proc.stdout.readline)
    try:
        said = line.result(timeout=ready_within).strip()
    except concurrent.futures.TimeoutError:
        said = f"nothing within {ready_within:g}s"
    if said != "ready":
        proc.kill()  # ends the read too
        proc.wait()
        ready.shutdown()
        raise RuntimeError(
            f"allocator in {cg.path} did not start ({said!r}, exit {proc.returncode})"
        )
    ready.shutdown()
    return proc


def leftovers(prefix: str | None = None) -> list[Path]:
    """Cgroups this process made that still exist (should be none); ``prefix`` to widen."""
    prefix = prefix or f"{PREFIX}{os.getpid()}-"
    return sorted(p for p in own().dir.rglob(f"{prefix}*") if p.is_dir())
