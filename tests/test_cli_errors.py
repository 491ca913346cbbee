"""No traceback, ever: every user error is exit 2 and one line naming what failed; a bug is
exit 70 with a short line (the traceback only with -v). Run in-process through
``sentinel.cli.main`` against real files and real SQLite states."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from sentinel.cli import health as health_cmd
from sentinel.cli import main
from sentinel.cli.run import check_listen
from sentinel.errors import SentinelError
from sentinel.kernel.oom import OomParser
from sentinel.model import KillRecord
from sentinel.runtime.http import HealthServer, Metrics
from sentinel.store import Store

DATA = Path(__file__).parent / "data"
STORY = DATA / "oom-logs" / "000-aws-5.11-docker-global-oom-below-limit-syslog.log"


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``sentinel ARGV`` (argparse's exits included)."""
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The single line that names the failure (argparse prints its usage before it)."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1, err
    others = [line for line in lines if line not in errors]
    assert all(line.startswith(("usage:", " ")) for line in others), err  # argparse's usage
    return errors[0]


def user_error(argv: Sequence[str], capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    code, _, err = run_cli(argv, capsys)
    assert code == 2, err
    line = one_error_line(err)
    for text in expected:
        assert text in line, line
    return line


def kill_record() -> KillRecord:
    parser = OomParser()
    records = [r for line in STORY.read_text().splitlines() for r in parser.feed(line)]
    records += parser.flush()
    assert records
    return records[0]


# --- sizes and durations ----------------------------------------------------------------


@pytest.mark.parametrize("option", ["--interval", "--window"])
@pytest.mark.parametrize("value", ["-1", "0", "0.0", "nan", "NaN", "inf", "1e400", "1e20s", "x"])
def test_top_seconds_refused(option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    user_error(["top", "--once", "--no-docker", option, value], capsys, option)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("1e400", "out of range"),
        (".inf", "not a size"),
        ("nan", "not a size"),
        ("1e20 s", "unknown size unit"),
        ("9Ei", "unknown size unit"),
        ("99999999999999999999", "at most 8 EiB"),
        ("0", "above 0"),
        ("1e999999999999", "out of range"),
        ("9" * 5000, "too long"),
    ],
)
def test_forecast_limit_that_overflows(
    value: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("t,usage_bytes\n0,1\n")
    line = user_error(["forecast", str(trace), "--limit", value], capsys, "--limit", says)
    assert len(line) < 300  # a huge value is cut in the message


@pytest.mark.parametrize(
    "row", ["0,1e400", "0,inf", "0,nan", "0,-1", "0,1e30", "nan,1", "0,1,1e30", "0,1,0"]
)
def test_forecast_trace_values_that_overflow(
    row: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.csv"
    header = "t,usage_bytes,limit_bytes" if row.count(",") == 2 else "t,usage_bytes"
    trace.write_text(f"{header}\n{row}\n")
    user_error(["forecast", str(trace), "--limit", "1Gi"], capsys, f"{trace}:2")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("garbage", "not a duration"),
        ("", "empty duration"),
        ("-5m", "not a duration"),
        ("1e400", "not a duration"),
        ("99999999999999999999d", "at most 100 years"),
        ("9" * 400 + "s", "too long"),
    ],
)
def test_events_since_garbage(
    value: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.db"
    user_error(["events", "--state", str(state), f"--since={value}"], capsys, "--since", says)
    assert not state.exists()


# --- --listen ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "listen", ["abc", "127.0.0.1", "127.0.0.1:abc", "127.0.0.1:99999", "::1:9310", "[::1", "a b:1"]
)
def test_run_listen_garbage(
    listen: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.db"
    user_error(["run", "--state", str(state), "--listen", listen], capsys, "--listen", "HOST:PORT")
    assert not state.exists()  # refused before anything started


def test_run_listen_on_a_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        state = tmp_path / "state.db"
        user_error(
            ["run", "--state", str(state), "--listen", f"127.0.0.1:{port}"],
            capsys,
            f"127.0.0.1:{port}",
            "cannot listen",
        )
    assert not state.exists()


def test_listen_ipv6_works_or_is_a_clear_error() -> None:
    try:
        check_listen("[::1]:0", "--listen")
    except SentinelError as e:
        message = str(e)
    else:
        return  # it works
    assert "IPv6" in message
    assert "127.0.0.1:0" in message  # says what to give instead
    assert "\n" not in message


def test_run_listen_ipv6_refused_before_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        check_listen("[::1]:0", "--listen")
    except SentinelError:
        pass
    else:
        pytest.skip("the HTTP endpoint listens on IPv6 here: nothing to refuse")
    state = tmp_path / "state.db"
    user_error(["run", "--state", str(state), "--listen", "[::1]:0"], capsys, "IPv6")
    assert not state.exists()


# --- the state file ----------------------------------------------------------------------


def _not_a_state(tmp_path: Path, kind: str) -> Path:
    if kind == "directory":
        return tmp_path
    if kind == "devnull":
        return Path(os.devnull)
    path = tmp_path / f"{kind}.db"
    if kind == "text":
        path.write_text("not a database\n" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 64)
    elif kind == "other-sqlite":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE songs (title TEXT)")
        db.commit()
        db.close()
    return path


KINDS = ["missing", "directory", "devnull", "text", "empty", "binary", "other-sqlite"]


@pytest.mark.parametrize("kind", KINDS)
def test_events_state_that_is_no_state(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _not_a_state(tmp_path, kind)
    before = path.read_bytes() if path.is_file() else None
    listing = sorted(tmp_path.iterdir()) if tmp_path.exists() else []
    user_error(["events", "--state", str(path)], capsys, "state file", str(path))
    assert sorted(tmp_path.iterdir()) == listing  # nothing created: no state, no -wal, -shm
    if before is not None:
        assert path.read_bytes() == before


@pytest.mark.parametrize("kind", ["directory", "devnull", "text", "binary", "other-sqlite"])
def test_run_state_that_is_no_state(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _not_a_state(tmp_path, kind)
    user_error(
        ["run", "--dry-run", "--state", str(path), "--listen", "", "--docker-url", "unix:///no"],
        capsys,
        "state file",
    )


@pytest.mark.parametrize("kind", ["directory", "devnull", "text"])
def test_events_state_from_the_policy_that_is_no_state(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _not_a_state(tmp_path, kind)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"settings:\n  state: {json.dumps(str(path))}\n")
    user_error(["events", "-c", str(policy)], capsys, "state file")


def _state_with_history(path: Path) -> KillRecord:
    record = kill_record()
    now = time.time()
    store = Store(path)
    try:
        store.add_kill(
            record,
            now=now - 60,
            target_id="c0ffee",
            target_name="web-1",
            target={"id": "c0ffee", "name": "web-1", "runtime": "docker", "image": "web:1"},
        )
        for action, notifiers, params in (
            ("notify", ["team-slack"], {"value": "team-slack"}),
            ("escalate", ["pager", "ops-hook"], {"notifiers": ["pager", "ops-hook"]}),
        ):
            store.add_decision(
                at=now - 30,
                rule="report-kills",
                target_id="c0ffee",
                target_name="web-1",
                action=action,
                dry_run=False,
                outcome="queued",
                evidence={"reason": "killed", "params": params, "notifiers": notifiers},
            )
        store.add_decision(  # as an older sentinel recorded it: no "notifiers" key
            at=now - 20,
            rule="old",
            target_id="c0ffee",
            target_name="web-1",
            action="notify",
            dry_run=True,
            outcome="dry_run",
            evidence={"reason": "killed", "params": {"value": "legacy-log"}},
        )
    finally:
        store.close()
    return record


def test_events_only_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.db"
    _state_with_history(state)
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    code, out, _ = run_cli(["events", "--state", str(state), "--format", "json"], capsys)
    assert code == 0
    assert len(out.splitlines()) == 4
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    assert after == files


def test_events_names_the_notifiers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.db"
    _state_with_history(state)
    code, out, _ = run_cli(["events", "--state", str(state), "--format", "json"], capsys)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    by_action = {(r.get("rule"), r.get("action")): r for r in rows if r["event"] != "kill"}
    assert by_action["report-kills", "notify"]["notifiers"] == ["team-slack"]
    assert by_action["report-kills", "escalate"]["notifiers"] == ["pager", "ops-hook"]
    assert by_action["old", "notify"]["notifiers"] == ["legacy-log"]
    code, out, _ = run_cli(["events", "--state", str(state), "--format", "table"], capsys)
    assert code == 0
    assert "notify via team-slack -> queued" in out
    assert "escalate via pager, ops-hook -> queued" in out


def test_events_kill_rows_render(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.db"
    record = _state_with_history(state)
    code, out, _ = run_cli(["events", "--state", str(state), "--format", "json"], capsys)
    assert code == 0
    (kill,) = [line for line in out.splitlines() if json.loads(line)["event"] == "kill"]
    row = tmp_path / "kill.json"
    row.write_text(kill + "\n")
    code, out, err = run_cli(["render", str(row)], capsys)
    assert code == 0, err
    message = json.loads(out)
    text = json.dumps(message)
    assert "web-1" in message["text"]  # the container's name, from the row
    assert record.comm is not None
    assert record.comm in text
    assert message["blocks"]


# --- render ------------------------------------------------------------------------------

MALFORMED = {
    "not-json": "not json at all",
    "empty": "",
    "blank-lines": "\n\n  \n",
    "list": "[1, 2, 3]",
    "number": "42",
    "string": '"a kill"',
    "null": "null",
    "nan": "NaN",
    "no-pid": '{"comm": "java"}',
    "pid-string": '{"pid": "12"}',
    "pid-bool": '{"pid": true}',
    "pid-float": '{"pid": 1.5}',
    "comm-int": '{"pid": 1, "comm": 5}',
    "global-string": '{"pid": 1, "global": "yes"}',
    "tasks-dict": '{"pid": 1, "tasks": {"a": 1}}',
    "tasks-of-lists": '{"pid": 1, "tasks": [[1, 2]]}',
    "mem-info-list": '{"pid": 1, "mem_info": [1]}',
    "timestamp-inf": '{"pid": 1, "kernel_timestamp": Infinity}',
    "unknown-key": '{"pid": 1, "colour": "red"}',
    "record-list": '{"record": [1]}',
    "target-list": '{"kind": "kill", "target": [1]}',
    "target-name-int": '{"kind": "kill", "target": {"name": 5}}',
    "memory-string": '{"kind": "kill", "memory": "lots"}',
    "kind-int": '{"kind": 7}',
    "notification-record-list": '{"kind": "kill", "record": [1]}',
    "events-row-bad-target": '{"event": "kill", "target": 5, "record": {"pid": 1}}',
    "deep": "[" * 100_000 + "]" * 100_000,
    "deep-object": '{"a":' * 50_000 + "1" + "}" * 50_000,
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_render_malformed_json(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{name}.json"
    path.write_text(MALFORMED[name])
    line = user_error(["render", str(path)], capsys, "sentinel: error:", str(path))
    assert len(line) < 600


@pytest.mark.parametrize(
    "content", [b"\xff\xfe\x00binary", bytes(range(256)), b'{"pid": 1, "comm": "\xc3"}']
)
def test_render_binary(content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(content)
    user_error(["render", str(path)], capsys, str(path))


@pytest.mark.parametrize("where", ["directory", "devnull", "missing"])
def test_render_not_a_file(where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = {"directory": tmp_path, "devnull": Path(os.devnull), "missing": tmp_path / "no"}[where]
    user_error(["render", str(path)], capsys, str(path))


def test_render_a_good_record_still_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(kill_record().to_dict()))
    code, out, err = run_cli(["render", str(path)], capsys)
    assert code == 0, err
    assert json.loads(out)["blocks"]


# --- health ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["abc", "file:///etc/passwd", "ftp://h/x", "http://", "http://h:99999/", "http://h:x/"]
)
def test_health_url_garbage(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    user_error(["health", "--url", url], capsys, "--url")


@pytest.mark.parametrize("address", ["abc", "127.0.0.1:", "h:99999", "x/y:1", "\x1b[2J:1"])
def test_health_address_file_garbage(
    address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.db"
    health_cmd.address_file(state).write_text(address + "\n")
    line = user_error(["health", "--state", str(state)], capsys, "address")
    assert "\x1b" not in line  # a terminal escape is shown, not sent


def test_health_binary_address_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.db"
    health_cmd.address_file(state).write_bytes(b"\xff\xfe")
    user_error(["health", "--state", str(state)], capsys, "not an address")


def test_health_something_that_is_not_http(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def garbage() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"\x00\x01 not http\r\n\r\n")

        thread = threading.Thread(target=garbage)
        thread.start()
        code, _, err = run_cli(["health", "--url", f"http://127.0.0.1:{port}/healthz"], capsys)
        thread.join(timeout=5)
    assert code == 1
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_health_url_secrets_are_not_shown(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
    code, _, err = run_cli(
        ["health", "--url", f"http://127.0.0.1:{port}/healthz?token=s3cr3t-tok"], capsys
    )
    assert code == 1
    assert "s3cr3t-tok" not in err


# --- internal errors, interrupts, argparse -------------------------------------------------


def _boom(exc: BaseException) -> Callable[[object], int]:
    def run(args: object) -> int:
        raise exc

    return run


def test_a_bug_is_exit_70_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(health_cmd, "run", _boom(RuntimeError("token xoxb-SECRET in a message")))
    code, out, err = run_cli(["health"], capsys)
    assert code == 70
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("sentinel: internal error: RuntimeError at ")
    assert "test_cli_errors.py:" in err
    assert err.rstrip().endswith("; run with -v for the traceback")
    assert "Traceback" not in err
    assert "xoxb-SECRET" not in err  # the message may hold anything: not shown


def test_a_bug_with_v_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(health_cmd, "run", _boom(KeyError("where")))
    code, _, err = run_cli(["-v", "health"], capsys)
    assert code == 70
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("sentinel: internal error: KeyError at ")


def test_interrupt_is_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(health_cmd, "run", _boom(KeyboardInterrupt()))
    code, _, err = run_cli(["health"], capsys)
    assert code == 130
    assert "Traceback" not in err


def test_an_os_error_is_a_user_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(health_cmd, "run", _boom(OSError(28, "No space left on device", "/x")))
    user_error(["health"], capsys, "No space left on device", "/x")


def test_a_multi_line_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(health_cmd, "run", _boom(SentinelError("first\nsecond\x1b[31m")))
    line = user_error(["health"], capsys, "first\\nsecond\\x1b[31m")
    assert line.startswith("sentinel: error: ")


@pytest.mark.parametrize(
    "argv", [["nosuch"], [], ["top", "--format", "xml"], ["forecast"], ["render"], ["--bogus"]]
)
def test_argparse_errors_stay_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith("sentinel")


def test_the_http_endpoint_serves_on_ipv6_and_every_address() -> None:
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    for listen, url_host in (("[::1]:0", "[::1]"), (":0", "127.0.0.1")):
        server = HealthServer(listen, Metrics(), healthy=lambda: True, ready=lambda: True)
        server.start()
        try:
            port = server.address.rpartition(":")[2]
            if listen.startswith("["):
                assert server.address == f"[::1]:{port}"
            else:  # ":PORT" is every address, as documented
                assert server.address == f"0.0.0.0:{port}"
            with urllib.request.urlopen(f"http://{url_host}:{port}/healthz", timeout=5) as r:
                assert r.status == 200
        finally:
            server.stop()
