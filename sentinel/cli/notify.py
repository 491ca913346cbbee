"""``sentinel notify --test NOTIFIER`` and ``sentinel render RECORD.json``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sentinel.cli.common import EXIT_OK
from sentinel.errors import SentinelError, SourceError
from sentinel.model import KillRecord

log = logging.getLogger("sentinel.cli")


def register(sub: Any) -> None:
    n = sub.add_parser(
        "notify",
        help="send a test message through a notifier of the policy",
        description=(
            "Send a sample message through NOTIFIER as declared in the policy (the built-in "
            "default without -c), straight away, without the outbox: exit 0 when the "
            "receiver accepted it, 2 with the reason (the token redacted) when not."
        ),
    )
    n.add_argument("--test", required=True, metavar="NOTIFIER", help="the notifier's name")
    n.add_argument("-c", "--config", metavar="POLICY", help="policy file (YAML)")
    n.set_defaults(run=run_notify)

    r = sub.add_parser(
        "render",
        help="print the Slack Block Kit message for a kill record",
        description=(
            "Print the Slack message (JSON: fallback text and Block Kit blocks) for a kill "
            "record: one line of `sentinel parse --format json`, a record as stored, or a "
            "notification from the outbox. Paste the blocks into Slack's Block Kit Builder."
        ),
    )
    r.add_argument("record", metavar="RECORD.json", help="a JSON file, or '-' for stdin")
    r.add_argument("--host", help="host name to show (default: the record's, or this host)")
    r.add_argument("--mention", help="who to ping, e.g. '<!subteam^S0123>'")
    r.set_defaults(run=run_render)


def run_notify(args: argparse.Namespace) -> int:
    import os

    from sentinel.cli.policy import load_policy_file
    from sentinel.notifiers.log import LogSender
    from sentinel.notifiers.slack import SlackSender
    from sentinel.notifiers.webhook import WebhookSender

    policy = load_policy_file(args.config)
    config = policy.notifiers.get(args.test)
    if config is None:
        names = ", ".join(policy.notifiers) or "none"
        raise SentinelError(f"no notifier named {args.test!r} in the policy (declared: {names})")
    notification = {
        "kind": "test",
        "notifier": args.test,
        "text": f"sentinel test message from {os.uname().nodename}",
        "at": time.time(),
        "host": os.uname().nodename,
    }
    if config.type == "slack":
        sender = SlackSender(args.test, config)
        who = sender.client().auth_test()
        sender.send(notification)
        if who.get("team"):
            print(f"sent: Slack team {who.get('team')}, as {who.get('user')}", file=sys.stderr)
    elif config.type == "webhook":
        WebhookSender(args.test, config).send(notification)
    else:
        LogSender(args.test).send(notification)
    print(f"notifier {args.test}: test message accepted", file=sys.stderr)
    return EXIT_OK


def _read_json(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as e:
        raise SourceError(f"{name}: cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise SourceError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        try:
            return json.loads(text) if len(lines) != 1 else json.loads(lines[0])
        except json.JSONDecodeError:
            pass
        try:  # several lines of `sentinel parse --format json`: the first record
            return json.loads(lines[0])
        except IndexError:
            raise SourceError(f"{name}: empty (expected a JSON kill record)") from None
        except json.JSONDecodeError as e:
            raise SourceError(f"{name}: not a JSON kill record ({e})") from e
    except RecursionError:
        raise SourceError(f"{name}: JSON nested too deeply to be a kill record") from None


_KILL_KEYS: dict[str, str] = {
    ("global" if f.name == "global_" else f.name): str(f.type)
    for f in dataclasses.fields(KillRecord)
}
"""Every key of a kill record and its declared type (``int | None``, ...)."""


def _kind_of(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), "null" if value is None else type(value).__name__)


def _fits(value: Any, declared: str) -> bool:
    if value is None:
        return declared.endswith("| None")
    base = declared.removesuffix(" | None")
    if base == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if base == "float":
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    if base == "str":
        return isinstance(value, str)
    if base == "bool":
        return isinstance(value, bool)
    if base.startswith("tuple[TaskRow"):
        return isinstance(value, list) and all(
            isinstance(row, dict)
            and all(
                isinstance(k, str) and isinstance(v, int | str) and not isinstance(v, bool)
                for k, v in row.items()
            )
            for row in value
        )
    if base.startswith("Mapping[str, int]"):
        return isinstance(value, dict) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value.values()
        )
    return False  # pragma: no cover - a field type this check does not know yet


def check_kill_record(data: Mapping[str, Any], where: str = "") -> None:
    """Raise :class:`SourceError` naming the first key of ``data`` that a kill record does
    not have, or has with another type (``pid`` is required)."""
    prefix = f"{where}: " if where else ""
    if "pid" not in data:
        raise SourceError(f"{prefix}not a kill record: no 'pid' key")
    for key, value in data.items():
        declared = _KILL_KEYS.get(key)
        if declared is None:
            raise SourceError(f"{prefix}not a kill record: unknown key {key!r}"[:200])
        if not _fits(value, declared):
            base = declared.removesuffix(" | None")
            expected = {
                "int": "an integer",
                "float": "a finite number",
                "str": "a string",
                "bool": "a boolean",
            }.get(base, "a list of task rows" if base.startswith("tuple") else "an object")
            raise SourceError(
                f"{prefix}not a kill record: {key!r} should be {expected}, got {_kind_of(value)}"
            )


_NOTIFICATION_TYPES: dict[str, tuple[type, ...]] = {
    "kind": (str,),
    "rule": (str,),
    "reason": (str,),
    "text": (str,),
    "host": (str,),
    "notifier": (str,),
    "target": (dict,),
    "record": (dict,),
    "evidence": (dict,),
    "memory": (dict,),
    "forecast": (dict,),
    "after": (dict,),
    "actions": (list,),
    "kills": (list,),
    "top_tasks": (list,),
    "at": (int, float),
}
"""The keys a notification's renderer reads, and the JSON types they may have."""


def check_notification(data: Mapping[str, Any], where: str = "") -> None:
    """Raise :class:`SourceError` on a notification key of the wrong JSON type. The values
    inside (a record's fields) may be anything: the renderer shows them inert."""
    prefix = f"{where}: " if where else ""
    for key, types in _NOTIFICATION_TYPES.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            raise SourceError(
                f"{prefix}not a notification: {key!r} is {_kind_of(value)}"
                f" ({' or '.join(t.__name__ for t in types)} expected)"
            )
    target = data.get("target") or {}
    for key in ("id", "name"):
        if target.get(key) is not None and not isinstance(target[key], str):
            raise SourceError(f"{prefix}not a notification: 'target.{key}' is not a string")


def notification_for(data: Any, host: str | None = None, where: str = "") -> dict[str, Any]:
    """A kill notification from a parsed or stored record, a ``sentinel events --format
    json`` kill row, or a notification as it is (checked: a wrong-typed key is a
    :class:`SourceError` naming it)."""
    prefix = f"{where}: " if where else ""
    if not isinstance(data, dict):
        raise SourceError(
            f"{prefix}expected a JSON object (a kill record or a notification), "
            f"got {_kind_of(data)}"
        )
    if "kind" in data:
        check_notification(data, where)
        return data
    if data.get("event") == "kill" and isinstance(data.get("record"), dict):
        raw: dict[str, Any] = data["record"]  # a row of `sentinel events`
        stored_target = _event_target(data, prefix)
    else:
        stored_target = data.get("target") if isinstance(data.get("target"), dict) else None
        raw = data["record"] if isinstance(data.get("record"), dict) else data
    check_kill_record(raw, where)
    try:
        record = KillRecord.from_dict(raw)
    except TypeError as e:  # check_kill_record lets nothing through from_dict refuses
        raise SourceError(f"{prefix}not a kill record: {e}") from e
    target = stored_target or {
        "id": record.container_id or f"pid:{record.pid}",
        "name": (record.container_id or "")[:12] or record.comm or f"pid {record.pid}",
        "runtime": "docker" if record.container_id else "process",
    }
    if not isinstance(target.get("name"), str):
        raise SourceError(f"{prefix}not a kill record: the target has no name")
    full = record.to_dict()
    return {
        "kind": "kill",
        "rule": "render",
        "target": target,
        "reason": "the kernel killed a process",
        "evidence": {"condition": "oom_killed", "scope": record.scope},
        "text": f"OOM kill: {target['name']}",
        "host": host or record.host or "this host",
        "record": {k: v for k, v in full.items() if k != "tasks"},
        "top_tasks": _top(full.get("tasks") or []),
    }


def _event_target(row: Mapping[str, Any], prefix: str) -> dict[str, Any] | None:
    """The target of a ``sentinel events`` kill row (its name, id, runtime, image)."""
    name, ident = row.get("target"), row.get("target_id")
    if name is None and ident is None:
        return None
    for key, value in (("target", name), ("target_id", ident), ("image", row.get("image"))):
        if value is not None and not isinstance(value, str):
            raise SourceError(f"{prefix}not a kill row: {key!r} is {_kind_of(value)}")
    labels = row.get("labels")
    if labels is not None and not isinstance(labels, dict):
        raise SourceError(f"{prefix}not a kill row: 'labels' is {_kind_of(labels)}")
    target: dict[str, Any] = {"id": ident or name, "name": name or ident}
    runtime = row.get("runtime")
    target["runtime"] = runtime if isinstance(runtime, str) else "docker"
    if row.get("image"):
        target["image"] = row["image"]
    if labels:
        target["labels"] = labels
    return target


def _top(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from sentinel.notifiers.slack_render import top_tasks

    return top_tasks(tasks)


def run_render(args: argparse.Namespace) -> int:
    from sentinel.notifiers.slack_render import render

    name = "<stdin>" if args.record == "-" else args.record
    notification = notification_for(_read_json(args.record), args.host, name)
    try:
        message = render(notification, mention=args.mention)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        # The checks above cover what the renderer reads; a key they missed is still the
        # input's fault, not a crash (the traceback with -v, for a bug report).
        log.info("render failed", exc_info=True)
        raise SourceError(
            f"{name}: cannot render this record: a key has an unexpected value ({type(e).__name__})"
        ) from e
    print(json.dumps(message, indent=2, ensure_ascii=False))
    return EXIT_OK
