"""``sentinel forecast`` as a user runs it: JSON lines, table, units, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel.cli import main

SENTINEL = str(Path(sys.executable).parent / "sentinel")
MiB = 1 << 20


def write_leak(path: Path, limit: int = 256 * MiB, seconds: int = 6 * 3600) -> float:
    """A linear leak from 20% to the limit at ``seconds``; returns the kill time."""
    lines = ["t,usage_bytes"]
    for t in range(0, seconds + 1, 10):
        lines.append(f"{t},{int(0.2 * limit + 0.8 * limit * t / seconds)}")
    path.write_text("\n".join(lines) + "\n")
    return float(seconds)


def test_json_line_per_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "leak.csv"
    kill = write_leak(trace)
    assert main(["forecast", str(trace), "--limit", "256Mi", "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == int(kill) // 10 + 1
    assert {"t", "usage_bytes", "eta_seconds"} <= rows[0].keys()
    assert rows[0]["eta_seconds"] is None
    # one straight line from the start: the observed answer from the first samples, the
    # confident one once the line is past what a ramp that stops would do (see fast.py)
    early = next(r for r in rows if r["t"] == 600)
    assert early["eta_seconds"] is None
    assert early["observed_eta_seconds"] == pytest.approx(kill - 600, rel=0.05)
    assert early["observed_rate_bytes_per_s"] == pytest.approx(0.8 * 256 * MiB / kill, rel=0.05)
    assert early["observed_eta_low"] <= early["observed_eta_seconds"]
    assert early["known_leaker"] is False
    at = next(r for r in rows if r["t"] == 4 * 3600)
    assert at["eta_seconds"] == pytest.approx(kill - 4 * 3600, rel=0.2)
    assert at["limit_bytes"] == 256 * MiB
    assert at["constraint"] == "cgroup"
    assert rows[-1]["eta_seconds"] == 0.0


@pytest.mark.parametrize("size", ["268435456", "256Mi", "256MiB", "0.25GiB"])
def test_limit_units(tmp_path: Path, capsys: pytest.CaptureFixture[str], size: str) -> None:
    trace = tmp_path / "leak.csv"
    write_leak(trace, seconds=3600)
    assert main(["forecast", str(trace), "--limit", size, "--format", "json"]) == 0
    last = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert last["limit_bytes"] == 256 * MiB


def test_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "leak.csv"
    write_leak(trace)
    assert main(["forecast", str(trace), "--limit", "256Mi", "--format", "table"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["T", "USAGE", "LIMIT"]
    assert out[0].split()[-3:] == ["TREND/h", "~ETA", "~RANGE"]
    assert "256Mi" in out[-1]
    row = out[61].split()  # t=600: only the trend projects the kill yet
    assert row[0] == "600"
    assert row[6] == "-"
    assert row[-2] != "-"


def test_limit_column_changes_the_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "limits.csv"
    rows = ["t,usage_bytes,limit_bytes"]
    for t in range(0, 7200, 10):
        rows.append(f"{t},{100 * MiB},{256 * MiB if t < 3600 else 512 * MiB}")
    trace.write_text("\n".join(rows) + "\n")
    assert main(["forecast", str(trace), "--format", "json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out[0]["limit_bytes"] == 256 * MiB
    assert out[-1]["limit_bytes"] == 512 * MiB


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", ":1: empty trace"),
        ("time,usage\n1,2\n", ":1: expected the header"),
        ("t,usage_bytes\n0,100\n10,abc\n", ":3: usage_bytes is not a number"),
        ("t,usage_bytes\n0,100\nx,100\n", ":3: t is not a number"),
        ("t,usage_bytes\n0,100\n20,100\n10,100\n", ":4: time goes backwards"),
        ("t,usage_bytes\n0,100,5\n", ":2: expected 2 values"),
        ("t,usage_bytes\n0,-5\n", ":2: usage_bytes is negative"),
        ("t,usage_bytes\n0,nan\n", ":2: usage_bytes is not finite"),
    ],
)
def test_bad_input_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text(text)
    assert main(["forecast", str(trace), "--limit", "1Gi", "--format", "json"]) == 2
    err = capsys.readouterr().err
    assert f"{trace}{message}" in err


def test_missing_file_and_bad_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["forecast", str(tmp_path / "nope.csv"), "--limit", "1Gi"]) == 2
    assert "cannot open" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["forecast", str(tmp_path / "nope.csv"), "--limit", "1 apple"])
    assert e.value.code == 2


def test_installed_command_reads_stdin() -> None:
    data = "t,usage_bytes\n" + "".join(f"{t},{1000 + t}\n" for t in range(0, 600, 10))
    p = subprocess.run(
        [SENTINEL, "forecast", "-", "--limit", "1G", "--format", "json"],
        input=data,
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 60
    assert json.loads(lines[-1])["t"] == 590
    bad = subprocess.run(
        [SENTINEL, "forecast", "-", "--limit", "1G"],
        input="t,usage_bytes\n5,1\n4,1\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "<stdin>:3:" in bad.stderr
