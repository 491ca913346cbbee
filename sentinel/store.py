"""sentinel's state in one SQLite file (WAL): what happened, and what is still owed.

- ``kills``: every kernel OOM kill record, once. A kill is keyed by the boot it happened
  in and its kmsg sequence number (or, for records from log files, by host, time and pid),
  so reading the same kernel buffer again after a restart stores nothing twice.
- ``positions``: how far each source was read (the kmsg sequence number of the current
  boot), written in the same transaction as the records it covers: a crash between the
  two can neither lose a record nor repeat one.
- ``samples``: a bounded memory history per target (the newest ``samples_per_target``).
- ``decisions``: every decision and action with its evidence, for ``sentinel events``,
  cooldowns and restart budgets.
- ``outbox``: notifications written before they are sent, removed from the queue only
  when the receiver accepted them; a restart or an outage loses none. A notification of a
  decision is keyed ``decision:{id}:{notifier}``: once every notifier accepted it the
  ``notify`` or ``escalate`` decision's outcome moves from ``queued`` to ``sent`` (in the
  same transaction), and to ``failed`` when a notifier refused it for good (see
  :meth:`Store.mark_failed`).
- ``threads``: the Slack thread of each target, per notifier and channel
  (``thread_per_target``): a message id, not a secret.

The database is opened with ``synchronous=FULL`` on WAL: a record acknowledged by a
method here survives a power cut.

Files: the directory sentinel creates for the state is 0700, the state file and its WAL
and shared-memory files are 0600 (an existing directory is left as it is). Read-only
commands (``sentinel events``) open it with :meth:`Store.open_read_only`, which never
creates nor writes a file.

Bounded: cooldowns and budgets read only the windows the policy looks back
(:meth:`Store.history`, indexed); :meth:`Store.prune` removes what no decision needs any
more. The schema has a version (``meta.schema_version``) and ordered migrations
(:data:`MIGRATIONS`), applied at open, each in one transaction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sentinel.errors import SentinelError
from sentinel.model import KillRecord
from sentinel.policy.state import BUDGET_ACTIONS, DISRUPTIVE, ActionRecord, History, Lookback

log = logging.getLogger("sentinel.store")

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (
    source TEXT PRIMARY KEY,
    boot_id TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS kills (
    id INTEGER PRIMARY KEY,
    dedupe_key TEXT NOT NULL UNIQUE,
    recorded_at REAL NOT NULL,
    pid INTEGER NOT NULL,
    target_id TEXT,
    target_name TEXT,
    record TEXT NOT NULL,
    target TEXT
);
CREATE INDEX IF NOT EXISTS kills_recorded_at ON kills (recorded_at);
CREATE TABLE IF NOT EXISTS samples (
    target_id TEXT NOT NULL,
    t REAL NOT NULL,
    usage_bytes INTEGER NOT NULL,
    limit_bytes INTEGER,
    PRIMARY KEY (target_id, t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    rule TEXT NOT NULL,
    target_id TEXT NOT NULL,
    target_name TEXT,
    action TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    evidence TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_rule_target ON decisions (rule, target_id, at);
CREATE INDEX IF NOT EXISTS decisions_at ON decisions (at);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    dedupe_key TEXT NOT NULL UNIQUE,
    notifier TEXT NOT NULL,
    created_at REAL NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (sent_at, next_attempt_at);
CREATE TABLE IF NOT EXISTS threads (
    notifier TEXT NOT NULL,
    channel TEXT NOT NULL,
    target_id TEXT NOT NULL,
    ts TEXT NOT NULL,
    started_at REAL NOT NULL,
    PRIMARY KEY (notifier, channel, target_id)
) WITHOUT ROWID;
"""


_SCHEMA_V2 = """
DROP INDEX IF EXISTS decisions_rule_target;
CREATE INDEX IF NOT EXISTS decisions_rule_at ON decisions (rule, at);
CREATE INDEX IF NOT EXISTS decisions_rule_action_at ON decisions (rule, action, at);
CREATE INDEX IF NOT EXISTS decisions_action_at ON decisions (action, at);
"""

_SCHEMA_V3 = """
ALTER TABLE kills ADD COLUMN handled INTEGER NOT NULL DEFAULT 1;
CREATE INDEX IF NOT EXISTS kills_unhandled ON kills (id) WHERE handled = 0;
"""

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "kills, positions, samples, decisions, outbox, threads", _SCHEMA_V1),
    (2, "indexes for the bounded history of cooldowns, budgets and the rate limit", _SCHEMA_V2),
    (3, "kills not yet handled by the rules (a crash between storing and deciding)", _SCHEMA_V3),
)
"""``(version, what, script)`` in order: a state file at version N gets every later one."""
SCHEMA_VERSION = MIGRATIONS[-1][0]
FILE_MODE = 0o600
DIR_MODE = 0o700
PRUNE_BATCH = 2000
"""Rows removed per transaction: a prune never holds the state's lock for long."""


class StoreError(SentinelError):
    """The state file cannot be opened or is not sentinel's (the message names the file and
    says what is wrong)."""


@dataclass(frozen=True, slots=True)
class Pruned:
    """Rows removed by one :meth:`Store.prune`."""

    decisions: int = 0
    notifications: int = 0
    kills: int = 0
    samples: int = 0
    threads: int = 0

    @property
    def total(self) -> int:
        return self.decisions + self.notifications + self.kills + self.samples + self.threads


@dataclass(frozen=True, slots=True)
class _HistoryCache:
    """The last :meth:`Store.history` answer, reused while nothing could change it: the
    same windows and outcomes, no decision written since (by this store: the generation;
    by another connection: SQLite's ``data_version``), and ``now`` between the time it
    was read and the first time a record leaves its window."""

    key: tuple[Lookback, tuple[str, ...]]
    generation: int
    data_version: int
    read_at: float
    valid_until: float
    history: History


@dataclass(frozen=True, slots=True)
class StoredKill:
    id: int
    recorded_at: float
    record: KillRecord
    target_id: str | None
    target_name: str | None
    target: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class StoredDecision:
    id: int
    at: float
    rule: str
    target_id: str
    target_name: str | None
    action: str
    dry_run: bool
    outcome: str
    evidence: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    dedupe_key: str
    notifier: str
    created_at: float
    payload: Mapping[str, Any]
    attempts: int
    next_attempt_at: float
    last_error: str | None
    sent_at: float | None = None


_OUTBOX_COLUMNS = (
    "id, dedupe_key, notifier, created_at, payload, attempts, next_attempt_at, last_error, sent_at"
)


def _outbox_item(r: Any) -> OutboxItem:
    return OutboxItem(
        id=r[0],
        dedupe_key=r[1],
        notifier=r[2],
        created_at=r[3],
        payload=json.loads(r[4]),
        attempts=r[5],
        next_attempt_at=r[6],
        last_error=r[7],
        sent_at=r[8],
    )


_DECISION_COLUMNS = "id, at, rule, target_id, target_name, action, dry_run, outcome, evidence"


def _stored_decision(r: Any) -> StoredDecision:
    return StoredDecision(
        id=r[0],
        at=r[1],
        rule=r[2],
        target_id=r[3],
        target_name=r[4],
        action=r[5],
        dry_run=bool(r[6]),
        outcome=r[7],
        evidence=json.loads(r[8]),
    )


def _marks(values: Collection[Any]) -> str:
    return ", ".join("?" * len(values))


NOTIFY_ACTIONS = ("escalate", "notify")
"""Decisions carried out by queueing notifications: their outcome follows delivery."""
SETTLED_BY_DELIVERY = ("failed", "queued")
"""Outcomes of a notify or escalate decision that its delivery may still change."""


def decision_key(decision_id: int, notifier: str) -> str:
    """The outbox key of a decision's notification to ``notifier`` (the daemon's form)."""
    return f"decision:{decision_id}:{notifier}"


def decision_of(dedupe_key: str) -> int | None:
    """The decision an outbox key notifies of (:func:`decision_key`), if it is one."""
    kind, _, rest = dedupe_key.partition(":")
    number, sep, _ = rest.partition(":")
    if kind != "decision" or not sep or not (number.isascii() and number.isdigit()):
        return None
    return int(number)


def _decision_keys(decision_id: int) -> tuple[str, str]:
    """``[low, high)``: every key of :func:`decision_key` for this decision (one range of
    the outbox's unique index on ``dedupe_key``; ``;`` follows ``:``)."""
    return f"decision:{decision_id}:", f"decision:{decision_id};"


def kill_key(record: KillRecord, boot_id: str | None) -> str:
    """Identity of one kill: kmsg sequence in its boot, else host + stamp + pid."""
    if record.kmsg_seq is not None and boot_id:
        return f"kmsg:{boot_id}:{record.kmsg_seq}:{record.pid}"
    stamp = record.time or record.log_time or record.kernel_timestamp
    return f"log:{record.host or ''}:{stamp}:{record.pid}:{record.comm or ''}"


def _statements(script: str) -> list[str]:
    """The statements of a migration script (no ``;`` inside statements here)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def _check_kind(path: Path, *, missing_ok: bool) -> None:
    """A state file is a regular file (or, to be created, nothing yet)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if missing_ok:
            return
        raise StoreError(
            f"state file {path}: does not exist (has `sentinel run` used this state?)"
        ) from None
    if stat.S_ISDIR(mode):
        raise StoreError(f"state file {path}: is a directory; give a file path such as"
                         f" {path / 'state.db'}")  # fmt: skip
    if not stat.S_ISREG(mode):
        kind = "a character device" if stat.S_ISCHR(mode) else "not a regular file"
        raise StoreError(f"state file {path}: {kind}, not a file sentinel can keep its state in")


_HEADER = b"SQLite format 3\x00"


def _check_size(path: Path) -> None:
    """A database file is whole pages (WAL or not): a file cut elsewhere lost the end of
    a page, which SQLite would read as zeros, so it is refused as damaged."""
    try:
        with path.open("rb") as f:
            head = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return
    if size == 0 or not head.startswith(_HEADER[: len(head)]):
        return  # new, or not SQLite at all: SQLite says which
    page = int.from_bytes(head[16:18], "big") if len(head) >= 18 else 0
    page = 65536 if page == 1 else page
    if len(head) < 100 or page < 512 or size % page:
        raise StoreError(
            f"state file {path}: damaged (truncated: {size} bytes, not whole pages):"
            " move it aside, sentinel starts a new one"
        )


def _sqlite_problem(e: sqlite3.DatabaseError) -> str:
    text = str(e)
    if "file is not a database" in text:
        return "not an SQLite database: give another file as the state"
    if "malformed" in text:
        return f"damaged ({text}): move it aside, sentinel starts a new one"
    if "readonly" in text or "read-only" in text:
        return f"cannot write ({text})"
    return text


class Store:
    """The state database. Safe to share between threads (one connection, one lock)."""

    def __init__(
        self, path: Path | str, *, samples_per_target: int = 4096, read_only: bool = False
    ) -> None:
        self.path = Path(path)
        self.samples_per_target = samples_per_target
        self.read_only = read_only
        self._lock = threading.RLock()
        self._decisions_generation = 0
        """Bumped by every write of this store to ``decisions`` (the history cache)."""
        self._history_cache: _HistoryCache | None = None
        memory = str(path) == ":memory:"
        opened: sqlite3.Connection | None = None
        try:
            if read_only:
                opened = self._db = self._open_read_only()
            else:
                if not memory:
                    self._prepare_files()
                    _check_size(self.path)
                opened = self._db = sqlite3.connect(
                    str(path), check_same_thread=False, isolation_level=None
                )
                self._version()  # sentinel's (or new) before anything is written to it
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
            if not read_only and not memory:
                self._tighten(self.path, *self._side_files())
        except BaseException as e:
            if opened is not None:
                opened.close()
            if isinstance(e, sqlite3.DatabaseError):
                raise StoreError(f"state file {self.path}: {_sqlite_problem(e)}") from e
            if isinstance(e, OSError):
                where = f" ({e.filename})" if e.filename and str(e.filename) != str(path) else ""
                raise StoreError(
                    f"state file {self.path}: cannot open: {e.strerror or e}{where}"
                ) from e
            raise

    @classmethod
    def open_read_only(cls, path: Path | str) -> Store:
        """The state for reading only (``sentinel events``): nothing is created or written,
        not even the WAL's side files; a missing file is an error."""
        return cls(path, read_only=True)

    # -- opening -------------------------------------------------------------------------------

    def _side_files(self) -> list[Path]:
        return [self.path.with_name(self.path.name + s) for s in ("-wal", "-shm", "-journal")]

    def _prepare_files(self) -> None:
        """The directory (0700, only the levels created here) and the file (0600), before
        SQLite opens it: SQLite gives the WAL and shared-memory files the database's mode."""
        _check_kind(self.path, missing_ok=True)
        missing = []
        parent = self.path.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):  # made meanwhile by another process
                directory.mkdir(mode=DIR_MODE)
        with contextlib.suppress(FileExistsError):  # an existing state: tightened once read
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))

    def _tighten(self, *paths: Path) -> None:
        """Make existing state files 0600 (a file from an older sentinel may be 0644)."""
        for p in paths:
            try:
                mode = p.stat().st_mode
                if stat.S_ISREG(mode) and mode & 0o077:
                    os.chmod(p, FILE_MODE)
            except FileNotFoundError:
                continue
            except OSError as e:
                log.warning("state file %s: cannot make it 0600: %s", p, e.strerror)

    def _open_read_only(self) -> sqlite3.Connection:
        _check_kind(self.path, missing_ok=False)
        _check_size(self.path)
        # With a WAL file (the daemon running, or stopped uncleanly), read through it; without
        # one the file is complete: open it immutable, or SQLite would create -wal and -shm.
        wal = self.path.with_name(self.path.name + "-wal").exists()
        uri = f"file:{quote(str(self.path.absolute()))}?mode=ro" + ("" if wal else "&immutable=1")
        db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA query_only=1")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def _version(self) -> int:
        """The file's schema version: 0 for a new (empty) database."""
        names = [
            r[0]
            for r in self._db.execute(
                "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        if "meta" not in names:
            if names:
                shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                raise StoreError(
                    f"state file {self.path}: an SQLite database, but not sentinel's state"
                    f" (it holds {shown}): give another file as the state"
                )
            return 0
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        try:
            return int(row[0]) if row is not None else 0
        except ValueError:
            raise StoreError(
                f"state file {self.path}: unreadable schema version {row[0]!r}"
            ) from None

    def _migrate(self) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION`, one migration per transaction."""
        version = self._version()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"state file {self.path}: schema version {version} is newer than this"
                f" sentinel's ({SCHEMA_VERSION}): upgrade sentinel or give another state file"
            )
        if self.read_only:
            if version == 0:
                raise StoreError(
                    f"state file {self.path}: empty, not a sentinel state"
                    " (has `sentinel run` used it?)"
                )
            return  # an older schema reads the same: the migrations only add
        for number, what, script in MIGRATIONS:
            if number <= version:
                continue
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if self._version() >= number:  # another process migrated meanwhile
                        self._db.execute("ROLLBACK")
                        continue
                    for statement in _statements(script):
                        self._db.execute(statement)
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                        (str(number),),
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            if version:
                log.info("state file %s: schema %d -> %d (%s)", self.path, version, number, what)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- kills and positions ------------------------------------------------------------

    def add_kill(
        self,
        record: KillRecord,
        *,
        now: float,
        boot_id: str | None = None,
        target_id: str | None = None,
        target_name: str | None = None,
        target: Mapping[str, Any] | None = None,
        source: str | None = None,
        handled: bool = True,
    ) -> int | None:
        """Store a kill once; returns its id, or None when it was stored before.

        With ``source``, the source's position moves to the record's kmsg sequence in the
        same transaction. ``handled=False``: the rules have yet to decide on it; it stays
        listed by :meth:`unhandled_kills` until :meth:`mark_kills_handled` (so a crash in
        between loses no notification).
        """
        key = kill_key(record, boot_id)
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO kills"
                " (dedupe_key, recorded_at, pid, target_id, target_name, record, target, handled)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    now,
                    record.pid,
                    target_id,
                    target_name,
                    json.dumps(record.to_dict()),
                    json.dumps(dict(target)) if target is not None else None,
                    int(handled),
                ),
            )
            if source is not None and boot_id and record.kmsg_seq is not None:
                self._set_position(db, source, boot_id, record.kmsg_seq)
            return cur.lastrowid if cur.rowcount else None

    def unhandled_kills(self) -> list[StoredKill]:
        """Kills stored but not yet decided on by the rules (oldest first)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, recorded_at, record, target_id, target_name, target FROM kills"
                " WHERE handled = 0 ORDER BY id"
            ).fetchall()
        return [self._stored_kill(r) for r in rows]

    def mark_kills_handled(self, ids: Iterable[int]) -> None:
        wanted = [(i,) for i in ids]
        if not wanted:
            return
        with self._tx() as db:
            db.executemany("UPDATE kills SET handled = 1 WHERE id = ?", wanted)

    def kills(self, *, since: float | None = None) -> list[StoredKill]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, recorded_at, record, target_id, target_name, target FROM kills"
                " WHERE recorded_at >= ? ORDER BY id",
                (since if since is not None else float("-inf"),),
            ).fetchall()
        return [self._stored_kill(r) for r in rows]

    @staticmethod
    def _stored_kill(r: Any) -> StoredKill:
        return StoredKill(
            id=r[0],
            recorded_at=r[1],
            record=KillRecord.from_dict(json.loads(r[2])),
            target_id=r[3],
            target_name=r[4],
            target=json.loads(r[5]) if r[5] else None,
        )

    def position(self, source: str, boot_id: str) -> int | None:
        """The last sequence number read from ``source`` in this boot, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT boot_id, seq FROM positions WHERE source = ?", (source,)
            ).fetchone()
        if row is None or row[0] != boot_id:
            return None
        return int(row[1])

    def position_boot(self, source: str) -> str | None:
        """The boot in which ``source`` was last read, if it ever was (a reboot since: a
        different boot id)."""
        with self._lock:
            row = self._db.execute(
                "SELECT boot_id FROM positions WHERE source = ?", (source,)
            ).fetchone()
        return None if row is None else str(row[0])

    def set_position(self, source: str, boot_id: str, seq: int) -> None:
        with self._tx() as db:
            self._set_position(db, source, boot_id, seq)

    @staticmethod
    def _set_position(db: sqlite3.Connection, source: str, boot_id: str, seq: int) -> None:
        db.execute(
            "INSERT INTO positions (source, boot_id, seq) VALUES (?, ?, ?)"
            " ON CONFLICT (source) DO UPDATE SET boot_id = excluded.boot_id, seq = excluded.seq"
            " WHERE excluded.boot_id != positions.boot_id OR excluded.seq > positions.seq",
            (source, boot_id, seq),
        )

    # -- samples --------------------------------------------------------------------------

    def add_samples(self, rows: list[tuple[str, float, int, int | None]]) -> None:
        """``(target_id, t, usage_bytes, limit_bytes)`` rows; keeps a bounded history."""
        if not rows:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO samples (target_id, t, usage_bytes, limit_bytes)"
                " VALUES (?, ?, ?, ?)",
                rows,
            )
            for target_id in {r[0] for r in rows}:
                db.execute(
                    "DELETE FROM samples WHERE target_id = ? AND t < ("
                    " SELECT t FROM samples WHERE target_id = ? ORDER BY t DESC"
                    " LIMIT 1 OFFSET ?)",
                    (target_id, target_id, self.samples_per_target - 1),
                )

    def samples(self, target_id: str) -> list[tuple[float, int, int | None]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT t, usage_bytes, limit_bytes FROM samples WHERE target_id = ? ORDER BY t",
                (target_id,),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    # -- decisions ------------------------------------------------------------------------

    def add_decision(
        self,
        *,
        at: float,
        rule: str,
        target_id: str,
        action: str,
        dry_run: bool,
        outcome: str,
        evidence: Mapping[str, Any],
        target_name: str | None = None,
    ) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO decisions"
                " (at, rule, target_id, target_name, action, dry_run, outcome, evidence)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    at,
                    rule,
                    target_id,
                    target_name,
                    action,
                    int(dry_run),
                    outcome,
                    json.dumps(dict(evidence), default=str),
                ),
            )
            self._decisions_changed()
            assert cur.lastrowid is not None
            return cur.lastrowid

    def set_outcome(self, decision_id: int, outcome: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE decisions SET outcome = ? WHERE id = ?", (outcome, decision_id))
            self._decisions_changed()

    def set_evidence_key(self, decision_id: int, key: str, value: Any) -> None:
        """Add ``key`` to a decision's stored evidence (what an action brought back, such
        as a snapshot's report); the caller bounds its size."""
        with self._tx() as db:
            row = db.execute(
                "SELECT evidence FROM decisions WHERE id = ?", (decision_id,)
            ).fetchone()
            if row is None:
                return
            evidence = json.loads(row[0])
            evidence[key] = value
            db.execute(
                "UPDATE decisions SET evidence = ? WHERE id = ?",
                (json.dumps(evidence, default=str), decision_id),
            )

    def _decisions_changed(self) -> None:
        """Called inside the writing transaction (under the lock): the history cache of
        :meth:`history` is stale. Bumped before the commit, so that no reader can cache
        the old answer under the new generation."""
        self._decisions_generation += 1

    def decisions(
        self,
        *,
        since: float | None = None,
        rule: str | None = None,
        target_id: str | None = None,
    ) -> list[StoredDecision]:
        sql = f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE at >= ?"
        args: list[Any] = [since if since is not None else float("-inf")]
        if rule is not None:
            sql += " AND rule = ?"
            args.append(rule)
        if target_id is not None:
            sql += " AND target_id = ?"
            args.append(target_id)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [_stored_decision(r) for r in rows]

    def history(self, lookback: Lookback, now: float, *, outcomes: Collection[str]) -> History:
        """The past actions the evaluation can see (see :class:`Lookback`): per rule, its
        actions within its cooldown and its restarts and escalations within
        ``max_restarts.per``; every disruptive action of the last minute. Only decisions
        with one of ``outcomes`` count. Each part is one range of an index, so the cost
        follows what the windows hold, not how long the state has been kept.

        The answer is reused (the same object) until a decision is written or changed, or
        ``now`` passes the first time one of its records leaves its window: a tick that
        recorded nothing pays only for a look at SQLite's ``data_version``."""
        counted = sorted(outcomes)
        if not counted:
            return History()
        key = (lookback, tuple(counted))
        with self._lock:
            data_version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
            cached = self._history_cache
            if (
                cached is not None
                and cached.key == key
                and cached.generation == self._decisions_generation
                and cached.data_version == data_version
                and cached.read_at <= now <= cached.valid_until
            ):
                return cached.history
            generation = self._decisions_generation
        cols = "SELECT id, at, rule, target_id, action, dry_run FROM decisions WHERE "
        where_outcome = f" AND outcome IN ({_marks(counted)})"
        # (sql, arguments, window): a row stays in its query's answer until ``at + window``
        queries: list[tuple[str, list[Any], float]] = []
        for r in lookback.rules:
            if r.cooldown_s > 0:
                queries.append(
                    (
                        cols + "rule = ? AND at >= ?" + where_outcome,
                        [r.rule, now - r.cooldown_s],
                        r.cooldown_s,
                    )
                )
            if r.budget_s > 0:
                kinds = sorted(BUDGET_ACTIONS)
                queries.append(
                    (
                        cols
                        + f"rule = ? AND action IN ({_marks(kinds)}) AND at >= ?"
                        + where_outcome,
                        [r.rule, *kinds, now - r.budget_s],
                        r.budget_s,
                    )
                )
        if lookback.disruptive_s > 0:
            kinds = sorted(DISRUPTIVE)
            queries.append(
                (
                    cols + f"action IN ({_marks(kinds)}) AND at >= ?" + where_outcome,
                    [*kinds, now - lookback.disruptive_s],
                    lookback.disruptive_s,
                )
            )
        rows: dict[int, ActionRecord] = {}
        valid_until = float("inf")
        with self._lock:
            for sql, args, window in queries:
                for r in self._db.execute(sql, [*args, *counted]):
                    rows[r[0]] = ActionRecord(r[1], r[2], r[3], r[4], bool(r[5]))
                    valid_until = min(valid_until, r[1] + window)
            history = History(tuple(rows[i] for i in sorted(rows)))
            self._history_cache = _HistoryCache(
                key, generation, data_version, now, valid_until, history
            )
        return history

    def latest_outcomes(
        self, action: str, *, outcome: str, since: float
    ) -> dict[str, StoredDecision]:
        """Per target, its latest ``action`` decision with ``outcome`` (not a dry run) at or
        after ``since``: e.g. the ``oom_score_adj`` each target was given."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_DECISION_COLUMNS}, max(id) FROM decisions"
                " WHERE action = ? AND at >= ? AND outcome = ? AND dry_run = 0"
                " GROUP BY target_id",
                (action, since, outcome),
            ).fetchall()
        return {r[3]: _stored_decision(r) for r in rows}

    # -- retention ----------------------------------------------------------------------------

    def prune(
        self,
        *,
        decisions_before: float,
        sent_before: float,
        kills_before: float,
        gone_before: float,
        batch: int = PRUNE_BATCH,
    ) -> Pruned:
        """Remove decisions older than ``decisions_before``, notifications accepted before
        ``sent_before`` (never unsent ones), kills recorded before ``kills_before``, and the
        samples and Slack threads of targets not sampled since ``gone_before``.

        In transactions of at most ``batch`` rows, so that the daemon's writes wait for
        one small transaction at most. The newest decision and kill are always kept: their
        ids stay the highest, so an id is never given twice (outbox keys name them)."""
        try:
            return self._prune(decisions_before, sent_before, kills_before, gone_before, batch)
        except sqlite3.Error as e:
            raise StoreError(f"state file {self.path}: pruning failed: {e}") from e

    def _prune(
        self,
        decisions_before: float,
        sent_before: float,
        kills_before: float,
        gone_before: float,
        batch: int,
    ) -> Pruned:
        decisions = self._prune_rows(
            "decisions", "at < ? AND id < (SELECT max(id) FROM decisions)", decisions_before, batch
        )
        notifications = self._prune_rows(
            "outbox", "sent_at IS NOT NULL AND sent_at < ?", sent_before, batch
        )
        kills = self._prune_rows(
            "kills", "recorded_at < ? AND id < (SELECT max(id) FROM kills)", kills_before, batch
        )
        with self._lock:
            gone = [
                r[0]
                for r in self._db.execute(
                    "SELECT target_id FROM samples GROUP BY target_id HAVING max(t) < ?",
                    (gone_before,),
                )
            ]
        samples = 0
        for target_id in gone:
            while True:
                with self._tx() as db:
                    n = db.execute(
                        "DELETE FROM samples WHERE target_id = ? AND t IN"
                        " (SELECT t FROM samples WHERE target_id = ? LIMIT ?)",
                        (target_id, target_id, batch),
                    ).rowcount
                samples += n
                if n < batch:
                    break
        with self._tx() as db:
            threads = db.execute(
                "DELETE FROM threads WHERE started_at < ?"
                " AND target_id NOT IN (SELECT DISTINCT target_id FROM samples)",
                (gone_before,),
            ).rowcount
        return Pruned(decisions, notifications, kills, samples, threads)

    def _prune_rows(self, table: str, where: str, before: float, batch: int) -> int:
        total = 0
        while True:
            with self._tx() as db:
                n = db.execute(
                    f"DELETE FROM {table} WHERE id IN"
                    f" (SELECT id FROM {table} WHERE {where} LIMIT ?)",
                    (before, batch),
                ).rowcount
                if n and table == "decisions":
                    self._decisions_changed()
            total += n
            if n < batch:
                return total

    def counts(self) -> dict[str, int]:
        """Rows per table (for tests, benchmarks and the prune's log line)."""
        with self._lock:
            return {
                table: int(self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                for table in ("kills", "samples", "decisions", "outbox", "threads")
            }

    # -- outbox ---------------------------------------------------------------------------

    def enqueue(
        self, *, dedupe_key: str, notifier: str, payload: Mapping[str, Any], now: float
    ) -> int | None:
        """Queue a notification once; returns its id, or None if that key was queued before."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO outbox"
                " (dedupe_key, notifier, created_at, payload, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (dedupe_key, notifier, now, json.dumps(dict(payload)), now),
            )
            return cur.lastrowid if cur.rowcount else None

    def due(self, now: float, *, notifier: str | None = None, limit: int = 100) -> list[OutboxItem]:
        """Unsent notifications whose next attempt is due, oldest first."""
        sql = f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= ?"
        args: list[Any] = [now]
        if notifier is not None:
            sql += " AND notifier = ?"
            args.append(notifier)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id LIMIT ?", [*args, limit]).fetchall()
        return [_outbox_item(r) for r in rows]

    def mark_sent(self, item_id: int, now: float) -> None:
        """The receiver accepted the item; its decision is ``sent`` once all its are."""
        self.mark_sent_all([item_id], now)

    def mark_sent_all(self, item_ids: list[int], now: float) -> None:
        """Several items accepted as one message (a storm): all at once, or none. A
        decision whose every notification is now accepted gets the outcome ``sent``."""
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET sent_at = ? WHERE id = ?", [(now, i) for i in item_ids]
            )
            for decision_id in self._decisions_of(db, item_ids):
                low, high = _decision_keys(decision_id)
                settled = db.execute(
                    "UPDATE decisions SET outcome = 'sent'"
                    f" WHERE id = ? AND action IN ({_marks(NOTIFY_ACTIONS)})"
                    f" AND outcome IN ({_marks(SETTLED_BY_DELIVERY)})"
                    " AND NOT EXISTS (SELECT 1 FROM outbox"
                    "  WHERE dedupe_key >= ? AND dedupe_key < ? AND sent_at IS NULL)",
                    (decision_id, *NOTIFY_ACTIONS, *SETTLED_BY_DELIVERY, low, high),
                ).rowcount
                if settled:
                    self._decisions_changed()

    @staticmethod
    def _decisions_of(db: sqlite3.Connection, item_ids: Collection[int]) -> list[int]:
        """The decisions (by id) that the outbox items ``item_ids`` notify of."""
        found: set[int] = set()
        ids = list(item_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for (key,) in db.execute(
                f"SELECT dedupe_key FROM outbox WHERE id IN ({_marks(chunk)})", chunk
            ):
                decision_id = decision_of(key)
                if decision_id is not None:
                    found.add(decision_id)
        return sorted(found)

    def sent_since(self, notifier: str, since: float) -> list[OutboxItem]:
        """Items of ``notifier`` accepted at ``since`` or later, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox"
                " WHERE notifier = ? AND sent_at IS NOT NULL AND sent_at >= ? ORDER BY id",
                (notifier, since),
            ).fetchall()
        return [_outbox_item(r) for r in rows]

    def mark_failed(
        self, item_id: int, *, error: str, retry_at: float, permanent: bool = False
    ) -> None:
        """An attempt failed; the item is tried again at ``retry_at``. ``permanent``: the
        notifier refused it for good (a bad token, a 4xx, no such notifier): its decision,
        if still ``queued``, becomes ``failed`` (and ``sent`` should a later try, after the
        configuration is fixed, deliver it)."""
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
                " WHERE id = ?",
                (error, retry_at, item_id),
            )
            if not permanent:
                return
            for decision_id in self._decisions_of(db, [item_id]):
                failed = db.execute(
                    "UPDATE decisions SET outcome = 'failed'"
                    f" WHERE id = ? AND action IN ({_marks(NOTIFY_ACTIONS)})"
                    " AND outcome = 'queued'",
                    (decision_id, *NOTIFY_ACTIONS),
                ).rowcount
                if failed:
                    self._decisions_changed()

    # -- threads ----------------------------------------------------------------------------

    def thread(self, notifier: str, channel: str, target_id: str) -> str | None:
        """The message id (Slack ``ts``) that started this target's thread, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT ts FROM threads WHERE notifier = ? AND channel = ? AND target_id = ?",
                (notifier, channel, target_id),
            ).fetchone()
        return str(row[0]) if row else None

    def set_thread(self, notifier: str, channel: str, target_id: str, ts: str, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO threads (notifier, channel, target_id, ts, started_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (notifier, channel, target_id, ts, now),
            )

    def pending_count(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
        return int(row[0])
