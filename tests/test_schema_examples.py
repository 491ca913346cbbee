"""`sentinel schema` tells the truth: validated with `jsonschema` against the schema it
prints, every policy the README shows and every file in tests/data/policies is valid or
invalid exactly as sentinel's loader says.

The documents are read as YAML 1.2 (the way the README says, and editors' YAML language
servers read them) into plain data, with no knowledge of the models, before validation."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sentinel.cli import main
from sentinel.cli.common import EXIT_OK
from sentinel.policy import PolicyError, load_policy
from sentinel.policy.docs import SHORTHANDS
from sentinel.policy.load import parse_yaml
from sentinel.policy.model import Policy

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "tests" / "data" / "policies"
POLICY_KEYS = {"version", "settings", "notifiers", "rules"}

SCHEMA_CANNOT_SEE = {
    "undeclared-notifier": "a reference from a rule to a notifier declared elsewhere",
}
"""Bad files the loader refuses and JSON Schema cannot express; every other bad file must
be refused by the schema too."""


def readme_yaml_blocks() -> list[tuple[int, str]]:
    readme = (ROOT / "README.md").read_text()
    return [
        (readme[: m.start()].count("\n") + 2, m.group(1))
        for m in re.finditer(r"^```yaml\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    ]


def is_compose_file(text: str) -> bool:
    data, _ = parse_yaml(text, "README.md")
    return isinstance(data, dict) and "services" in data


README_POLICIES = [(line, text) for line, text in readme_yaml_blocks() if not is_compose_file(text)]
FILES = sorted(POLICIES.rglob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["schema"]) == EXIT_OK
    schema = json.loads(out.getvalue())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(validator: jsonschema.protocols.Validator, text: str, name: str) -> list[str]:
    """What the schema finds wrong; a YAML-level error (syntax, duplicate key, alias bomb)
    counts, since an editor's YAML reader refuses those before any schema."""
    try:
        data, doc = parse_yaml(text, name)
    except PolicyError as e:
        return [str(p) for p in e.problems]
    return [str(p) for p in doc.problems] + [e.message for e in validator.iter_errors(data)]


def loader_errors(text: str, name: str) -> list[str]:
    try:
        load_policy(text, name)
    except PolicyError as e:
        return [str(p) for p in e.problems]
    return []


def test_every_readme_policy_is_valid_to_the_schema_and_the_loader(
    validator: jsonschema.protocols.Validator,
) -> None:
    blocks = readme_yaml_blocks()
    assert len([text for _, text in blocks if is_compose_file(text)]) == 1
    assert len(README_POLICIES) >= 2
    wrong: dict[str, list[str]] = {}
    for line, text in README_POLICIES:
        name = f"README.md:{line}"
        data, _ = parse_yaml(text, name)
        assert isinstance(data, dict), f"{name}: a yaml block that is not a mapping"
        assert set(data) <= POLICY_KEYS, f"{name}: {sorted(set(data) - POLICY_KEYS)}"
        found = loader_errors(text, name) + schema_errors(validator, text, name)
        if found:
            wrong[name] = found
    assert wrong == {}


def test_schema_and_loader_agree_on_every_policy_file(
    validator: jsonschema.protocols.Validator,
) -> None:
    assert FILES
    disagree: dict[str, str] = {}
    for path in FILES:
        text = path.read_text()
        by_loader = loader_errors(text, str(path))
        by_schema = schema_errors(validator, text, str(path))
        name = str(path.relative_to(POLICIES))
        if path.parent.name != "bad":
            if by_loader or by_schema:
                disagree[name] = f"valid, but: {by_loader + by_schema}"
        elif not by_loader:
            disagree[name] = "the loader accepts a file kept as bad"
        elif path.stem in SCHEMA_CANNOT_SEE and by_schema:
            disagree[name] = "the schema now sees it: update SCHEMA_CANNOT_SEE"
        elif path.stem not in SCHEMA_CANNOT_SEE and not by_schema:
            disagree[name] = f"the schema accepts what the loader refuses: {by_loader}"
    assert disagree == {}


YAML_12_POINTS = [
    ("settings: {dry_run: true}", True),
    ("settings: {dry_run: yes}", False),
    ("settings: {dry_run: 1}", False),
    ("settings: {dry_run: 'true'}", False),
    ("settings: {max_actions_per_minute: 5}", True),
    ("settings: {max_actions_per_minute: '5'}", False),
    ("settings: {max_actions_per_minute: 0x10}", True),
    ("settings: {max_actions_per_minute: 1:30}", False),
    ("settings: {sample_interval: .inf}", False),
    ("settings: {state: 1.10}", True),
    ("settings: {state: ~}", False),
    ("settings: {state: true}", False),
    ("rules: [{name: r, match: {labels: {v: 1.10, w: yes}}, do: [{oom_score_adj: 1}]}]", True),
    ("rules: [{name: r, match: {labels: {v: ~}}, do: [{oom_score_adj: 1}]}]", False),
    ("rules: [{name: r, match: {exclude: {image: 1e3}}, do: [{oom_score_adj: 1}]}]", True),
    ("rules: [{name: r, when: {oom_killed: true}, do: [{restart: }]}]", True),
    ("rules: [{name: r, when: {oom_killed: yes}, do: [{restart: {}}]}]", False),
    ("rules: [{name: r, when: {oom_killed: false}, do: [{oom_score_adj: 1}]}]", False),
    ("rules: [{name: r, when: {}, do: [{oom_score_adj: 1}]}]", False),
    ("rules: [{name: r, do: [{signal: USR2}]}]", False),
    ("rules: [{name: r, cooldown: null, do: [{oom_score_adj: 1}]}]", True),
    (
        "rules: [{name: r, when: {memory_above: {percent: 80, bytes: 1Gi}}, do: [{notify: x}]}]",
        False,
    ),
    ("rules: [{name: r, do: [{oom_score_adj: '-900'}]}]", False),
    ("rules: [{name: r, do: [{run: {command: [a, 10]}}]}]", False),
    ("rules: [{name: r, when: {oom_killed: true}, do: [{run: {command: [a, 10]}}]}]", True),
    ("notifiers: {'bad name': {type: log}}", False),
    ("notifiers: {w: {type: webhook, url: 'http://x', url_env: U}}", False),
    ("notifiers: {w: {type: webhook, url: 5}}", False),
    ("notifiers: {s: {type: slack, token_env: T}}", False),
    ("notifiers: {s: {type: slack, token_env: T, channel: 1234}}", True),
    ("notifiers: {s: {type: slack, webhook_url_env: W, thread_per_target: true}}", False),
]


def test_schema_and_loader_agree_on_yaml_12_points(
    validator: jsonschema.protocols.Validator,
) -> None:
    disagree = [
        (text, valid, by_loader, by_schema)
        for text, valid in YAML_12_POINTS
        for by_loader, by_schema in [
            (loader_errors(text, "p.yaml") == [], schema_errors(validator, text, "p.yaml") == [])
        ]
        if (by_loader, by_schema) != (valid, valid)
    ]
    assert disagree == []


def _before_validators(model: type[Any]) -> set[tuple[str, str]]:
    decorators = model.__pydantic_decorators__
    found = {
        (model.__name__, name)
        for name, d in decorators.model_validators.items()
        if d.info.mode in ("before", "wrap", "plain")
    }
    found |= {
        (model.__name__, name)
        for name, d in decorators.field_validators.items()
        if d.info.mode in ("before", "wrap", "plain")
    }
    return found


def _models(model: type[Any], seen: set[type[Any]]) -> set[type[Any]]:
    if model in seen:
        return seen
    seen.add(model)
    for info in model.model_fields.values():
        for t in _types(info.annotation):
            if isinstance(t, type) and hasattr(t, "model_fields"):
                _models(t, seen)
    return seen


def _types(t: Any) -> list[Any]:
    out = [t]
    for arg in getattr(t, "__args__", ()) or ():
        out.extend(_types(arg))
    origin = getattr(t, "__origin__", None)
    if origin is not None:
        out.append(origin)
    return out


def test_every_shorthand_the_models_accept_is_in_the_schema() -> None:
    """A before-validator lets the loader accept a form the model's JSON Schema does not
    show (``oom_killed: true``): each must be declared in ``docs.SHORTHANDS``."""
    found: set[tuple[str, str]] = set()
    for model in _models(Policy, set()):
        found |= _before_validators(model)
    assert found == set(SHORTHANDS)
