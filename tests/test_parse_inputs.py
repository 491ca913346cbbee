"""``sentinel parse`` on the inputs people pipe into it: pipes, FIFOs, ``/dev/stdin``, gzip on
stdin, a gzip cut short, a mix of good and bad sources, and input that is not a log at all
(one huge line, a run of NULs) which must stay bounded in memory.

Every run is a real ``sentinel`` process; the memory figures are its own peak RSS, read
with ``wait4``, under an address-space limit so that a regression cannot take the host.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

DATA = Path(__file__).parent / "data" / "oom-logs"
STORY = DATA / "000-aws-5.11-docker-global-oom-below-limit-syslog.log"  # one kill: 116935
TWO = DATA / "011-gentoo-4.8-docker-two-memcg-kills-message-only.log"  # kills 1381, 1667
SENTINEL = [sys.executable, "-c", "import sys; from sentinel.cli import main; sys.exit(main())"]
KILL = (
    b"Sep 30 13:00:20 web-1 kernel: [ 9.5] Memory cgroup out of memory: Killed process 77 "
    b"(leaker) total-vm:1024kB, anon-rss:900kB, file-rss:4kB, shmem-rss:0kB, UID:0 "
    b"pgtables:12kB oom_score_adj:0\n"
)
MIB = 1 << 20
ADDRESS_SPACE = 512 * MIB
"""The parse process's address-space limit: a regression fails, the host stays up."""
TIMEOUT = 60


def parse(
    *args: str, stdin: bytes | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*prefix, *SENTINEL, "parse", *args, "--format", "json"],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def pids(out: str) -> list[object]:
    return [json.loads(line)["pid"] for line in out.splitlines() if line.strip()]


def no_traceback(err: str) -> None:
    assert "Traceback" not in err
    assert all(line.startswith("sentinel: ") for line in err.splitlines()), err


def incompressible_noise(size: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    lines = []
    total = 0
    while total < size:
        line = f"Sep 30 13:01:00 web-1 app[12]: {rng.randbytes(48).hex()}\n".encode()
        lines.append(line)
        total += len(line)
    return b"".join(lines)


# -- pipes, /dev/stdin, FIFOs ------------------------------------------------------------


@pytest.mark.parametrize("source", ["-", "/dev/stdin"])
def test_gzip_on_stdin_is_gunzipped(source: str) -> None:
    result = parse(source, stdin=gzip.compress(STORY.read_bytes() + TWO.read_bytes()))
    no_traceback(result.stderr)
    assert (result.returncode, pids(result.stdout)) == (0, [116935, 1381, 1667])


def test_dev_stdin_on_a_pipe_loses_no_byte() -> None:
    """The kill line is the first: a sniff that read two bytes and reopened the pipe
    would give it as ``p 30 13:00:20 ...``, without its host."""
    result = parse("/dev/stdin", stdin=KILL)
    no_traceback(result.stderr)
    assert result.returncode == 0
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert (record["pid"], record["host"], record["log_time"]) == (77, "web-1", "Sep 30 13:00:20")


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_fifo_fed_by_a_thread(tmp_path: Path, compress: bool) -> None:
    fifo = tmp_path / "kern.fifo"
    os.mkfifo(fifo)
    data = STORY.read_bytes() + incompressible_noise(300_000) + TWO.read_bytes()
    payload = gzip.compress(data) if compress else data
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with fifo.open("wb") as f:  # blocks until sentinel opens it for reading
                for i in range(0, len(payload), 4096):
                    f.write(payload[i : i + 4096])
                    f.flush()
        except OSError as e:  # sentinel closed its end early: the test says so below
            errors.append(e)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        result = parse(str(fifo))
    finally:
        # if sentinel never opened the FIFO, let the writer's open return
        unblock = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        thread.join(timeout=TIMEOUT)
        os.close(unblock)
    no_traceback(result.stderr)
    assert errors == []
    assert (result.returncode, pids(result.stdout)) == (0, [116935, 1381, 1667])


# -- gzip cut short, bad sources -----------------------------------------------------------


def truncated_gzip() -> bytes:
    """STORY, 300 kB of noise that gzip cannot shrink, TWO; cut in the middle of the noise."""
    whole = gzip.compress(STORY.read_bytes() + incompressible_noise(300_000) + TWO.read_bytes())
    return whole[: len(whole) // 2]


def test_truncated_gzip_file_yields_the_records_before_the_cut(tmp_path: Path) -> None:
    cut = tmp_path / "kern.log.2.gz"
    cut.write_bytes(truncated_gzip())
    result = parse(str(cut), str(TWO))
    no_traceback(result.stderr)
    assert pids(result.stdout) == [116935, 1381, 1667]  # the cut file's first, then TWO
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert str(cut) in line
    assert "cut short" in line


def test_truncated_gzip_on_stdin_yields_the_records_before_the_cut() -> None:
    result = parse("-", stdin=truncated_gzip())
    no_traceback(result.stderr)
    assert (result.returncode, pids(result.stdout)) == (2, [116935])
    (line,) = result.stderr.splitlines()
    assert "standard input" in line
    assert "cut short" in line


def test_bad_sources_do_not_stop_the_good_ones(tmp_path: Path) -> None:
    missing = tmp_path / "missing.log"
    corrupt = tmp_path / "corrupt.log.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 64)
    empty_dir = tmp_path / "logs"
    empty_dir.mkdir()
    result = parse(str(missing), str(STORY), str(empty_dir), str(corrupt), str(TWO))
    no_traceback(result.stderr)
    assert pids(result.stdout) == [116935, 1381, 1667]
    assert result.returncode == 2
    errors = result.stderr.splitlines()
    assert len(errors) == 3
    assert str(missing) in errors[0]
    assert "No such file" in errors[0]
    assert str(empty_dir) in errors[1]
    assert "directory" in errors[1]
    assert str(corrupt) in errors[2]
    assert "corrupt gzip" in errors[2]


def _without_dac_override() -> tuple[str, ...]:
    """Root reads any file: drop the two capabilities that let it, for the child only."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root without setpriv(1): cannot be denied a file")
    return (setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--")


def test_permission_denied_is_named_and_the_others_are_read(tmp_path: Path) -> None:
    locked = tmp_path / "kern.log"
    shutil.copy(STORY, locked)
    locked.chmod(0)
    result = parse(str(locked), str(TWO), prefix=_without_dac_override())
    no_traceback(result.stderr)
    assert (result.returncode, pids(result.stdout)) == (2, [1381, 1667])
    (line,) = result.stderr.splitlines()
    assert str(locked) in line
    assert "Permission denied" in line


def _read_pids(proc: subprocess.Popen[bytes], n: int) -> list[int]:
    """The next ``n`` records' pids from a running ``parse --follow`` (a JSON line each)."""
    assert proc.stdout is not None
    found: list[int] = []
    timer = threading.Timer(TIMEOUT, proc.kill)  # a hang ends the process, and the read
    timer.start()
    try:
        while len(found) < n:
            line = proc.stdout.readline()
            if not line:
                break
            found.append(json.loads(line)["pid"])
    finally:
        timer.cancel()
    return found


def test_follow_goes_on_with_the_good_sources(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_bytes(KILL)
    missing = tmp_path / "missing.log"
    proc = subprocess.Popen(
        [*SENTINEL, "parse", "--follow", str(missing), str(log), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert _read_pids(proc, 1) == [77]
        with log.open("ab") as f:
            f.write(KILL.replace(b"process 77", b"process 78"))
        assert _read_pids(proc, 1) == [78]
        assert proc.poll() is None  # still following the good one
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=TIMEOUT)
    (line,) = err.decode().splitlines()
    assert str(missing) in line
    assert "No such file" in line


# -- input that is not a log: bounded memory --------------------------------------------


def run_measured(feed: Callable[[IO[bytes]], None]) -> tuple[int, str, str, int]:
    """Exit code, stdout, stderr and peak RSS (bytes) of ``parse -`` fed by ``feed``."""
    proc = subprocess.Popen(
        [*SENTINEL, "parse", "-", "--format", "json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # before it is given a byte: what it holds then is its start-up, far below the limit
    resource.prlimit(proc.pid, resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    stdin = proc.stdin

    def write() -> None:
        try:
            feed(stdin)
        except BrokenPipeError:
            pass  # sentinel died: its exit code says why
        finally:
            stdin.close()

    writer = threading.Thread(target=write, daemon=True)
    timer = threading.Timer(TIMEOUT, proc.kill)
    writer.start()
    timer.start()
    try:
        out = proc.stdout.read().decode()
        err = proc.stderr.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    writer.join(timeout=TIMEOUT)
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, out, err, usage.ru_maxrss * 1024


INPUT = 16 * MIB


def kill_only(f: IO[bytes]) -> None:
    f.write(KILL)


def long_line(f: IO[bytes]) -> None:
    """16 MiB on one line, then a kill on the next."""
    block = b"a" * MIB
    for _ in range(INPUT // MIB):
        f.write(block)
    f.write(b"\n" + KILL)


def nul_run(f: IO[bytes]) -> None:
    """16 MiB of NULs and a kill right after them, as a syslog file holds after a crash."""
    block = bytes(MIB)
    for _ in range(INPUT // MIB):
        f.write(block)
    f.write(KILL)


JUNK = {"long line": long_line, "NUL run": nul_run}


@pytest.mark.parametrize("kind", sorted(JUNK))
def test_junk_on_stdin_stays_small_and_the_kill_after_it_is_found(kind: str) -> None:
    code, out, err, base_rss = run_measured(kill_only)
    assert (code, pids(out), err) == (0, [77], "")
    code, out, err, rss = run_measured(JUNK[kind])
    no_traceback(err)
    assert (code, pids(out)) == (0, [77])
    # the junk is read in chunks and not kept: the peak grows by far less than the input
    assert rss - base_rss < INPUT // 4, f"peak RSS {rss >> 10} KiB, {base_rss >> 10} without"
    if kind == "long line":
        (line,) = err.splitlines()
        assert "standard input: 1 line longer than 64 KiB" in line
        assert f"dropped {INPUT - (64 << 10)} bytes" in line
    else:
        assert err == ""
