"""Every real kernel OOM sample yields exactly its ground truth.

The samples are real kernel output from public bug reports (see SOURCES*.md beside them).
A key present in the expected file must be output with that value; the number and order
of records must match. Keys the expected file leaves out are not asserted there (the
rules in SOURCES.md say why); they are checked by the unit tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sentinel.kernel.oom import parse_lines
from sentinel.kernel.scan import scan_chunks
from sentinel.kernel.search import ENGINE

DATA = Path(__file__).parent / "data" / "oom-logs"
SAMPLES = sorted(DATA.glob("*.log"))
ENGINES = sorted({"re", ENGINE})
"""The scanner's fallback and the engine it uses here (hyperscan where it installs)."""


def _expected(log: Path) -> list[dict[str, object]]:
    data = json.loads(log.with_suffix(".expected.json").read_text())
    assert isinstance(data, list)
    return data


def _subset(record: dict[str, object], expected: dict[str, object]) -> dict[str, object]:
    return {key: record.get(key) for key in expected}


@pytest.mark.parametrize("log", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_yields_exactly_its_expected_records(log: Path) -> None:
    expected = _expected(log)
    with log.open(encoding="utf-8", errors="replace") as f:
        got = [r.to_dict() for r in parse_lines(f)]
    assert len(got) == len(expected), [r.get("pid") for r in got]
    for record, want in zip(got, expected, strict=True):
        assert _subset(record, want) == want


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("log", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_byte_scanner_agrees_with_line_parser(log: Path, engine: str) -> None:
    data = log.read_bytes()
    by_lines = list(parse_lines(data.decode("utf-8", "replace").splitlines()))
    chunks = [data[i : i + 97] for i in range(0, len(data), 97)]
    by_bytes = list(scan_chunks(chunks, engine=engine))
    assert by_bytes == by_lines


def test_the_corpus_parses_to_every_kind_of_kill_it_holds() -> None:
    """The whole corpus at once: as many records as the expected files hold (the tests
    above would pass on an empty or unpaired corpus; this one would not), and among them
    every kind the parser must tell apart: host and cgroup kills, each constraint, kills
    in containers and in pods."""
    expected = [r for log in SAMPLES for r in _expected(log)]
    got = []
    for log in SAMPLES:
        with log.open(encoding="utf-8", errors="replace") as f:
            got += [r.to_dict() for r in parse_lines(f)]
    assert len(got) == len(expected) >= 50
    assert {r.get("global") for r in got} >= {True, False}
    constraints = {r.get("constraint") for r in got}
    assert constraints >= {"CONSTRAINT_NONE", "CONSTRAINT_MEMCG", "CONSTRAINT_CPUSET"}
    assert "CONSTRAINT_MEMORY_POLICY" in constraints
    assert sum(bool(r.get("container_id")) for r in got) >= 10
    assert sum(bool(r.get("pod_uid")) for r in got) >= 5
    unpaired = [
        p.name
        for p in DATA.glob("*.expected.json")
        if not p.with_suffix("").with_suffix(".log").exists()
    ]
    assert unpaired == []  # an expected file whose log is gone would never be checked
