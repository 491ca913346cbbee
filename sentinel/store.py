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
  when the receiver accepted them; a restart or an outage loses none.
- ``threads``: the Slack thread of each target, per notifier and channel
  (``thread_per_target``): a message id, not a secret.

The database is opened with ``synchronous=FULL`` on WAL: a record acknowledged by a
method here survives a power cut.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentinel.model import KillRecord

SCHEMA_VERSION = 1
_SCHEMA = """
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


class StoreError(Exception):
    """The state file cannot be opened or is not sentinel's (the message says which)."""


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


def kill_key(record: KillRecord, boot_id: str | None) -> str:
    """Identity of one kill: kmsg sequence in its boot, else host + stamp + pid."""
    if record.kmsg_seq is not None and boot_id:
        return f"kmsg:{boot_id}:{record.kmsg_seq}:{record.pid}"
    stamp = record.time or record.log_time or record.kernel_timestamp
    return f"log:{record.host or ''}:{stamp}:{record.pid}:{record.comm or ''}"


class Store:
    """The state database. Safe to share between threads (one connection, one lock)."""

    def __init__(self, path: Path | str, *, samples_per_target: int = 4096) -> None:
        self.path = Path(path)
        self.samples_per_target = samples_per_target
        self._lock = threading.RLock()
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot use state file {self.path}: {e}") from e
        except OSError as e:
            raise StoreError(f"cannot create state file {self.path}: {e.strerror}") from e

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
            )
        elif int(row[0]) > SCHEMA_VERSION:
            raise StoreError(
                f"state file {self.path} has schema {row[0]}, newer than this sentinel's"
                f" ({SCHEMA_VERSION}): upgrade sentinel or use another state file"
            )

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
    ) -> int | None:
        """Store a kill once; returns its id, or None when it was stored before.

        With ``source``, the source's position moves to the record's kmsg sequence in the
        same transaction.
        """
        key = kill_key(record, boot_id)
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO kills"
                " (dedupe_key, recorded_at, pid, target_id, target_name, record, target)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    now,
                    record.pid,
                    target_id,
                    target_name,
                    json.dumps(record.to_dict()),
                    json.dumps(dict(target)) if target is not None else None,
                ),
            )
            if source is not None and boot_id and record.kmsg_seq is not None:
                self._set_position(db, source, boot_id, record.kmsg_seq)
            return cur.lastrowid if cur.rowcount else None

    def kills(self, *, since: float | None = None) -> list[StoredKill]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, recorded_at, record, target_id, target_name, target FROM kills"
                " WHERE recorded_at >= ? ORDER BY id",
                (since if since is not None else float("-inf"),),
            ).fetchall()
        return [
            StoredKill(
                id=r[0],
                recorded_at=r[1],
                record=KillRecord.from_dict(json.loads(r[2])),
                target_id=r[3],
                target_name=r[4],
                target=json.loads(r[5]) if r[5] else None,
            )
            for r in rows
        ]

    def position(self, source: str, boot_id: str) -> int | None:
        """The last sequence number read from ``source`` in this boot, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT boot_id, seq FROM positions WHERE source = ?", (source,)
            ).fetchone()
        if row is None or row[0] != boot_id:
            return None
        return int(row[1])

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
            assert cur.lastrowid is not None
            return cur.lastrowid

    def set_outcome(self, decision_id: int, outcome: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE decisions SET outcome = ? WHERE id = ?", (outcome, decision_id))

    def decisions(
        self,
        *,
        since: float | None = None,
        rule: str | None = None,
        target_id: str | None = None,
    ) -> list[StoredDecision]:
        sql = (
            "SELECT id, at, rule, target_id, target_name, action, dry_run, outcome, evidence"
            " FROM decisions WHERE at >= ?"
        )
        args: list[Any] = [since if since is not None else float("-inf")]
        if rule is not None:
            sql += " AND rule = ?"
            args.append(rule)
        if target_id is not None:
            sql += " AND target_id = ?"
            args.append(target_id)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [
            StoredDecision(
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
            for r in rows
        ]

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
        with self._tx() as db:
            db.execute("UPDATE outbox SET sent_at = ? WHERE id = ?", (now, item_id))

    def mark_sent_all(self, item_ids: list[int], now: float) -> None:
        """Several items accepted as one message (a storm): all at once, or none."""
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET sent_at = ? WHERE id = ?", [(now, i) for i in item_ids]
            )

    def sent_since(self, notifier: str, since: float) -> list[OutboxItem]:
        """Items of ``notifier`` accepted at ``since`` or later, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox"
                " WHERE notifier = ? AND sent_at IS NOT NULL AND sent_at >= ? ORDER BY id",
                (notifier, since),
            ).fetchall()
        return [_outbox_item(r) for r in rows]

    def mark_failed(self, item_id: int, *, error: str, retry_at: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
                " WHERE id = ?",
                (error, retry_at, item_id),
            )

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
