"""``sentinel notify --test NOTIFIER`` and ``sentinel render RECORD.json``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from sentinel.cli.common import EXIT_OK
from sentinel.errors import SentinelError, SourceError


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
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        return json.loads(text) if len(lines) != 1 else json.loads(lines[0])
    except json.JSONDecodeError:
        pass
    try:  # several lines of `sentinel parse --format json`: the first record
        return json.loads(lines[0])
    except (json.JSONDecodeError, IndexError) as e:
        raise SourceError(f"{name}: not a JSON kill record ({e})") from e


def notification_for(data: Any, host: str | None = None) -> dict[str, Any]:
    """A kill notification from a parsed or stored record (or a notification as it is)."""
    from sentinel.model import KillRecord

    if not isinstance(data, dict):
        raise SourceError("expected a JSON object: a kill record or a notification")
    if "kind" in data:
        return data
    stored_target = data.get("target") if isinstance(data.get("target"), dict) else None
    raw: dict[str, Any] = data["record"] if isinstance(data.get("record"), dict) else data
    try:
        record = KillRecord.from_dict(raw)
    except TypeError as e:
        raise SourceError(f"not a kill record: {e}") from e
    target = stored_target or {
        "id": record.container_id or f"pid:{record.pid}",
        "name": (record.container_id or "")[:12] or record.comm or f"pid {record.pid}",
        "runtime": "docker" if record.container_id else "process",
    }
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


def _top(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from sentinel.notifiers.slack_render import top_tasks

    return top_tasks(tasks)


def run_render(args: argparse.Namespace) -> int:
    from sentinel.notifiers.slack_render import render

    notification = notification_for(_read_json(args.record), args.host)
    print(json.dumps(render(notification, mention=args.mention), indent=2, ensure_ascii=False))
    return EXIT_OK
