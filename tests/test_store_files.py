"""The state's files on a real file system: modes (0700 directory, 0600 files, tightened
when older), a read-only open that creates and changes nothing, one-line errors for what
is not a state, and a schema v1 state migrated with its rows."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.errors import SentinelError
from sentinel.model import KillRecord
from sentinel.policy.state import Lookback, RuleLookback
from sentinel.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError

BOOT = "5d1c0c4e-0000-4000-8000-000000000001"


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common 022: a file or directory made with default modes would be 0644 / 0755,
    so a 0600 / 0700 seen here is sentinel's doing."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def fill(store: Store) -> None:
    store.add_kill(KillRecord(pid=7, comm="leaker", kmsg_seq=3), now=10.0, boot_id=BOOT)
    store.add_samples([("c1", 11.0, 100, 200)])
    store.add_decision(
        at=12.0,
        rule="r",
        target_id="c1",
        action="restart",
        dry_run=False,
        outcome="done",
        evidence={"eta_seconds": 60},
    )
    store.enqueue(dedupe_key="decision:1:log", notifier="log", payload={"x": 1}, now=12.0)


class Files:
    """Every file of a directory tree: name -> (mode, size, mtime_ns, sha256)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def snapshot(self, *, skip: frozenset[str] = frozenset()) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for p in sorted(self.root.rglob("*")):
            st = p.stat()
            digest = (
                int(hashlib.sha256(p.read_bytes()).hexdigest()[:15], 16)
                if p.is_file() and p.name not in skip
                else 0
            )
            mtime = 0 if p.name in skip else st.st_mtime_ns
            out[str(p.relative_to(self.root))] = (st.st_mode, st.st_size, mtime, digest)
        st = self.root.stat()
        out["."] = (st.st_mode, 0, st.st_mtime_ns, 0)
        return out


# -- modes -------------------------------------------------------------------------------------


def test_a_new_state_directory_is_0700_and_its_files_0600(tmp_path: Path) -> None:
    path = tmp_path / "var" / "sentinel" / "state.db"
    store = Store(path)
    fill(store)  # the WAL and shared-memory files exist while the store is open
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    assert wal.exists()
    assert shm.exists()
    assert (mode(tmp_path / "var"), mode(path.parent)) == (0o700, 0o700)
    assert (mode(path), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
    store.close()
    assert mode(path) == 0o600


def test_an_existing_directory_is_left_as_it_is(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    Store(tmp_path / "state.db").close()
    assert mode(tmp_path) == 0o755
    assert mode(tmp_path / "state.db") == 0o600


def test_an_existing_0644_state_is_tightened_on_open(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = Store(path)
    fill(old)
    old.close()
    path.chmod(0o644)
    # An older sentinel still running: its WAL and shared-memory files take the 0644.
    other = sqlite3.connect(path)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("INSERT INTO meta (key, value) VALUES ('other', 'x')")
    other.commit()
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    try:
        assert (mode(path), mode(wal), mode(shm)) == (0o644, 0o644, 0o644)
        store = Store(path)
        assert (mode(path), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
        assert store.counts()["decisions"] == 1
        store.close()
    finally:
        other.close()


# -- read only ----------------------------------------------------------------------------------


def test_a_read_only_open_creates_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.db"
    store = Store(path)
    fill(store)
    store.close()  # a clean close: no -wal or -shm left
    files = Files(tmp_path)
    before = files.snapshot()
    assert sorted(before) == [".", "state", "state/state.db"]

    reader = Store.open_read_only(path)
    assert [k.record.pid for k in reader.kills()] == [7]
    assert [d.outcome for d in reader.decisions()] == ["done"]
    assert reader.samples("c1") == [(11.0, 100, 200)]
    lookback = Lookback(rules=(RuleLookback("r", cooldown_s=60.0, budget_s=3600.0),))
    assert len(reader.history(lookback, 20.0, outcomes={"done"}).records) == 1
    assert reader.counts()["outbox"] == 1
    with pytest.raises(sqlite3.OperationalError):
        reader.add_samples([("c2", 1.0, 1, None)])
    reader.close()

    assert files.snapshot() == before


def test_a_read_only_open_beside_the_running_daemon_adds_no_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    daemon = Store(path)
    fill(daemon)
    files = Files(tmp_path)
    # The shared-memory file is the readers' and writer's meeting place: readers mark it.
    before = files.snapshot(skip=frozenset({"state.db-shm"}))
    reader = Store.open_read_only(path)
    assert [d.rule for d in reader.decisions()] == ["r"]  # through the WAL
    daemon.add_decision(
        at=13.0, rule="r2", target_id="c1", action="notify", dry_run=False, outcome="queued",
        evidence={},
    )  # fmt: skip
    assert [d.rule for d in reader.decisions()] == ["r", "r2"]
    reader.close()
    after = files.snapshot(skip=frozenset({"state.db-shm"}))
    assert sorted(after) == sorted(before)
    assert after["state.db"] == before["state.db"]  # the reader wrote nothing
    daemon.close()


def test_a_read_only_open_of_a_missing_state_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "state.db"
    with pytest.raises(StoreError, match="does not exist") as e:
        Store.open_read_only(path)
    assert str(path) in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_open_leaves_an_old_schema_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    v1_state(path)
    before = Files(tmp_path).snapshot()
    reader = Store.open_read_only(path)
    assert [d.outcome for d in reader.decisions()] == ["done", "queued"]
    reader.close()
    assert Files(tmp_path).snapshot() == before
    assert schema_version(path) == 1


# -- what is not a state ----------------------------------------------------------------------


def a_directory(tmp_path: Path) -> Path:
    (tmp_path / "dir").mkdir()
    return tmp_path / "dir"


def dev_null(tmp_path: Path) -> Path:
    return Path("/dev/null")


def a_text_file(tmp_path: Path) -> Path:
    p = tmp_path / "notes.txt"
    p.write_text("hello, this is not SQLite\n" * 200)
    return p


def a_foreign_database(tmp_path: Path) -> Path:
    p = tmp_path / "other.db"
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.commit()
    db.close()
    return p


def truncated_in_a_page(tmp_path: Path) -> Path:
    p = tmp_path / "cut.db"
    full_state(p)
    os.truncate(p, p.stat().st_size - 1000)
    return p


def truncated_at_a_page(tmp_path: Path) -> Path:
    p = tmp_path / "half.db"
    full_state(p)
    os.truncate(p, p.stat().st_size // 2 // 4096 * 4096)
    return p


def truncated_header(tmp_path: Path) -> Path:
    p = tmp_path / "head.db"
    full_state(p)
    os.truncate(p, 60)
    return p


def full_state(path: Path) -> None:
    store = Store(path)
    for i in range(200):
        store.add_kill(KillRecord(pid=i, comm="x" * 300, kmsg_seq=i), now=i, boot_id=BOOT)
    store.close()
    assert path.stat().st_size > 20 * 4096


NOT_A_STATE = [
    a_directory,
    dev_null,
    a_text_file,
    a_foreign_database,
    truncated_in_a_page,
    truncated_at_a_page,
    truncated_header,
]


@pytest.mark.parametrize("make", NOT_A_STATE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("read_only", [False, True], ids=["open", "read-only"])
def test_what_is_not_a_state_is_one_line_naming_the_path(
    tmp_path: Path, make: object, read_only: bool
) -> None:
    assert callable(make)
    path: Path = make(tmp_path)
    before = Files(tmp_path).snapshot()

    def use() -> None:
        if read_only:
            Store.open_read_only(path)
        else:
            store = Store(path)
            store.kills()  # what a damaged file would fail on, had the open let it by
            store.close()

    with pytest.raises(StoreError) as e:
        use()
    message = str(e.value)
    assert isinstance(e.value, SentinelError)
    assert "\n" not in message
    assert message.startswith(f"state file {path}: ")
    assert len(message) < 300
    after = Files(tmp_path).snapshot()
    if not read_only:  # SQLite may have made and removed a WAL file while finding out
        del before["."], after["."]
    assert after == before  # refused without changing a file or leaving one behind


def test_an_empty_file_is_a_new_state_but_not_a_readable_one(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()
    with pytest.raises(StoreError, match="empty, not a sentinel state"):
        Store.open_read_only(path)
    store = Store(path)
    assert store.counts()["kills"] == 0
    store.close()


# -- migrations ---------------------------------------------------------------------------------


def schema_version(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    finally:
        db.close()


def v1_state(path: Path) -> None:
    """A state as sentinel wrote it at schema version 1, with a row in every table."""
    (number, _, script) = MIGRATIONS[0]
    assert number == 1
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(script)
    db.executescript(
        """
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO positions VALUES ('kmsg', 'boot-1', 41);
        INSERT INTO kills (dedupe_key, recorded_at, pid, target_id, target_name, record, target)
            VALUES ('kmsg:boot-1:41:7', 100.0, 7, 'c1', 'app', '{"pid": 7, "comm": "java"}',
                    '{"id": "c1"}');
        INSERT INTO samples VALUES ('c1', 100.0, 5000, 8000);
        INSERT INTO decisions (at, rule, target_id, target_name, action, dry_run, outcome,
                               evidence)
            VALUES (90.0, 'restart-leak', 'c1', 'app', 'restart', 0, 'done', '{"eta": 5}'),
                   (95.0, 'tell', 'c1', 'app', 'notify', 0, 'queued', '{}');
        INSERT INTO outbox (dedupe_key, notifier, created_at, payload, next_attempt_at)
            VALUES ('decision:2:log', 'log', 95.0, '{"kind": "action"}', 95.0);
        INSERT INTO threads VALUES ('slack', 'C1', 'c1', '1700000000.000100', 90.0);
        """
    )
    db.close()


def test_a_v1_state_migrates_to_the_current_schema_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    v1_state(path)
    assert SCHEMA_VERSION > 1
    store = Store(path)
    assert schema_version(path) == SCHEMA_VERSION
    assert store.counts() == {"kills": 1, "samples": 1, "decisions": 2, "outbox": 1, "threads": 1}
    (kill,) = store.kills()
    assert (kill.record.pid, kill.record.comm, kill.target_name) == (7, "java", "app")
    assert store.position("kmsg", "boot-1") == 41
    assert store.samples("c1") == [(100.0, 5000, 8000)]
    assert store.thread("slack", "C1", "c1") == "1700000000.000100"
    assert [(d.rule, d.outcome, dict(d.evidence)) for d in store.decisions()] == [
        ("restart-leak", "done", {"eta": 5}),
        ("tell", "queued", {}),
    ]
    (due,) = store.due(100.0)
    assert due.dedupe_key == "decision:2:log"
    # the new indexes answer the history; the v1 one is gone
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    db.close()
    assert {"decisions_rule_at", "decisions_rule_action_at", "decisions_action_at"} <= indexes
    assert "decisions_rule_target" not in indexes
    lookback = Lookback(rules=(RuleLookback("restart-leak", cooldown_s=0.0, budget_s=86400.0),))
    (record,) = store.history(lookback, 1000.0, outcomes={"done"}).records
    assert (record.rule, record.action, record.at) == ("restart-leak", "restart", 90.0)
    store.close()
    # and again: nothing left to migrate, nothing changed
    again = Store(path)
    assert again.counts()["decisions"] == 2
    again.close()


def test_a_copy_of_a_migrated_state_opens_read_only(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    v1_state(path)
    Store(path).close()
    copy = tmp_path / "copy.db"
    shutil.copy(path, copy)
    reader = Store.open_read_only(copy)
    assert reader.counts()["kills"] == 1
    reader.close()
    assert schema_version(copy) == SCHEMA_VERSION
