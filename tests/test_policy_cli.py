"""sentinel check / sentinel schema, through sentinel.cli.main."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import yaml

from sentinel.cli import main
from sentinel.cli.common import EXIT_ERROR, EXIT_OK
from sentinel.policy import load_policy
from sentinel.policy.docs import readme_block

POLICIES = Path(__file__).parent / "data" / "policies"
EXAMPLE = POLICIES / "example.yaml"


def test_check_prints_the_effective_policy_as_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLE)]) == EXIT_OK
    out = capsys.readouterr().out
    assert load_policy(out, "out") == load_policy(EXAMPLE.read_text(), "example")
    doc = yaml.safe_load(out)
    assert doc["settings"]["max_actions_per_minute"] == 10  # a default, resolved
    assert doc["rules"][1]["cooldown"] == "5m"
    assert doc["rules"][2]["cooldown"] == "0s"
    assert doc["rules"][0]["max_restarts"] == {"count": 3, "per": "24h"}


def test_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLE), "--format", "json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["rules"][0]["when"] == {"projected_oom_within": "15m", "confidence": "confident"}
    assert doc["rules"][0]["do"][0] == {"restart": {"grace_period": "30s"}}


def test_check_without_a_file_prints_the_built_in_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check"]) == EXIT_OK
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["notifiers"] == {"log": {"type": "log"}}
    assert [r["name"] for r in doc["rules"]] == ["report-every-kill"]


def test_check_reports_every_problem_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    bad = POLICIES / "bad" / "two-errors.yaml"
    assert main(["check", str(bad)]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0].startswith(f"{bad}:4:20: settings.sample_interval: expected a duration")
    assert lines[1].startswith(f"{bad}:9:12: rules[0].when.oom_kiled: unknown key 'oom_kiled'")
    assert lines[2] == "sentinel: 2 problems in the policy"


def test_check_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["check", str(missing)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "No such file" in err


def test_check_not_utf8_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"rules: []\n# caf\xe9\n")
    assert main(["check", str(bad)]) == EXIT_ERROR
    assert "not UTF-8" in capsys.readouterr().err


def test_check_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("settings: {dry_run: maybe}\n"))
    assert main(["check", "-"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith('<stdin>:1:21: settings.dry_run: expected a boolean; found "maybe"')


def test_schema_is_json_schema_with_every_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schema"]) == EXIT_OK
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"version", "settings", "notifiers", "rules"}
    defs = schema["$defs"]
    undocumented = [
        f"{name}.{key}"
        for name, d in defs.items()
        for key, prop in d.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert undocumented == []
    assert all(d.get("additionalProperties") is False for d in defs.values() if "properties" in d)
    assert "for" in defs["MemoryAbove"]["properties"]
    assert defs["Settings"]["properties"]["sample_interval"]["default"] == "5s"


def test_schema_duration_pattern_agrees_with_the_loader(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schema"]) == EXIT_OK
    schema = json.loads(capsys.readouterr().out)
    cooldown = schema["$defs"]["Rule"]["properties"]["cooldown"]
    assert cooldown["default"] == "5m"
    pattern = re.compile(cooldown["anyOf"][0]["pattern"])
    for text in ("5s", "15m", "24h", "1h30m", "250ms", "90"):
        assert pattern.match(text), text
        load_policy(f"rules: [{{name: r, cooldown: {text}, do: [{{oom_score_adj: 1}}]}}]", "t")
    for text in ("soon", "5 minutes", "1h30", "-5s"):
        assert not pattern.match(text), text


def test_readme_documents_every_key_as_the_models_do() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert readme_block() in readme, "regenerate with: python -m sentinel.policy.docs"
