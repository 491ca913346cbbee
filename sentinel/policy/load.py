"""Policy text to a validated :class:`Policy`, or every problem with its file, line and column.

Pure: it takes the text and the name to report (the CLI and the daemon read the file). The
YAML is composed into nodes first, so that every value keeps the line and column it was
written at; the nodes become plain data, pydantic validates it, and each validation error
is mapped back to its node.

Scalars are read the YAML 1.2 way: only ``true``/``false`` are booleans, so ``no``, ``on``
and ``yes`` stay text, ``1:30`` is not ninety, and ``010`` is ten. Duplicate keys are an
error, not a silent override.
"""

from __future__ import annotations

import json
import math
import re
import types
from collections.abc import Mapping
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, Tag, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from sentinel.policy.errors import PolicyError, Problem
from sentinel.policy.model import Loc, Policy, key_path, reference_problems

DEFAULT_POLICY_NAME = "<built-in default policy>"

DEFAULT_POLICY_YAML = """\
# sentinel's built-in policy, used when no policy file is given: record and report every
# kill, forecast every container, change nothing.
version: 1
notifiers:
  log:
    type: log          # one JSON line per notification on stdout
rules:
  - name: report-every-kill
    when: {oom_killed: true}
    do:
      - notify: log
"""


# --- YAML with marks ---------------------------------------------------------------------

MAX_POLICY_BYTES = 1 << 20
"""A policy is a few KiB; a file larger than 1 MiB is refused before it is parsed."""

MAX_VALUES = 20_000
"""Values the document may hold once its aliases (``*name``) and merge keys (``<<``) are
expanded. A policy has a few hundred; this refuses alias bombs ("billion laughs") before
anything is built, in linear time and memory."""

MAX_DEPTH = 50
"""Nesting of collections, aliases expanded; a policy nests fewer than 10 levels."""

_CORE = "tag:yaml.org,2002:"
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")


class _Limit(Exception):
    """The document is too large, too deep or expands too much (an alias bomb)."""

    def __init__(self, mark: yaml.Mark | None, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


def _too_many(mark: yaml.Mark | None) -> _Limit:
    return _Limit(
        mark,
        f"expected a policy of at most {MAX_VALUES} values, aliases (*name) and merge keys "
        "(<<) expanded; found more here (an alias bomb?)",
    )


def _too_deep(mark: yaml.Mark | None) -> _Limit:
    return _Limit(
        mark,
        f"expected values nested at most {MAX_DEPTH} levels deep (aliases expanded); found deeper",
    )


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema resolution (no ``yes``/``no`` booleans, no
    sexagesimal or YAML 1.1 octal numbers, no implicit timestamps) that stops composing at
    :data:`MAX_VALUES` nodes or :data:`MAX_DEPTH` levels."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.composed = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        self.composed += 1
        if self.composed > MAX_VALUES:
            raise _too_many(mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _too_deep(mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Loader.yaml_implicit_resolvers = {}  # only those below, not SafeLoader's YAML 1.1 set
_Loader.add_implicit_resolver(f"{_CORE}bool", _BOOL, list("tTfF"))
_Loader.add_implicit_resolver(f"{_CORE}int", _INT, list("-+0123456789"))
_Loader.add_implicit_resolver(f"{_CORE}float", _FLOAT, list("-+0123456789."))
_Loader.add_implicit_resolver(f"{_CORE}null", _NULL, ["~", "n", "N", ""])
_Loader.add_implicit_resolver(f"{_CORE}merge", re.compile(r"^(?:<<)$"), ["<"])


def scalar_value(tag: str, text: str) -> Any:
    """A scalar's value by the YAML 1.2 core schema: ``str``, ``null``, ``bool``, ``int``
    (decimal, ``0o`` octal, ``0x`` hex) or ``float`` (with ``.inf`` and ``.nan``). Raises
    ``ValueError`` saying what was expected for any other tag or a text its tag refuses."""
    if tag in (f"{_CORE}str", f"{_CORE}merge"):
        return text
    if tag == f"{_CORE}null" and _NULL.match(text):
        return None
    if tag == f"{_CORE}bool" and _BOOL.match(text):
        return text.lower() == "true"
    if tag == f"{_CORE}int" and _INT.match(text):
        base = {"0o": 8, "0x": 16}.get(text[:2], 10)
        try:
            return int(text[2:] if base != 10 else text, base)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise ValueError("expected an integer of at most 4300 digits") from None
    if tag == f"{_CORE}float" and _FLOAT.match(text):
        lower = text.lower()
        if lower.endswith(".inf"):
            return -math.inf if lower.startswith("-") else math.inf
        return math.nan if lower == ".nan" else float(text)
    if tag.startswith(_CORE) and tag[len(_CORE) :] in ("null", "bool", "int", "float"):
        raise ValueError(f"expected a YAML {tag[len(_CORE) :]}; found {text!r}")
    raise ValueError(f"expected a plain value (YAML 1.2 core schema); found the tag {tag}")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Raise :class:`_Limit` when the node graph, its aliases and merge keys expanded,
    holds more than :data:`MAX_VALUES` values or nests deeper than :data:`MAX_DEPTH`.
    Linear in the distinct nodes: each node's expanded size is computed once."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    started: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            # a node on the current path (a recursive alias) counts once: build reports it
            size[key] = 1 + sum(size.get(id(k), 1) for k in kids)
            depth[key] = 1 + max((depth.get(id(k), 0) for k in kids), default=0)
            started.discard(key)
            if size[key] > MAX_VALUES:
                raise _too_many(node.start_mark)
            if depth[key] > MAX_DEPTH:
                raise _too_deep(node.start_mark)
            continue
        if key in size or key in started:
            continue
        started.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)


class _Doc:
    """Plain data built from YAML nodes, with the mark of every value and every key, and
    the text of every plain scalar read as a number (``1.10``), for text fields."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.values: dict[Loc, yaml.Mark] = {}
        self.keys: dict[Loc, yaml.Mark | None] = {}
        self.texts: dict[Loc, str] = {}
        self.problems: list[Problem] = []
        self.built = 0

    def problem(self, mark: yaml.Mark | None, loc: Loc, message: str) -> None:
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        self.problems.append(Problem(self.filename, line, column, key_path(loc), message))

    def build(self, loader: _Loader, node: yaml.Node, loc: Loc, active: frozenset[int]) -> Any:
        self.built += 1
        if self.built > MAX_VALUES:  # _check_expansion bounds it; this keeps it so
            raise _too_many(node.start_mark)
        self.values[loc] = node.start_mark
        if id(node) in active:
            self.problem(node.start_mark, loc, "expected a value; found an alias of itself")
            return None
        inner = active | {id(node)}
        if isinstance(node, yaml.MappingNode):
            if node.tag != f"{_CORE}map":
                self.problem(node.start_mark, loc, f"expected a plain mapping; found {node.tag}")
                return {}
            own = sum(1 for k, _ in node.value if k.tag != f"{_CORE}merge")
            try:
                loader.flatten_mapping(node)  # `<<: *base` merge keys: merged pairs first
            except yaml.MarkedYAMLError as e:
                self.problem(e.problem_mark, loc, f"YAML error: {e.problem}")
                return {}
            merged = len(node.value) - own
            out: dict[str, Any] = {}
            for n, (key_node, value_node) in enumerate(node.value):
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problem(
                        key_node.start_mark, loc, "expected a plain key; found a collection"
                    )
                    continue
                key = key_node.value
                first = self.keys.get((*loc, key))
                if key in out and n >= merged and first is not None:
                    self.problem(
                        key_node.start_mark,
                        (*loc, key),
                        f"expected each key once; found {key!r} again "
                        f"(first at line {first.line + 1})",
                    )
                    continue
                # merged keys (from `<<`) may be overridden by the mapping's own keys
                self.keys[(*loc, key)] = key_node.start_mark if n >= merged else None
                out[key] = self.build(loader, value_node, (*loc, key), inner)
            return out
        if isinstance(node, yaml.SequenceNode):
            if node.tag != f"{_CORE}seq":
                self.problem(node.start_mark, loc, f"expected a plain list; found {node.tag}")
                return []
            return [self.build(loader, item, (*loc, i), inner) for i, item in enumerate(node.value)]
        try:
            value = scalar_value(node.tag, node.value)
        except ValueError as e:
            self.problem(node.start_mark, loc, str(e))
            return None
        plain = isinstance(node, yaml.ScalarNode) and node.style is None
        if plain and isinstance(value, int | float) and not isinstance(value, bool):
            self.texts[loc] = node.value
        return value

    def mark(self, loc: Loc, *, key: bool = False) -> yaml.Mark | None:
        """The mark of the value at ``loc`` (of its key when ``key``), else the nearest
        enclosing value's."""
        mark = self.keys.get(loc)
        if key and mark is not None:
            return mark
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.values:
                return self.values[loc[:n]]
        return None


def _syntax_problem(filename: str, text: str, e: yaml.YAMLError) -> Problem:
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = e.problem or "malformed YAML"
        if e.context and e.context_mark and e.context_mark is not mark:
            what += f" ({e.context} at line {e.context_mark.line + 1})"
        elif e.context:
            what += f" ({e.context})"
        return Problem(filename, line, column, "", f"YAML syntax error: {what}")
    if isinstance(e, yaml.reader.ReaderError):
        before = text[: e.position]
        line = before.count("\n") + 1
        column = e.position - (before.rfind("\n") + 1) + 1
        return Problem(filename, line, column, "", f"YAML syntax error: {e.reason}")
    return Problem(filename, 1, 1, "", f"YAML syntax error: {e}")


def too_large(filename: str) -> PolicyError:
    """The error for a file over :data:`MAX_POLICY_BYTES` (the CLI stops reading there)."""
    return PolicyError(
        [
            Problem(
                filename,
                1,
                1,
                "",
                f"expected a policy of at most 1 MiB ({MAX_POLICY_BYTES} bytes); "
                "found a larger file",
            )
        ]
    )


def parse_yaml(text: str, filename: str) -> tuple[Any, _Doc]:
    """The document as plain YAML 1.2 data and its marks; raises :class:`PolicyError` on bad
    YAML, on a document over :data:`MAX_POLICY_BYTES`, and on one that expands (aliases,
    merge keys) to more than :data:`MAX_VALUES` values or :data:`MAX_DEPTH` levels."""
    if len(text) > MAX_POLICY_BYTES // 4 and len(text.encode("utf-8", "surrogatepass")) > (
        MAX_POLICY_BYTES
    ):
        raise too_large(filename)
    doc = _Doc(filename)
    try:
        loader = _Loader(text)  # reads the text: a NUL or control character stops it here
    except yaml.YAMLError as e:
        raise PolicyError([_syntax_problem(filename, text, e)]) from None
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node)
        data = None if node is None else doc.build(loader, node, (), frozenset())
    except yaml.YAMLError as e:
        raise PolicyError([_syntax_problem(filename, text, e)]) from None
    except _Limit as e:
        line, column = (e.mark.line + 1, e.mark.column + 1) if e.mark else (1, 1)
        raise PolicyError([Problem(filename, line, column, "", e.message)]) from None
    finally:
        loader.dispose()
    return data, doc


# --- numbers where text is expected ------------------------------------------------------


def _is_text(t: Any) -> bool:
    """True for a plain text type (``str``, constrained or optional), not one with its own
    before-validator (durations, signals, URLs), whose errors say what they expect."""
    while get_origin(t) is Annotated:
        t, *meta = get_args(t)
        if any(isinstance(m, BeforeValidator) for m in meta):
            return False
    if get_origin(t) in (Union, types.UnionType):
        members = [m for m in get_args(t) if m is not type(None)]
        return len(members) == 1 and _is_text(members[0])
    return t is str


def _field_type(info: FieldInfo) -> Any:
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _member_for(t: Any, value: Any) -> Any:
    """The member of a union that ``value`` will be validated as: the optional type, or
    the member tagged by the mapping's ``type`` or its single key; None when unknown."""
    inner = _unwrap(t)
    if get_origin(inner) not in (Union, types.UnionType):
        return t
    members = [m for m in get_args(inner) if m is not type(None)]
    if len(members) == 1:
        return _member_for(members[0], value)
    if isinstance(value, dict):
        tag = value.get("type") if "type" in value else next(iter(value), None)
        for member in members:
            if tag is not None and _tag_of(member) == tag:
                return member
    return None


def keep_text(t: Any, value: Any, loc: Loc, texts: Mapping[Loc, str]) -> Any:
    """``value`` (plain YAML data at ``loc``, of model type ``t``) with every number written
    where text is expected replaced by the text it was written as: a label ``1.10`` stays
    ``"1.10"``, an image ``1e3`` stays ``"1e3"``."""
    if loc in texts and isinstance(value, int | float) and _is_text(t):
        return texts[loc]
    t = _member_for(t, value)
    if t is None:
        return value
    inner = _unwrap(t)
    origin = get_origin(inner)
    if origin is list and isinstance(value, list):
        item = get_args(inner)[0]
        return [keep_text(item, v, (*loc, i), texts) for i, v in enumerate(value)]
    if origin is list and isinstance(value, dict):  # one item for a list (match.exclude)
        return keep_text(get_args(inner)[0], value, loc, texts)
    if origin is dict and isinstance(value, dict):
        item = get_args(inner)[1]
        return {k: keep_text(item, v, (*loc, k), texts) for k, v in value.items()}
    if isinstance(inner, type) and issubclass(inner, BaseModel) and isinstance(value, dict):
        fields = {info.alias or name: info for name, info in inner.model_fields.items()}
        fields.update(inner.model_fields)
        return {
            k: keep_text(_field_type(fields[k]), v, (*loc, k), texts) if k in fields else v
            for k, v in value.items()
        }
    return value


# --- validation errors to problems -------------------------------------------------------

_MISSING: Any = object()


def _walk(data: Any, loc: tuple[str | int, ...]) -> tuple[Loc, Any]:
    """Map a pydantic error location onto the document: union tags and levels the models
    add are skipped; a last key not in the data (a missing key) is kept."""
    out: list[str | int] = []
    cur = data
    for i, part in enumerate(loc):
        present = (isinstance(cur, dict) and part in cur) or (
            isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        )
        if present:
            out.append(part)
            cur = cur[part]
        elif (
            i == len(loc) - 1
            and isinstance(cur, dict)
            and isinstance(part, str)
            and not _is_union_tag(loc[:i], part)
        ):
            out.append(part)
            cur = _MISSING
    return tuple(out), cur


def _is_union_tag(loc: tuple[str | int, ...], part: str) -> bool:
    """True when ``part`` is the tag pydantic put after ``loc`` (a model-level error of one
    member of a tagged union, e.g. ``notifiers.team.slack``): the place is ``loc`` itself."""
    t: Any = Policy
    for p in loc:
        t = _step(t, p)
        if t is None:
            return False
    t = _unwrap(t)
    if get_origin(t) not in (Union, types.UnionType):
        return False
    return any(_tag_of(m) == part for m in get_args(t))


def _unwrap(t: Any) -> Any:
    while get_origin(t) is Annotated:
        t = get_args(t)[0]
    return t


def _tag_of(member: Any) -> str | None:
    if get_origin(member) is Annotated:
        for meta in get_args(member)[1:]:
            if isinstance(meta, Tag):
                return meta.tag
    inner = _unwrap(member)
    if isinstance(inner, type) and issubclass(inner, BaseModel) and "type" in inner.model_fields:
        args = get_args(inner.model_fields["type"].annotation)
        if len(args) == 1 and isinstance(args[0], str):
            return args[0]
    return None


def _step(t: Any, part: str | int) -> Any:
    t = _unwrap(t)
    origin = get_origin(t)
    if origin in (Union, types.UnionType):
        members = [m for m in get_args(t) if m is not type(None)]
        for member in members:
            if _tag_of(member) == part:
                return _unwrap(member)
        return _step(members[0], part) if len(members) == 1 else None
    if origin in (list, tuple):
        return get_args(t)[0]
    if origin is dict:
        return get_args(t)[1]
    if isinstance(t, type) and issubclass(t, BaseModel):
        for name, info in t.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return t  # a union tag pydantic put in the location: same model
    return None


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    t: Any = Policy
    for part in loc:
        t = _step(t, part)
        if t is None:
            return None
    t = _unwrap(t)
    if get_origin(t) in (Union, types.UnionType):
        members = [_unwrap(m) for m in get_args(t) if m is not type(None)]
        t = members[0] if len(members) == 1 else None
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def describe(value: Any) -> str:
    """A found value in YAML terms: ``"5 minutes"``, ``12``, ``true``, ``a mapping (a, b)``."""
    if value is _MISSING:
        return "nothing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        if not value:
            return "an empty mapping"
        keys = ", ".join(str(k) for k in value)
        return f"a mapping with key{'s' if len(value) > 1 else ''} {keys}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    return f"a {type(value).__name__}"


_INPUT_SHOULD = re.compile(r"^Input should be (?:a valid )?")


def _expected(error: ErrorDetails) -> str:
    kind = error["type"]
    msg = error["msg"]
    ctx = error.get("ctx") or {}
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if msg.startswith("expected "):
        return msg
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "expected a number " + msg[len("Input should be ") :]
    if kind == "string_pattern_mismatch":
        return "expected a name of letters, digits, '_', '.', '-' (starting with a letter or digit)"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length', 1)} item"
    if kind in ("literal_error", "enum"):
        return "expected " + msg[len("Input should be ") :]
    if kind == "model_type":
        return "expected a mapping"
    if kind in ("dict_type", "model_attributes_type"):
        return "expected a mapping"
    if kind == "list_type":
        return "expected a list"
    m = _INPUT_SHOULD.match(msg)
    if m:
        rest = msg[m.end() :]
        article = "an" if rest[:1] in "aeiou" else "a"
        rest = rest.split(",", 1)[0]
        return (
            f"expected {article} {rest}"
            if msg[m.start() : m.end()].endswith("valid ")
            else (f"expected {rest}")
        )
    return "expected: " + msg[0].lower() + msg[1:]


def _hint(kind: str, found: Any) -> str:
    """Why a value that reads as a boolean or a number elsewhere is not one here."""
    if kind == "bool_type":
        return " (YAML 1.2: only true and false are booleans)"
    if kind in ("int_type", "float_type") and isinstance(found, str):
        try:
            float(found)
        except ValueError:
            return ""
        return " (quoted, so text: write the number without quotes)"
    return ""


def _problem_for(doc: _Doc, data: Any, error: ErrorDetails) -> Problem:
    kind = error["type"]
    loc, found = _walk(data, tuple(error["loc"]))
    if kind == "extra_forbidden":
        model = _model_at(tuple(error["loc"])[:-1])
        allowed = ", ".join(_keys_of(model)) if model else "a known key"
        key = loc[-1] if loc else error["loc"][-1]
        message = f"unknown key {str(key)!r}: expected one of {allowed}"
        mark = doc.mark(loc, key=True)
    elif kind == "missing":
        message = f"expected key {str(loc[-1])!r} (required); found a mapping without it"
        mark = doc.mark(loc[:-1])
    elif kind in ("union_tag_invalid", "union_tag_not_found") and isinstance(found, dict):
        if "type" in found:
            loc = (*loc, "type")
            found = found["type"]
        tags = (error.get("ctx") or {}).get("expected_tags", "log")
        message = f"expected a notifier `type`: one of {tags}; found {describe(found)}"
        mark = doc.mark(loc)
    else:
        shown = describe(found)
        if isinstance(found, int | float) and loc in doc.texts:
            shown = doc.texts[loc]  # as written: 1e400, .inf, 0x10
        message = f"{_expected(error)}; found {shown}{_hint(kind, found)}"
        mark = doc.mark(loc)
    if not loc and kind == "model_type":
        message = (
            "expected a policy: a mapping with version, settings, notifiers, rules; "
            f"found {describe(found if found is not None else _MISSING)}"
        )
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return Problem(doc.filename, line, column, key_path(loc), message)


def load_policy(text: str, filename: str) -> Policy:
    """Validate policy ``text``; ``filename`` is what problems name. Raises
    :class:`PolicyError` with every problem found (YAML syntax errors stop at the first)."""
    data, doc = parse_yaml(text, filename)
    if doc.texts:
        data = keep_text(Policy, data, (), doc.texts)
    problems = list(doc.problems)
    policy: Policy | None = None
    try:
        # strict: YAML 1.2 types as written; no "yes" or 1 for true, no "5" for 5
        policy = Policy.model_validate(data, strict=True)
    except ValidationError as e:
        reported = {p.path for p in doc.problems}
        for err in e.errors(include_url=False):
            if err["type"] != "policy_reference":
                problem = _problem_for(doc, data, err)
                if problem.path not in reported:  # the YAML problem there says it already
                    problems.append(problem)
    for loc, expected, found in reference_problems(data):
        mark = doc.mark(loc)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problems.append(
            Problem(filename, line, column, key_path(loc), f"{expected}; found {describe(found)}")
        )
    if problems or policy is None:
        if not problems:  # pragma: no cover - validation failed on references alone
            problems.append(Problem(filename, 1, 1, "", "invalid policy"))
        unique = dict.fromkeys(problems)
        raise PolicyError(sorted(unique, key=lambda p: (p.line, p.column, p.path)))
    return policy


def default_policy() -> Policy:
    """The built-in policy: report every kill to a ``log`` notifier, change nothing."""
    return load_policy(DEFAULT_POLICY_YAML, DEFAULT_POLICY_NAME)


# --- the effective policy ----------------------------------------------------------------


def effective_document(policy: Policy) -> dict[str, Any]:
    """The policy with every default resolved, as plain data that loads back to the same
    policy: durations and sizes as written (``15m``, ``512Mi``), absent options left out."""
    doc: dict[str, Any] = policy.model_dump(mode="json")
    listen = doc["settings"]["listen"]
    pruned: dict[str, Any] = _prune(doc)
    pruned["settings"]["listen"] = listen
    return pruned


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


class _Dumper(yaml.SafeDumper):
    """Quotes every text that a YAML 1.1 or a YAML 1.2 reader would take for something
    else: ``"yes"`` and ``"1:30"`` (1.1), ``"1e3"`` and ``"0o17"`` (1.2)."""


_Dumper.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in yaml.SafeDumper.yaml_implicit_resolvers.items()
}
for _tag, _regexp, _first in (
    ("bool", _BOOL, "tTfF"),
    ("int", _INT, "-+0123456789"),
    ("float", _FLOAT, "-+0123456789."),
    ("null", _NULL, "~nN"),
):
    _Dumper.add_implicit_resolver(f"{_CORE}{_tag}", _regexp, list(_first))


def render_yaml(document: Mapping[str, Any]) -> str:
    """``document`` as YAML that reads back the same under YAML 1.2 (and 1.1)."""
    return yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
