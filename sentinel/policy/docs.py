"""The README's table of policy keys, generated from the models' field descriptions.

``python -m sentinel.policy.docs`` prints it; a test keeps the README in step.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from sentinel.policy import fields as f
from sentinel.policy.model import Policy

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


if __name__ == "__main__":  # pragma: no cover
    print(readme_block())
