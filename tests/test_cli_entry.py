"""The ``sentinel`` entry point: the cyclic garbage collector is off while the modules
load and back on once the command has what it works with; nothing else changes."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

import sentinel.cli
from sentinel.cli import entry
from sentinel.cli.common import imports_done
from test_scan import CORPUS


@pytest.fixture
def gc_restored() -> object:
    was = gc.isenabled()
    yield None
    gc.unfreeze()
    if was:
        gc.enable()


@pytest.mark.usefixtures("gc_restored")
def test_imports_done_turns_the_collector_back_on_and_freezes_what_exists() -> None:
    gc.disable()
    frozen = gc.get_freeze_count()
    keep = [object() for _ in range(10)]
    imports_done()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(keep)


@pytest.mark.usefixtures("gc_restored")
def test_imports_done_is_a_no_op_where_the_collector_was_on() -> None:
    gc.enable()
    frozen = gc.get_freeze_count()
    imports_done()
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen


@pytest.mark.usefixtures("gc_restored")
def test_entry_parses_with_the_collector_on_and_leaves_it_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Disabled at the start, on while records are printed, on again after."""
    log = tmp_path / "kern.log"
    log.write_bytes(CORPUS[sorted(CORPUS)[0]] + b"\n")
    seen: list[bool] = []
    real_write = sys.stdout.write

    def write(text: str) -> int:
        seen.append(gc.isenabled())
        return real_write(text)

    at_start: list[bool] = []
    real_main = sentinel.cli.main

    def main() -> int:
        at_start.append(gc.isenabled())
        return real_main()

    monkeypatch.setattr(sentinel.cli, "main", main)
    monkeypatch.setattr(sys, "argv", ["sentinel", "parse", str(log), "--format", "json"])
    monkeypatch.setattr(sys.stdout, "write", write)
    gc.enable()
    assert entry() == 0
    assert at_start == [False]
    assert seen
    assert all(seen)
    assert gc.isenabled()
    assert '"pid"' in capsys.readouterr().out
