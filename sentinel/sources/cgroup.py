"""Memory cgroups, v1 and v2: usage, working set, limits, OOM counts and pressure.

Two halves, as for every source:

* pure functions: ``parse_*`` for each file format, and :func:`v1_sample` /
  :func:`v2_sample`, which turn the raw bytes of one cgroup's files into a
  :class:`~sentinel.model.MemorySample`;
* thin readers: :class:`CgroupFS` finds the memory hierarchy under an injectable root
  (``/sys/fs/cgroup``: v1, v2 or hybrid) and opens a :class:`CgroupHandle` per cgroup;
  :class:`CgroupSet` samples many cgroups per tick, reading shared parents once.

The hot path is :meth:`CgroupHandle.sample`. A handle keeps its files open and re-reads
them with ``pread(fd, n, 0)``: the kernel regenerates a cgroup file at each read from
offset 0, so a sample costs one system call per file and no path lookups. Of
``memory.stat`` only the few keys needed are looked up, without splitting the text.

Files read per sample:

=================  ==========================  ===============================
figure             v1 (``memory/<cgroup>/``)   v2 (``<cgroup>/``)
=================  ==========================  ===============================
usage              ``memory.usage_in_bytes``   ``memory.current``
own limit          ``memory.limit_in_bytes``   ``memory.max``
working set etc.   ``memory.stat`` (total_*)   ``memory.stat``
limit hits         ``memory.failcnt``          ``memory.events`` ``max``
OOM counts         ``memory.oom_control``      ``memory.events`` ``oom``, ``oom_kill``
effective limit    ancestors' limit files      ancestors' ``memory.max``
pressure           hybrid: ``unified/<cgroup>/memory.pressure``; v2: ``memory.pressure``
=================  ==========================  ===============================
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

from sentinel.errors import SourceError
from sentinel.model import MemoryPressure, MemorySample
from sentinel.sources._fd import field, fields, pread_all, read_bytes
from sentinel.sources.procfs import parse_pressure

Clock = Callable[[], float]
Version = Literal["v1", "v2"]

UNLIMITED_V1 = 1 << 62
"""v1 reports "no limit" as PAGE_COUNTER_MAX pages in bytes: 9223372036854771712 with 4 KiB
pages, other values with other page sizes. Anything this large is unlimited."""


class CgroupGoneError(SourceError):
    """The cgroup does not exist (any more): removed, or its container stopped."""


# --- pure parsers ---------------------------------------------------------------------


def parse_limit(text: str | bytes) -> int | None:
    """A limit file (v1 ``memory.limit_in_bytes``, v2 ``memory.max``); ``None`` = unlimited."""
    raw = text.strip()
    if raw in ("max", b"max"):
        return None
    value = int(raw)
    return None if value >= UNLIMITED_V1 else value


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines: ``memory.stat``, ``memory.events``, ``memory.oom_control``."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" ")
        if not sep:
            if line.strip():
                raise ValueError(f"not a 'key value' line: {line!r}")
            continue
        out[key] = int(value)
    return out


parse_memory_stat = parse_flat_keyed
parse_memory_events = parse_flat_keyed
parse_oom_control = parse_flat_keyed


def effective_limit(limits: Sequence[tuple[str, int | None]]) -> tuple[int | None, str | None]:
    """The tightest limit on a cgroup's path and who sets it.

    ``limits``: ``(cgroup, own limit)`` from the cgroup itself outwards to the root. On a
    tie the innermost cgroup wins. ``(None, None)`` when nothing on the path is limited.
    """
    best: int | None = None
    setter: str | None = None
    for cgroup, limit in limits:
        if limit is not None and (best is None or limit < best):
            best, setter = limit, cgroup
    return best, setter


def _pressure(data: bytes | None) -> MemoryPressure | None:
    return None if data is None else parse_pressure(data.decode())


# memory.stat and memory.events keys, in the order the kernel prints them.
_V1_STAT_KEYS = (b"total_cache ", b"total_rss ", b"total_inactive_file ")
_V2_STAT_KEYS = (b"anon ", b"file ", b"inactive_file ")
_V2_EVENT_KEYS = (b"max ", b"oom ", b"oom_kill ")


def v1_sample(
    t: float,
    cgroup: str,
    *,
    usage: bytes,
    limit: bytes,
    stat: bytes,
    failcnt: bytes,
    oom_control: bytes,
    ancestor_limits: Sequence[tuple[str, bytes]] = (),
    pressure: bytes | None = None,
) -> MemorySample:
    """One v1 sample from the raw file contents (pure).

    ``ancestor_limits``: ``(cgroup, memory.limit_in_bytes)`` of the parents, innermost
    first, root excluded. ``memory.stat``'s ``total_*`` keys count the whole subtree, as
    ``usage_in_bytes`` does.
    """
    usage_bytes = int(usage)
    own = parse_limit(limit)
    cache, rss, inactive_file = fields(stat, _V1_STAT_KEYS)
    if inactive_file is None:
        raise ValueError("memory.stat lacks 'total_inactive_file'")
    return _sample(
        t,
        cgroup,
        usage_bytes=usage_bytes,
        inactive_file=inactive_file,
        own=own,
        ancestor_limits=ancestor_limits,
        anon_bytes=rss,
        cache_bytes=cache,
        limit_hits=int(failcnt),
        oom=None,
        oom_kill=field(oom_control, b"oom_kill "),
        pressure=pressure,
    )


def _sample(
    t: float,
    cgroup: str,
    *,
    usage_bytes: int,
    inactive_file: int,
    own: int | None,
    ancestor_limits: Sequence[tuple[str, bytes]],
    anon_bytes: int | None,
    cache_bytes: int | None,
    limit_hits: int | None,
    oom: int | None,
    oom_kill: int | None,
    pressure: bytes | None,
) -> MemorySample:
    """What v1 and v2 share: working set, the effective limit and who sets it."""
    limits = [(cgroup, own), *((c, parse_limit(raw)) for c, raw in ancestor_limits)]
    eff, setter = effective_limit(limits)
    return MemorySample(
        t=t,
        cgroup=cgroup,
        usage_bytes=usage_bytes,
        working_set_bytes=max(0, usage_bytes - inactive_file),
        anon_bytes=anon_bytes,
        cache_bytes=cache_bytes,
        limit_bytes=own,
        effective_limit_bytes=eff,
        effective_limit_cgroup=setter,
        limit_hits=limit_hits,
        oom=oom,
        oom_kill=oom_kill,
        pressure=_pressure(pressure),
    )


def v2_sample(
    t: float,
    cgroup: str,
    *,
    current: bytes,
    max_: bytes,
    stat: bytes,
    events: bytes,
    ancestor_limits: Sequence[tuple[str, bytes]] = (),
    pressure: bytes | None = None,
) -> MemorySample:
    """One v2 sample from the raw file contents (pure).

    ``ancestor_limits``: ``(cgroup, memory.max)`` of the parents, innermost first, root
    excluded (the root has no ``memory.max``).
    """
    usage_bytes = int(current)
    own = parse_limit(max_)
    anon, file, inactive_file = fields(stat, _V2_STAT_KEYS)
    if inactive_file is None:
        raise ValueError("memory.stat lacks 'inactive_file'")
    limit_hits, oom, oom_kill = fields(events, _V2_EVENT_KEYS)
    return _sample(
        t,
        cgroup,
        usage_bytes=usage_bytes,
        inactive_file=inactive_file,
        own=own,
        ancestor_limits=ancestor_limits,
        anon_bytes=anon,
        cache_bytes=file,
        limit_hits=limit_hits,
        oom=oom,
        oom_kill=oom_kill,
        pressure=pressure,
    )


def ancestors(cgroup: str) -> list[str]:
    """The parents of a cgroup path, innermost first, without the root ``/``."""
    out: list[str] = []
    path = cgroup.rstrip("/")
    while (cut := path.rfind("/")) > 0:
        path = path[:cut]
        out.append(path)
    return out


def normalize(cgroup: str) -> str:
    """``a/b/`` → ``/a/b``; the root is ``/``."""
    return "/" + cgroup.strip("/")


# --- readers --------------------------------------------------------------------------


class CgroupFS:
    """The memory cgroup hierarchy under ``root`` (default ``/sys/fs/cgroup``).

    Detects the layout from what is mounted:

    * v2: ``root/cgroup.controllers`` exists and lists ``memory``;
    * v1: the memory controller at ``root/memory`` (or ``root`` is itself that mount);
      *hybrid* when a v2 hierarchy is also mounted at ``root/unified``, where the kernel
      keeps per-cgroup PSI (``memory.pressure``) for cgroups of the same name.

    Cgroup paths are written as in ``/proc/PID/cgroup``: ``/`` is the hierarchy root.
    """

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), *, clock: Clock = time.monotonic):
        self.root = root
        self.clock = clock
        self.version: Version
        self.hybrid = False
        self.unified_root: Path | None = None
        if (root / "cgroup.controllers").exists():
            controllers = (root / "cgroup.controllers").read_text().split()
            if "memory" not in controllers:
                raise SourceError(f"cgroup v2 at {root} has no memory controller")
            self.version, self.memory_root, self.unified_root = "v2", root, root
        elif (root / "memory" / "memory.usage_in_bytes").exists():
            self.version, self.memory_root = "v1", root / "memory"
            if (root / "unified" / "cgroup.controllers").exists():
                self.hybrid, self.unified_root = True, root / "unified"
        elif (root / "memory.usage_in_bytes").exists():
            self.version, self.memory_root = "v1", root
        else:
            raise SourceError(f"no memory cgroup hierarchy under {root}")

    def __repr__(self) -> str:
        layout = "hybrid" if self.hybrid else self.version
        return f"CgroupFS({str(self.root)!r}, {layout}, memory at {str(self.memory_root)!r})"

    @property
    def limit_file(self) -> str:
        return "memory.limit_in_bytes" if self.version == "v1" else "memory.max"

    def path(self, cgroup: str) -> Path:
        """The directory of a cgroup."""
        rel = cgroup.strip("/")
        return self.memory_root / rel if rel else self.memory_root

    def exists(self, cgroup: str) -> bool:
        return self.path(cgroup).is_dir()

    def open(self, cgroup: str) -> CgroupHandle:
        """A handle for repeated sampling (close it, or use it as a context manager)."""
        return CgroupHandle(self, cgroup)

    def sample(self, cgroup: str) -> MemorySample:
        """One sample, opening and closing the files (for repeated sampling, :meth:`open`)."""
        with self.open(cgroup) as handle:
            return handle.sample()

    def limit(self, cgroup: str) -> int | None:
        """The cgroup's own limit (``None``: unlimited; the root is always unlimited)."""
        if normalize(cgroup) == "/":
            return None
        path = str(self.path(cgroup) / self.limit_file)
        return parse_limit(_read(path))

    def effective_limit(self, cgroup: str) -> tuple[int | None, str | None]:
        """The tightest limit on the path to the root, and the cgroup that sets it."""
        cgroup = normalize(cgroup)
        path = [cgroup, *ancestors(cgroup)] if cgroup != "/" else []
        return effective_limit([(c, self.limit(c)) for c in path])

    def walk(self, cgroup: str = "/") -> Iterator[str]:
        """This cgroup and every cgroup below it, parents before children."""
        start = normalize(cgroup)
        stack = [start]
        while stack:
            current = stack.pop()
            yield current
            try:
                entries = list(os.scandir(self.path(current)))
            except FileNotFoundError:
                continue  # removed while walking: nothing below it to report
            except OSError as e:
                raise SourceError(f"cannot list {self.path(current)}: {e.strerror}") from e
            prefix = "" if current == "/" else current
            children = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
            stack.extend(f"{prefix}/{name}" for name in reversed(children))


def _read(path: str) -> bytes:
    try:
        return read_bytes(path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENODEV):
            raise CgroupGoneError(f"cgroup file {path} is gone") from e
        raise SourceError(f"cannot read {path}: {e.strerror}") from e


def _open_fd(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENODEV):
            raise CgroupGoneError(f"no cgroup file {path}") from e
        raise SourceError(f"cannot open {path}: {e.strerror}") from e


_V1_FILES = (
    "memory.usage_in_bytes",
    "memory.limit_in_bytes",
    "memory.stat",
    "memory.failcnt",
    "memory.oom_control",
)
_V2_FILES = ("memory.current", "memory.max", "memory.stat", "memory.events")


class CgroupHandle:
    """One cgroup's memory files, held open for cheap repeated :meth:`sample` calls.

    Opening fails with :class:`CgroupGoneError` when the cgroup does not exist; so does
    :meth:`sample` once it has been removed. A handle holds 5 to 7 descriptors plus one
    per ancestor; close it when the cgroup is no longer watched.
    """

    def __init__(self, fs: CgroupFS, cgroup: str, *, own_ancestors: bool = True) -> None:
        self.fs = fs
        self.cgroup = normalize(cgroup)
        self.version = fs.version
        self._fds: list[int] = []
        if self.version == "v2" and self.cgroup == "/":
            raise SourceError("the v2 root cgroup has no memory.current: sample the host")
        directory = str(fs.path(self.cgroup))
        names = _V1_FILES if self.version == "v1" else _V2_FILES
        self._nfiles = len(names)
        self.ancestors = ancestors(self.cgroup)
        self._ancestors: list[tuple[str, int]] = []
        self._pressure: int | None = None
        try:
            for name in names:
                self._open(f"{directory}/{name}")
            for parent in self.ancestors if own_ancestors else ():
                fd = self._open(f"{fs.path(parent)}/{fs.limit_file}")
                self._ancestors.append((parent, fd))
            if fs.unified_root is not None:
                psi = fs.unified_root / self.cgroup.strip("/") / "memory.pressure"
                if psi.exists():
                    self._pressure = self._open_pressure(str(psi))
        except BaseException:
            self.close()
            raise

    def _open_pressure(self, path: str) -> int | None:
        """The PSI file, or ``None`` when the kernel runs without PSI (``psi=0``)."""
        fd = self._open(path)
        try:
            os.pread(fd, 256, 0)
        except OSError as e:
            if e.errno != errno.EOPNOTSUPP:
                raise SourceError(f"cannot read {path}: {e.strerror}") from e
            self._fds.remove(fd)
            os.close(fd)
            return None
        return fd

    def _open(self, path: str) -> int:
        fd = _open_fd(path)
        self._fds.append(fd)
        return fd

    def __enter__(self) -> CgroupHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CgroupHandle({self.cgroup!r}, {self.version})"

    def close(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)

    @property
    def closed(self) -> bool:
        return not self._fds

    def sample(self, parent_limits: Mapping[str, bytes] | None = None) -> MemorySample:
        """Read the cgroup now (stamped with the filesystem's clock).

        ``parent_limits``: the ancestors' limit files, already read, for a handle opened
        without its own (:class:`CgroupSet` reads each shared ancestor once per tick).
        """
        fds = self._fds
        if not fds:
            raise ValueError(f"{self!r} is closed")
        t = self.fs.clock()
        try:
            raw = [pread_all(fd) for fd in fds[: self._nfiles]]
            if parent_limits is None:
                parents = [(c, pread_all(fd)) for c, fd in self._ancestors]
            else:
                parents = [(c, parent_limits[c]) for c in self.ancestors]
            pressure = None if self._pressure is None else pread_all(self._pressure)
            if self.version == "v1":
                usage, limit, stat, failcnt, oom_control = raw
                return v1_sample(
                    t,
                    self.cgroup,
                    usage=usage,
                    limit=limit,
                    stat=stat,
                    failcnt=failcnt,
                    oom_control=oom_control,
                    ancestor_limits=parents,
                    pressure=pressure,
                )
            current, max_, stat, events = raw
            return v2_sample(
                t,
                self.cgroup,
                current=current,
                max_=max_,
                stat=stat,
                events=events,
                ancestor_limits=parents,
                pressure=pressure,
            )
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENODEV):
                raise CgroupGoneError(f"cgroup {self.cgroup} is gone") from e
            raise SourceError(f"cannot read cgroup {self.cgroup}: {e.strerror}") from e
        except ValueError as e:
            raise SourceError(f"cgroup {self.cgroup} under {self.fs.memory_root}: {e}") from e


class CgroupSet:
    """Many cgroups sampled together, once per tick: what a daemon watching containers uses.

    Containers share their parents (``/docker``, ``kubepods.slice``, ...), so the parents'
    limit files are held once for the whole set and read once per :meth:`sample`, not once
    per cgroup. Cgroups that disappear are dropped from the set and reported.
    """

    def __init__(self, fs: CgroupFS) -> None:
        self.fs = fs
        self._handles: dict[str, CgroupHandle] = {}
        self._parents: dict[str, list[int]] = {}  # path -> [fd, number of handles using it]
        self.errors: dict[str, str] = {}
        """The cgroups the last :meth:`sample` could not read, and why."""

    def __enter__(self) -> CgroupSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._handles)

    def __contains__(self, cgroup: object) -> bool:
        return isinstance(cgroup, str) and normalize(cgroup) in self._handles

    def add(self, cgroup: str) -> None:
        """Watch a cgroup (no-op when already watched; :class:`CgroupGoneError` if absent)."""
        cgroup = normalize(cgroup)
        if cgroup in self._handles:
            return
        handle = CgroupHandle(self.fs, cgroup, own_ancestors=False)
        opened: list[str] = []
        try:
            for parent in handle.ancestors:
                entry = self._parents.get(parent)
                if entry is None:
                    fd = _open_fd(f"{self.fs.path(parent)}/{self.fs.limit_file}")
                    self._parents[parent] = [fd, 1]
                else:
                    entry[1] += 1
                opened.append(parent)
        except BaseException:
            self._release(opened)
            handle.close()
            raise
        self._handles[cgroup] = handle

    def discard(self, cgroup: str) -> None:
        handle = self._handles.pop(normalize(cgroup), None)
        if handle is not None:
            self._release(handle.ancestors)
            handle.close()

    def _release(self, parents: Sequence[str]) -> None:
        for parent in parents:
            entry = self._parents[parent]
            entry[1] -= 1
            if entry[1] == 0:
                del self._parents[parent]
                os.close(entry[0])

    def close(self) -> None:
        for cgroup in list(self._handles):
            self.discard(cgroup)

    def sample(self) -> tuple[list[MemorySample], list[str]]:
        """One sample of every cgroup in the set, and the cgroups found gone (now dropped).

        A cgroup that cannot be read this time (an unexpected error, a file that does not
        parse) is left out of this round and reported in :attr:`errors`; the others are
        sampled: one bad cgroup never costs the rest their reading."""
        limits: dict[str, bytes] = {}
        missing: set[str] = set()
        unreadable: dict[str, str] = {}
        for parent, (fd, _) in self._parents.items():
            try:
                limits[parent] = pread_all(fd)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENODEV):
                    unreadable[parent] = f"cannot read cgroup {parent}: {e.strerror}"
                    continue
                missing.add(parent)
        samples: list[MemorySample] = []
        gone: list[str] = []
        errors: dict[str, str] = {}
        for cgroup, handle in self._handles.items():
            if missing and not missing.isdisjoint(handle.ancestors):
                gone.append(cgroup)  # a parent was removed: so was this cgroup
                continue
            bad = next((unreadable[p] for p in handle.ancestors if p in unreadable), None)
            if bad is not None:
                errors[cgroup] = bad
                continue
            try:
                samples.append(handle.sample(limits))
            except CgroupGoneError:
                gone.append(cgroup)
            except SourceError as e:
                errors[cgroup] = str(e)
        for cgroup in gone:
            self.discard(cgroup)
        self.errors = errors
        return samples, gone
