"""The README's table of policy keys, generated from the models' field descriptions.

``python -m sentinel.policy.docs`` prints it; a test keeps the README in step.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin

from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import PydanticUndefined, core_schema

from sentinel.policy import fields as f
from sentinel.policy.model import Policy, RuleAction

BEGIN = "<!-- policy-keys:begin (generated: python -m sentinel.policy.docs) -->"
END = "<!-- policy-keys:end -->"

_KINDS = {
    f._to_seconds: "duration",
    f._to_bytes: "size",
    f._to_signal: "signal name",
    f._to_listen: "host:port or null",
}


def _unwrap(t: Any) -> Any:
    while get_origin(t) is Annotated:
        t = get_args(t)[0]
    return t


def _members(t: Any) -> list[Any]:
    t = _unwrap(t)
    if get_origin(t) in (Union, types.UnionType):
        return [_unwrap(m) for m in get_args(t) if m is not type(None)]
    return [t]


def _validators(t: Any) -> Iterator[BeforeValidator]:
    """Before-validators anywhere in an annotation outside lists and mappings."""
    if get_origin(t) is Annotated:
        inner, *meta = get_args(t)
        yield from (m for m in meta if isinstance(m, BeforeValidator))
        yield from _validators(inner)
    elif get_origin(t) in (Union, types.UnionType):
        for member in get_args(t):
            yield from _validators(member)


_PLAIN = {bool: "bool", int: "integer", float: "number", str: "text"}


def _kind(info: FieldInfo) -> str:
    annotation = info.annotation
    validators = [m for m in info.metadata if isinstance(m, BeforeValidator)]
    for v in [*validators, *_validators(annotation)]:
        if v.func in _KINDS:
            return _KINDS[v.func]
    names: list[str] = []
    for member in _members(annotation):
        origin = get_origin(member)
        if origin is Literal:
            names.append(" \\| ".join(f"`{a}`" for a in get_args(member)))
        elif origin is list:
            names.append("list")
        elif origin is dict or (isinstance(member, type) and issubclass(member, BaseModel)):
            names.append("mapping")
        else:
            names.append(_PLAIN.get(member, "?"))
    return " or ".join(dict.fromkeys(names))


def _flow(value: Any) -> str:
    """A default in YAML flow style: ``{count: 3, per: 24h}``, ``[]``, ``5s``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            # a block whose keys all have defaults (the rows below say them), or a set value
            required = any(i.is_required() for i in type(value).model_fields.values())
            return f"`{_flow(value.model_dump(mode='json'))}`" if required else "—"
        return f"`{_flow(value)}`"
    if info.default is None or info.default is PydanticUndefined:
        return "—"
    return f"`{_flow(info.default)}`"


def _rows(
    model: type[BaseModel], prefix: str, *, choice: bool = False
) -> Iterator[tuple[str, str, str, str]]:
    """Rows for the model's keys; ``choice``: the model is one of several forms of an item
    (an action), so its key is a choice, not a required key."""
    for name, info in model.model_fields.items():
        key = info.alias or name
        path = f"{prefix}{key}"
        description = (info.description or "").replace("|", "\\|")
        yield path, _kind(info), "one action per item" if choice else _default(info), description
        for member in _members(info.annotation):
            origin = get_origin(member)
            if origin is list:
                sub, inner = f"{path}[]", _members(get_args(member)[0])
            elif origin is dict:
                sub, inner = f"{path}.NAME", _members(get_args(member)[1])
            else:
                sub, inner = path, [member]
            if len(inner) > 1 and all(_type_tag(m) for m in inner):
                yield from _variant_rows(inner, f"{sub}.")
                continue
            for m in inner:
                # a base of this model (match's exclude blocks): its keys are listed already
                if isinstance(m, type) and issubclass(m, BaseModel) and not issubclass(model, m):
                    yield from _rows(m, f"{sub}.", choice=len(inner) > 1)


def _type_tag(member: Any) -> str | None:
    """The ``type`` literal of a member of a union tagged by ``type`` (a notifier)."""
    if isinstance(member, type) and issubclass(member, BaseModel):
        info = member.model_fields.get("type")
        args = get_args(info.annotation) if info is not None else ()
        if len(args) == 1 and isinstance(args[0], str):
            return args[0]
    return None


def _variant_rows(members: list[Any], prefix: str) -> Iterator[tuple[str, str, str, str]]:
    """A union tagged by ``type``: one ``type`` row naming every form, then each form's
    keys, marked with the form they belong to."""
    tags = [_type_tag(m) for m in members]
    yield (
        f"{prefix}type",
        " \\| ".join(f"`{t}`" for t in tags),
        "required",
        " ".join((m.model_fields["type"].description or "").replace("|", "\\|") for m in members),
    )
    for tag, m in zip(tags, members, strict=True):
        for path, kind, default, description in _rows(m, prefix):
            if path != f"{prefix}type":
                yield path, kind, default, f"(`{tag}`) {description}"


def reference_table() -> str:
    """Every key of the policy file: path, form, default, and what it means."""
    lines = ["| key | form | default | meaning |", "|---|---|---|---|"]
    seen: set[str] = set()
    for path, kind, default, description in _rows(Policy, ""):
        if path in seen:
            continue
        seen.add(path)
        lines.append(f"| `{path}` | {kind} | {default} | {description} |")
    return "\n".join(lines)


def readme_block() -> str:
    return f"{BEGIN}\n{reference_table()}\n{END}"


# --- the JSON Schema -----------------------------------------------------------------------

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _PolicyJsonSchema(GenerateJsonSchema):
    """The models' JSON Schema, as the loader reads YAML 1.2 (``sentinel.policy.load``): a
    number written where text is expected is that text (``labels: {v: 1.10}``), so text
    accepts numbers too; a text with its own validator (URLs) stays text only."""

    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        out = super().str_schema(schema)
        return {**out, "type": ["string", "number"]}

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        inner = schema["schema"]
        if inner["type"] == "str":  # text with its own validator: text only
            return super().str_schema(cast("core_schema.StringSchema", inner))
        return super().function_before_schema(schema)


DISRUPTIVE = tuple(a.kind for a in get_args(RuleAction) if a.disruptive)


def _present(key: str) -> dict[str, Any]:
    return {"required": [key], "properties": {key: {"not": {"type": "null"}}}}


SHORTHANDS: dict[tuple[str, str], tuple[str | None, list[dict[str, Any]]]] = {
    ("OomKilled", "_shorthand"): (None, [{"const": True}]),
    ("RestartAction", "_bare"): ("restart", [{"type": "null"}, {"const": True}]),
    ("EvictAction", "_bare"): ("evict", [{"type": "null"}, {"const": True}]),
    ("DeletePodAction", "_bare"): ("delete_pod", [{"type": "null"}, {"const": True}]),
    ("SnapshotAction", "_bare"): ("snapshot", [{"type": "null"}, {"const": True}]),
    ("Match", "_one_or_many"): ("exclude", [{"$ref": "#/$defs/Selector"}]),
    ("Rule", "_auto_cooldown"): ("cooldown", [{"type": "null"}]),
}
"""What the models' before-validators accept besides their JSON form, by (model,
validator): (the field they widen, or None for the model itself; the extra forms). A test
checks every before-validator of the models is here."""

CONSTRAINTS: dict[str, dict[str, Any]] = {
    "When": {
        "anyOf": [_present(k) for k in ("projected_oom_within", "memory_above", "oom_killed")],
        "if": {"properties": {"confidence": {"const": "observed"}}, "required": ["confidence"]},
        "then": {"required": ["projected_oom_within"]},
    },
    "MemoryAbove": {"oneOf": [_present("percent"), _present("bytes")]},
    "SlackNotifier": {
        "oneOf": [_present(k) for k in ("token_env", "token_file", "webhook_url_env")],
        "if": _present("webhook_url_env"),
        "then": {"properties": {"thread_per_target": {"const": False}}},
        "else": _present("channel"),
    },
    "WebhookNotifier": {"oneOf": [_present("url"), _present("url_env")]},
    "Rule": {  # without `when`, only notify and oom_score_adj
        "if": {"not": _present("when")},
        "then": {
            "properties": {
                "do": {"items": {"not": {"anyOf": [{"required": [k]} for k in DISRUPTIVE]}}}
            }
        },
    },
}
"""What the models' after-validators check across keys, where JSON Schema can say it (the
references between rules and notifiers it cannot)."""


def _close_patterns(node: Any) -> None:
    """A mapping whose keys must match a pattern (notifier names) allows no other key."""
    if isinstance(node, dict):
        if "patternProperties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _close_patterns(value)
    elif isinstance(node, list):
        for value in node:
            _close_patterns(value)


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of policy files (``sentinel schema``): what the loader accepts."""
    schema = Policy.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_PolicyJsonSchema
    )
    defs: dict[str, Any] = schema.get("$defs", {})
    for (model, _), (field, forms) in SHORTHANDS.items():
        if model not in defs:
            continue
        target = defs[model] if field is None else defs[model]["properties"][field]
        if set(target) & {"$ref", "type", "properties", "oneOf", "allOf", "const", "enum"}:
            keep = ("description", "default", "title", "examples")
            plain = {k: target.pop(k) for k in list(target) if k not in keep}
            target["anyOf"] = [plain]
        target["anyOf"] = [*target["anyOf"], *forms]
    for model, extra in CONSTRAINTS.items():
        if model in defs:
            defs[model].setdefault("allOf", []).append(extra)
    _close_patterns(schema)
    return {"$schema": SCHEMA_DIALECT, **schema, "title": "sentinel policy"}


if __name__ == "__main__":  # pragma: no cover
    print(readme_block())
