"""``sentinel parse`` as a user runs it: files, gzip, stdin, formats, exit codes, follow."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sentinel.cli import main

DATA = Path(__file__).parent / "data" / "oom-logs"
SENTINEL = str(Path(sys.executable).parent / "sentinel")
STORY = DATA / "000-aws-5.11-docker-global-oom-below-limit-syslog.log"
KILL = (
    "{stamp} web-1 kernel: [ 9.5] Memory cgroup out of memory: Killed process {pid} (leaker) "
    "total-vm:1024kB, anon-rss:900kB, file-rss:4kB, shmem-rss:0kB, UID:0 pgtables:12kB "
    "oom_score_adj:0\n"
)


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_output_of_the_story(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", str(STORY), "--format", "json"]) == 0
    (record,) = _json_lines(capsys.readouterr().out)
    assert record["pid"] == 116935
    assert record["global"] is True
    assert record["container_id"] == (
        "6141f63fdc9f5bca4ad9c5a98e50a8ad7588948f281668a09bb4f1309af7b059"
    )
    assert record["host"] == "localhost"


def test_table_output_names_victim_container_and_scope(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["parse", str(STORY), "--format", "table"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["TIME", "HOST", "VICTIM"]
    assert "python [116935]" in row
    assert "1505.8 MiB" in row
    assert "docker 6141f63fdc9f" in row
    assert "host-wide" in row


def test_several_files_gzip_and_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gz = tmp_path / "kern.log.2.gz"
    with gzip.open(gz, "wb") as f:
        f.write(STORY.read_bytes())
    two = DATA / "011-gentoo-4.8-docker-two-memcg-kills-message-only.log"
    assert main(["parse", str(gz), str(two), "--format", "json"]) == 0
    assert [r["pid"] for r in _json_lines(capsys.readouterr().out)] == [116935, 1381, 1667]

    result = subprocess.run(
        [SENTINEL, "parse", "-", "--format", "json"],
        input=STORY.read_bytes(),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0
    assert [r["pid"] for r in _json_lines(result.stdout.decode())] == [116935]


def test_exit_1_when_no_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = tmp_path / "quiet.log"
    quiet.write_text("Sep 30 13:00:20 h sshd[1]: Accepted publickey for root\n")
    assert main(["parse", str(quiet), "--format", "json"]) == 1
    assert capsys.readouterr().out == ""


def test_exit_2_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", str(tmp_path / "missing.log")]) == 2
    err = capsys.readouterr().err
    assert "missing.log" in err
    assert "No such file" in err
    assert main(["parse", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_year_fills_time_for_syslog(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", str(STORY), "--format", "json", "--year", "2021"]) == 0
    (record,) = _json_lines(capsys.readouterr().out)
    assert record["time"] == "2021-09-30T13:00:20"


@pytest.mark.parametrize("year", ["0", "10000", "-1"])
def test_year_that_is_no_year_is_one_line_exit_2(
    year: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["parse", str(STORY), "--format", "json", f"--year={year}"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"sentinel: error: --year {year}: not a year (1 to 9999)\n"


def test_year_without_the_stamped_day_leaves_time_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "kern.log"
    log.write_text(KILL.format(stamp="Feb 29 13:00:20", pid=7))
    assert main(["parse", str(log), "--format", "json", "--year", "2021"]) == 0
    (record,) = _json_lines(capsys.readouterr().out)
    assert (record.get("time"), record["log_time"]) == (None, "Feb 29 13:00:20")
    assert main(["parse", str(log), "--format", "json", "--year", "2024"]) == 0
    (record,) = _json_lines(capsys.readouterr().out)
    assert record["time"] == "2024-02-29T13:00:20"


def _read_records(proc: subprocess.Popen[bytes], n: int, timeout: float = 10) -> list[int]:
    assert proc.stdout is not None
    pids: list[int] = []
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b""
    while len(pids) < n and time.monotonic() < deadline:
        chunk = proc.stdout.read()
        if chunk:
            buf += chunk
            *done, buf = buf.split(b"\n")
            pids += [json.loads(line)["pid"] for line in done if line.strip()]
        else:
            time.sleep(0.05)
    return pids


def test_follow_survives_rotation_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text(KILL.format(stamp="Sep 30 13:00:20", pid=1))
    proc = subprocess.Popen(
        [SENTINEL, "parse", str(log), "--follow", "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert _read_records(proc, 1) == [1]
        with log.open("a") as f:  # growth
            f.write(KILL.format(stamp="Sep 30 13:00:21", pid=2))
        assert _read_records(proc, 1) == [2]
        with log.open("a") as f:  # rotation: the old file gets one more line, then moves
            f.write(KILL.format(stamp="Sep 30 13:00:22", pid=3))
        log.rename(tmp_path / "kern.log.1")
        log.write_text(KILL.format(stamp="Sep 30 13:00:23", pid=4))
        assert _read_records(proc, 2) == [3, 4]
        log.write_text("")  # truncation (copytruncate), then new lines
        time.sleep(0.6)
        log.write_text(KILL.format(stamp="Sep 30 13:00:24", pid=5))
        assert _read_records(proc, 1) == [5]
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.communicate(timeout=5)


def test_follow_flushes_a_summary_only_kill_when_idle(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")
    proc = subprocess.Popen(
        [SENTINEL, "parse", str(log), "--follow", "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(0.3)
        with log.open("a") as f:
            f.write(
                "Sep 30 13:00:20 h kernel: oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),"
                "cpuset=/,mems_allowed=0,oom_memcg=/a,task_memcg=/a,task=x,pid=77,uid=0\n"
            )
        assert _read_records(proc, 1) == [77]
    finally:
        proc.terminate()
        proc.communicate(timeout=5)
