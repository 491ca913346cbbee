"""The SQLite state on real files: once-only kills, positions, bounded samples, outbox."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel.model import KillRecord
from sentinel.policy.state import Lookback, RuleLookback
from sentinel.store import Store, StoreError

BOOT = "0b7c2c9e-2f36-4a53-9f8e-1d2a3b4c5d6e"


def _kill(pid: int, seq: int | None = None) -> KillRecord:
    return KillRecord(pid=pid, comm="leaker", kmsg_seq=seq, global_=False, anon_rss_kb=9000)


def test_a_kill_is_stored_once_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    first = store.add_kill(_kill(10, 500), now=1.0, boot_id=BOOT, source="kmsg")
    assert first is not None
    assert store.add_kill(_kill(10, 500), now=2.0, boot_id=BOOT, source="kmsg") is None
    store.close()
    again = Store(path)
    assert again.add_kill(_kill(10, 500), now=3.0, boot_id=BOOT) is None
    (stored,) = again.kills()
    assert stored.record == _kill(10, 500)
    assert stored.recorded_at == 1.0
    assert again.position("kmsg", BOOT) == 500
    assert again.position("kmsg", "another-boot") is None


def test_position_never_moves_back_in_one_boot(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.set_position("kmsg", BOOT, 90)
    store.set_position("kmsg", BOOT, 80)
    assert store.position("kmsg", BOOT) == 90
    store.set_position("kmsg", "new-boot", 3)
    assert store.position("kmsg", "new-boot") == 3


def test_log_file_kills_are_keyed_by_host_stamp_and_pid(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    a = KillRecord(pid=1, comm="x", host="h1", log_time="Sep 30 13:00:20")
    b = KillRecord(pid=1, comm="x", host="h2", log_time="Sep 30 13:00:20")
    assert store.add_kill(a, now=1) is not None
    assert store.add_kill(b, now=1) is not None
    assert store.add_kill(a, now=2) is None
    assert [k.record.host for k in store.kills()] == ["h1", "h2"]


def test_sample_history_is_bounded_per_target(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db", samples_per_target=5)
    store.add_samples([("a", float(t), t * 10, 100) for t in range(12)])
    store.add_samples([("b", 1.0, 7, None)])
    assert [t for t, _, _ in store.samples("a")] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert store.samples("b") == [(1.0, 7, None)]


def test_decisions_with_evidence(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    did = store.add_decision(
        at=5.0,
        rule="restart-leaking-scheduler",
        target_id="c1",
        target_name="scheduler-1",
        action="restart",
        dry_run=False,
        outcome="pending",
        evidence={"eta_seconds": 240.5, "constraint": "parent"},
    )
    store.set_outcome(did, "done")
    (d,) = store.decisions(rule="restart-leaking-scheduler", target_id="c1")
    assert (d.action, d.outcome, d.evidence["eta_seconds"]) == ("restart", "done", 240.5)
    assert store.decisions(since=6.0) == []


def test_outbox_keeps_what_is_not_accepted(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    item = store.enqueue(dedupe_key="kill:1", notifier="slack", payload={"text": "x"}, now=1.0)
    assert item is not None
    assert store.enqueue(dedupe_key="kill:1", notifier="slack", payload={"t": 1}, now=2) is None
    (due,) = store.due(1.0)
    store.mark_failed(due.id, error="HTTP 503", retry_at=10.0)
    assert store.due(5.0) == []
    store.close()
    reopened = Store(path)
    (due,) = reopened.due(10.0)
    assert (due.attempts, due.last_error, due.payload) == (1, "HTTP 503", {"text": "x"})
    reopened.mark_sent(due.id, 11.0)
    assert reopened.due(100.0) == []
    assert reopened.pending_count() == 0


WRITER = """
import os, sys
from sentinel.store import Store
from sentinel.model import KillRecord
s = Store(sys.argv[1])
for i in range(int(sys.argv[2])):
    s.add_kill(KillRecord(pid=i, kmsg_seq=i), now=i, boot_id='b', source='kmsg')
    os.write(1, b"%d\\n" % i)  # the acknowledgement: add_kill returned
"""


def test_every_connection_is_synchronous_full_on_wal(tmp_path: Path) -> None:
    """What the module promises (a record acknowledged survives a power cut) needs both on
    the live connection, on a new state and on one opened again."""
    path = tmp_path / "s.db"
    for store in (Store(path), Store(path)):
        db = store._db  # the connection the store writes through
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL (OFF 0, NORMAL 1)
        store.close()


def test_a_killed_writer_loses_no_acknowledged_record(tmp_path: Path) -> None:
    """SIGKILL right after an acknowledgement: every acknowledged row is there, with its
    position. (A process kill keeps the page cache, so this holds even with
    ``synchronous=OFF``; the next test is the one that tells FULL from OFF.)"""
    path = tmp_path / "s.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "100000"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acknowledged = -1
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= 200:
            proc.kill()
            break
    proc.wait()
    proc.stdout.close()
    store = Store(path)
    pids = [k.record.pid for k in store.kills()]
    assert pids[: acknowledged + 1] == list(range(acknowledged + 1))
    assert store.position("kmsg", "b") == pids[-1]


def _traced() -> bool:
    """This process is traced already (the markers test runs the suite under strace): a
    process has one tracer, so strace cannot attach here."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return line.split()[1] != "0"
    return False


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
@pytest.mark.skipif(_traced(), reason="traced already: strace cannot attach")
def test_a_record_is_on_disk_before_it_is_acknowledged(tmp_path: Path) -> None:
    """The durability contract, seen from the system calls: between two acknowledgements
    the writer syncs the WAL to disk (``fsync``/``fdatasync``). With ``synchronous=OFF``
    (or NORMAL, which syncs WAL only at checkpoints) there is no such call, and a power
    cut would lose acknowledged kills."""
    path = tmp_path / "s.db"
    trace = tmp_path / "trace"
    subprocess.run(
        [
            "strace", "-f", "-qq", "-y", "-e", "trace=write,fsync,fdatasync", "-e", "signal=none",
            "-o", str(trace), sys.executable, "-c", WRITER, str(path), "20",
        ],
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=60,
    )  # fmt: skip
    wal = f"{path}-wal>"
    acks = 0
    synced = False
    for line in trace.read_text().splitlines():
        call = line.split(None, 1)[1] if " " in line else line
        if call.startswith(("fsync(", "fdatasync(")) and wal in call:
            synced = True
        elif re.match(r'write\(1<[^>]*>, "\d+\\n"', call):
            assert synced, f"acknowledgement {acks} with no WAL sync since the last one"
            acks += 1
            synced = False
    assert acks == 20, trace.read_text()[-2000:]


def test_a_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"hello, this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not-a-db"):
        Store(bad)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def _restart(store: Store, at: float, outcome: str = "done") -> int:
    return store.add_decision(
        at=at, rule="r", target_id="c1", action="restart", dry_run=False, outcome=outcome,
        evidence={},
    )  # fmt: skip


def test_history_is_reused_until_a_decision_changes_or_leaves_its_window(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    window = Lookback(rules=(RuleLookback("r", cooldown_s=0.0, budget_s=100.0),))
    did = _restart(store, 1000.0)
    first = store.history(window, 1050.0, outcomes={"done"})
    assert [r.at for r in first.records] == [1000.0]
    assert store.history(window, 1060.0, outcomes={"done"}) is first  # nothing changed
    store.set_outcome(did, "dropped")
    assert store.history(window, 1060.0, outcomes={"done"}).records == ()
    store.set_outcome(did, "done")
    assert len(store.history(window, 1100.0, outcomes={"done"}).records) == 1  # at + per
    assert store.history(window, 1100.5, outcomes={"done"}).records == ()  # left its window
    assert len(store.history(window, 1050.0, outcomes={"done"}).records) == 1  # clock back
    _restart(store, 1090.0)
    assert len(store.history(window, 1095.0, outcomes={"done"}).records) == 2


def test_history_sees_a_decision_written_by_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    window = Lookback(rules=(RuleLookback("r", cooldown_s=0.0, budget_s=100.0),))
    assert store.history(window, 1050.0, outcomes={"done"}).records == ()
    other = Store(path)
    _restart(other, 1000.0)
    other.close()
    assert len(store.history(window, 1050.0, outcomes={"done"}).records) == 1
