"""Every subcommand, driven in-process with random arguments and files: the exit code is
0, 1 or 2 and no traceback reaches the user, whatever the input.

The subcommands and their options come from ``sentinel.cli.build_parser()``: a new option
is fuzzed without touching this file. Nothing acts on the machine: ``run`` builds its
daemon (policy, listen address, state file, Docker URL) but never starts it, ``top`` runs
``--once`` without Docker, ``parse`` never follows nor reads the real ``/dev/kmsg``, and
``health`` asks only loopback (or nothing). Deterministic (``derandomize``).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.cli import build_parser, main
from sentinel.cli import health as health_cmd
from sentinel.kernel.oom import OomParser
from sentinel.model import KillRecord
from sentinel.runtime.daemon import Daemon
from sentinel.store import Store

DATA = Path(__file__).parent / "data"
STORY = DATA / "oom-logs" / "000-aws-5.11-docker-global-oom-below-limit-syslog.log"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


SUBCOMMANDS = subcommands()

NASTY = [
    "",
    " ",
    "-",
    "0",
    "-1",
    "0.01",
    "1",
    "1e400",
    "1e20 s",
    "1e20",
    ".inf",
    "inf",
    "-inf",
    "nan",
    "NaN",
    "1e999999999",
    "9" * 400,
    "99999999999999999999d",
    "garbage",
    "30s",
    "1h30m",
    "24h",
    "-5m",
    "512Mi",
    "1.5Gi",
    "0x10",
    "abc",
    "[::1]:0",
    "[::1]:9310",
    "[::1",
    "127.0.0.1:0",
    ":0",
    "127.0.0.1:99999",
    "x:y:z",
    "http://127.0.0.1:1/healthz",
    "http://[::1]:1/healthz",
    "http://127.0.0.1:99999/",
    "file:///etc/passwd",
    "ftp://127.0.0.1/x",
    "unix:///nonexistent/docker.sock",
    "json",
    "table",
    "yaml",
    "host",
    "sidecar",
    "team-log",
    "2024",
    "0",
    "-99999",
    "\x1b[2J",
    "line\nbreak",
    "\udcff\udcfe",  # bytes that are not UTF-8, as Python gives them from argv
    "é💥",
    "<!channel>",
    "--",
]
"""Values that have broken CLIs before: overflow, NaN, signs, addresses, escapes."""


@dataclass(frozen=True)
class Pool:
    """Files of every kind, made once: paths to give and bytes to pipe into stdin."""

    root: Path
    files: list[str]
    stdin: list[bytes]
    run_states: list[str]


def _kill_record() -> dict[str, Any]:
    parser = OomParser()
    records = [r for line in STORY.read_text().splitlines() for r in parser.feed(line)]
    return (records + parser.flush())[0].to_dict()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Pool:
    root = tmp_path_factory.mktemp("fuzz")
    record = _kill_record()
    story = STORY.read_bytes()
    contents: dict[str, bytes] = {
        "empty": b"",
        "binary": bytes(range(256)) * 16,
        "huge-line": b"x" * (1 << 20),
        "nuls": b"\x00" * 65536,
        "record.json": json.dumps(record).encode(),
        "list.json": b"[1, 2, 3]",
        "number.json": b"42",
        "notification.json": json.dumps(
            {"kind": "kill", "rule": "r", "target": {"name": "web"}, "record": record}
        ).encode(),
        "wrong-types.json": b'{"pid": "12", "comm": 5, "global": "yes"}',
        "deep.json": b"[" * 50_000 + b"]" * 50_000,
        "policy.yaml": b"settings:\n  listen: null\nnotifiers:\n  team-log: {type: log}\n",
        "default-ish.yaml": b"# nothing but a comment\n",
        "bad.yaml": b"rules: [ {name: x, when: {memory_above: {bytes: 1e400}}\n  - : :\n",
        "yaml-tags.yaml": b"settings: !!python/object:os.system ls\n",
        "trace.csv": b"t,usage_bytes\n0,100\n10,200\n20,400\n",
        "trace-limit.csv": b"t,usage_bytes,limit_bytes\n0,100,1000\n10,900,1000\n",
        "trace-bad.csv": b"t,usage_bytes\n0,1e400\nnan,1\n",
        "story.log": story,
        "story-cut.gz": gzip.compress(story)[: len(gzip.compress(story)) // 2],
        "not-a-state.db": b"SQLite format 3\x00" + b"\xff" * 200,
    }
    for name, data in contents.items():
        (root / name).write_bytes(data)
    state = root / "state.db"
    store = Store(state)
    try:
        store.add_kill(_record_value(), now=time.time() - 60, target_id="c1", target_name="web-1")
        store.add_decision(
            at=time.time() - 30,
            rule="report",
            target_id="c1",
            target_name="web-1",
            action="notify",
            dry_run=False,
            outcome="queued",
            evidence={"reason": "killed", "notifiers": ["team-log"]},
        )
    finally:
        store.close()
    (root / "state.db.address").write_text("garbage\n")
    (root / "subdir").mkdir()
    (root / "cgroup" / "memory").mkdir(parents=True)  # an empty cgroup v1 tree
    files = [str(root / name) for name in contents]
    files += [str(state), str(root / "subdir"), os.devnull, str(root / "missing"), "-"]
    run_states = [
        str(root / "subdir"),
        os.devnull,
        str(root / "binary"),
        str(root / "not-a-state.db"),
        str(root / "run-state.db"),  # new: the daemon is built on it, never started
    ]
    stdin = [contents[k] for k in ("empty", "binary", "record.json", "policy.yaml", "story.log")]
    return Pool(root, files, stdin, run_states)


def _record_value() -> KillRecord:
    return KillRecord.from_dict(_kill_record())


PLAUSIBLE: dict[str, list[str]] = {
    "state": ["state.db"],
    "config": ["policy.yaml"],
    "policy": ["policy.yaml", "default-ish.yaml"],
    "since": ["24h", "30d", "1h30m"],
    "test": ["team-log", "log"],
    "listen": ["127.0.0.1:0"],
    "url": ["http://127.0.0.1:1/healthz"],
    "limit": ["1Gi", "512Mi", "1000"],
    "year": ["2024", "1999"],
    "window": ["0.01"],
    "interval": ["0.01"],
    "trace": ["trace.csv", "trace-limit.csv"],
    "record": ["record.json", "notification.json"],
    "sources": ["story.log", "story-cut.gz", "-"],
}
"""Values each option takes when used well (file names are in the pool), so that the
random mix reaches the work behind the argument checks, not only the checks."""


def value(pool: Pool, dest: str = "") -> st.SearchStrategy[str]:
    text = st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
        max_size=12,
    )
    good = [str(pool.root / v) if (pool.root / v).exists() else v for v in PLAUSIBLE.get(dest, [])]
    plausible = [st.sampled_from(good)] * 3 if good else []
    return st.one_of(*plausible, st.sampled_from(NASTY), st.sampled_from(pool.files), text)


def argv_for(name: str, pool: Pool) -> st.SearchStrategy[list[str]]:
    """Random arguments from the subparser's own options and positionals."""
    sub = SUBCOMMANDS[name]
    options: list[st.SearchStrategy[list[str]]] = []
    positionals: list[st.SearchStrategy[list[str]]] = []
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue  # prints the help and exits 0: tells nothing about the rest
        if action.option_strings:
            flag = st.sampled_from(action.option_strings)
            if action.nargs == 0:
                options.append(flag.map(lambda f: [f]))
            else:
                values = value(pool, action.dest)
                if action.choices:
                    values = st.one_of(st.sampled_from(list(action.choices)), values)
                options.append(st.tuples(flag, values).map(list))
        elif action.nargs in ("*", "?"):
            positionals.append(
                st.lists(value(pool, action.dest), max_size=3 if action.nargs == "*" else 1)
            )
        else:
            positionals.append(value(pool, action.dest).map(lambda v: [v]))
    chosen = st.lists(st.one_of(options), max_size=4) if options else st.just([])
    return st.tuples(chosen, st.tuples(*positionals) if positionals else st.just(())).map(
        lambda both: [a for option in both[0] for a in option] + [a for p in both[1] for a in p]
    )


def safe(name: str, argv: list[str], pool: Pool) -> list[str]:
    """The random arguments, made harmless for this machine (argparse takes the last
    occurrence of an option, and checks every occurrence's value)."""
    root = pool.root
    if name == "parse":
        argv = [a for a in argv if a not in ("-f", "--follow", "kmsg")]
        argv = [*argv, "--kmsg-path", str(root / "empty")]
        if not any(a in pool.files for a in argv):
            argv.append(str(root / "story.log"))  # never the default, the real kmsg
    elif name == "top":
        argv = [*argv, "--once", "--no-docker", "--window", "0.01", "--interval", "0.01"]
        argv += ["--cgroup-root", str(root / "cgroup")]  # an empty tree, not this machine's
    elif name == "run":
        # the random --state (a later one wins) is replaced by one from the run pool
        states = [a for a in argv if a in pool.run_states]
        argv = ["--listen", "", *argv, "--dry-run", "--docker-url", "unix:///nonexistent"]
        argv += ["--kmsg-path", str(root / "empty"), "--cgroup-root", str(root / "cgroup")]
        argv += ["--state", states[-1] if states else str(root / "run-state.db")]
    elif name == "events":
        argv = ["--state", str(root / "state.db"), *argv]
    elif name == "health":
        argv = ["--state", str(root / "missing.db"), *argv]
    return [name, *argv]


@contextlib.contextmanager
def stdio(data: bytes, root: Path) -> Iterator[tuple[io.BytesIO, io.BytesIO]]:
    """stdin from ``data`` (a real file on fd 0), stdout strict UTF-8 as a terminal or
    pipe is, stderr with backslashreplace as Python's own."""
    stdin_file = root / "stdin"
    stdin_file.write_bytes(data)
    saved_fd = os.dup(0)
    out, err = io.BytesIO(), io.BytesIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    with stdin_file.open("rb") as f, open(0, "rb", closefd=False) as fd0:
        os.dup2(f.fileno(), 0)
        sys.stdin = io.TextIOWrapper(fd0, encoding="utf-8")
        sys.stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
        sys.stderr = io.TextIOWrapper(
            err, encoding="utf-8", errors="backslashreplace", write_through=True
        )
        try:
            yield out, err
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved
            os.dup2(saved_fd, 0)
            os.close(saved_fd)


def _built_not_started(self: Daemon) -> int:
    """``run``: everything up to the start (policy, listen, state, clients) was built."""
    self.monitor.close()
    if self.docker is not None:
        self.docker.close()
    self.store.close()
    return 0


def call(argv: list[str], data: bytes, root: Path) -> tuple[int, str, str]:
    logger = logging.getLogger()
    handlers, level = logger.handlers[:], logger.level  # `run` installs its JSON logging
    with stdio(data, root) as (out, err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: --help (0) and its errors (2)
            code = e.code if isinstance(e.code, int) else 2
        finally:
            logger.handlers[:] = handlers
            logger.setLevel(level)
        sys.stdout.flush()
        sys.stderr.flush()
        return code, out.getvalue().decode("utf-8", "replace"), err.getvalue().decode("utf-8")


def test_a_policy_file_of_nuls_is_a_user_error(pool: Pool) -> None:
    # found by the fuzz below: yaml's ReaderError escaped the loader (exit 70)
    code, _, err = call(["check", str(pool.root / "nuls")], b"", pool.root)
    assert code == 2, err


@pytest.fixture(scope="module")
def harmless(pool: Pool) -> Iterator[None]:
    """Module-wide: run never starts its daemon, health gives up fast, cwd is scratch."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Daemon, "run_forever", _built_not_started)
        mp.setattr(health_cmd, "TIMEOUT_S", 0.5)
        mp.chdir(pool.root / "subdir")
        mp.delenv("SENTINEL_APP_MEMORY_LIMIT", raising=False)
        yield


EXAMPLES = {"top": 30, "run": 100, "schema": 5}


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_exits_0_1_or_2_without_traceback(
    name: str, pool: Pool, harmless: None
) -> None:
    @settings(
        max_examples=EXAMPLES.get(name, 250),
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        argv=argv_for(name, pool),
        verbose=st.booleans(),
        data=st.sampled_from(pool.stdin),
    )
    def check(argv: list[str], verbose: bool, data: bytes) -> None:
        full = (["-v"] if verbose else []) + safe(name, argv, pool)
        code, out, err = call(full, data, pool.root)
        shown = f"argv={full!r}\nexit {code}\nstderr: {err[-2000:]}"
        assert code in (0, 1, 2), shown
        assert "Traceback" not in out, shown
        if not verbose:
            assert "Traceback" not in err, shown
        if code == 2:
            assert err.strip(), shown  # an error names what failed

    check()
