"""``sentinel run``: the daemon. ``sentinel events``: what it recorded."""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentinel.cli.common import (
    EXIT_NOTHING,
    EXIT_OK,
    default_format,
    duration_arg,
    split_listen,
)
from sentinel.errors import SentinelError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="watch memory and kernel OOM kills, and act on the policy",
        description=(
            "The daemon: sample every container's memory, forecast its OOM kill, read the "
            "kernel's kill records, and follow the policy (the built-in default without -c: "
            "record and report every kill, forecast every container, change nothing). Logs "
            "one JSON line per decision and action on stderr; SIGTERM stops it cleanly."
        ),
    )
    p.add_argument("-c", "--config", metavar="POLICY", help="policy file (YAML)")
    p.add_argument("--dry-run", action="store_true", help="decide and log, never act")
    p.add_argument(
        "--mode",
        choices=("host", "kubernetes", "sidecar"),
        default="host",
        help="host: every container on this host (Docker); kubernetes: the containers of "
        "the pods on this node (the DaemonSet); sidecar: the processes of this PID namespace",
    )
    p.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubernetes mode: a kubeconfig (default: in-cluster, else $KUBECONFIG)",
    )
    p.add_argument("--node", help="kubernetes mode: this node's name (default: $NODE_NAME)")
    p.add_argument("--state", help="state file (overrides settings.state)")
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address for /healthz /readyz /metrics, e.g. 127.0.0.1:9310 ('' to disable)",
    )
    p.add_argument("--docker-url", help="Docker socket (default unix:///var/run/docker.sock)")
    p.add_argument("--kmsg-path", type=Path, default=Path("/dev/kmsg"), help=argparse.SUPPRESS)
    p.add_argument(
        "--cgroup-root", type=Path, default=Path("/sys/fs/cgroup"), help=argparse.SUPPRESS
    )
    p.set_defaults(run=run)

    e = sub.add_parser(
        "events",
        help="list what the daemon recorded: kills, forecasts that fired, actions",
        description="Kills (with container names), decisions and actions, from the state.",
    )
    e.add_argument("-c", "--config", metavar="POLICY", help="policy file naming the state")
    e.add_argument("--state", help="state file (default: the policy's settings.state)")
    e.add_argument(
        "--since",
        type=duration_arg,
        default=86400.0,
        metavar="DURATION",
        help="how far back, e.g. 30m, 24h, 7d (default 24h)",
    )
    e.add_argument("--format", choices=("json", "table"), help="default: table on a terminal")
    e.set_defaults(run=run_events)


def _policy(args: argparse.Namespace) -> Any:
    from sentinel.cli.policy import load_policy_file

    return load_policy_file(args.config)


def run(args: argparse.Namespace) -> int:
    from sentinel.runtime import logs
    from sentinel.runtime.daemon import Daemon, Options

    policy = _policy(args)  # a PolicyError is reported by main: exit 2, nothing started
    app_limit = _app_memory_limit() if args.mode == "sidecar" else None
    listen = args.listen if args.listen is not None else policy.settings.listen
    if listen:  # '' or null: no HTTP endpoint
        check_listen(listen, "--listen" if args.listen is not None else "settings.listen")
    logs.configure()
    options = Options(
        mode=args.mode,
        dry_run=args.dry_run,
        kmsg=args.kmsg_path,
        cgroup_root=args.cgroup_root,
        docker_url=args.docker_url,
        listen=args.listen,
        state=args.state,
        app_memory_limit=app_limit,
        kubeconfig=args.kubeconfig,
        node=args.node,
    )
    daemon = Daemon(policy, options)  # a StoreError is reported by main: exit 2
    return daemon.run_forever()


def check_listen(listen: str, origin: str) -> None:
    """Refuse, before anything starts, an address the HTTP endpoint cannot listen on: bind
    it once with the endpoint's own server and let it go."""
    from sentinel.runtime.http import HealthServer, Metrics

    host, port = split_listen(listen, origin)
    try:
        server = HealthServer(listen.strip(), Metrics(), healthy=_yes, ready=_yes)
    except SentinelError as e:
        if ":" in host:
            cause = e.__cause__
            why = getattr(cause, "strerror", None) or cause or e
            raise SentinelError(
                f"{origin} {listen}: the HTTP endpoint cannot listen on IPv6 ({why}); give an"
                f" IPv4 address such as 127.0.0.1:{port} or 0.0.0.0:{port}"
            ) from e
        raise SentinelError(f"{origin} {listen}: {e}") from e
    except OverflowError as e:  # a port the socket module refuses outright
        raise SentinelError(f"{origin} {listen}: {e}") from e
    server.server.server_close()


def _yes() -> bool:
    return True


def _app_memory_limit() -> int | None:
    """``SENTINEL_APP_MEMORY_LIMIT``: the app's limit in sidecar mode (a size, or bytes as
    the Kubernetes Downward API gives them); unset or empty: none."""
    from sentinel.runtime.sidecar import APP_LIMIT_ENV
    from sentinel.units import parse_size

    text = os.environ.get(APP_LIMIT_ENV, "").strip()
    if not text:
        return None
    if re.fullmatch(r"[0-9.]+\s*[kmgt]", text):
        raise SentinelError(
            f"{APP_LIMIT_ENV}={text!r} is ambiguous (Docker reads {text[-1]} as powers of 1024,"
            f" Kubernetes as powers of 1000 or milli): write {text[:-1].strip()}"
            f"{text[-1].upper()}i or {text[:-1].strip()}{text[-1].upper()}"
        )
    try:
        value = parse_size(text)
    except ValueError as e:
        raise SentinelError(
            f"{APP_LIMIT_ENV}: expected a size such as 192Mi, 1GiB or 201326592; found {text!r}"
        ) from e
    if value <= 0:
        raise SentinelError(f"{APP_LIMIT_ENV}: expected a size above 0; found {text!r}")
    return value


def run_events(args: argparse.Namespace) -> int:
    """Only reads: the state is opened read-only, never created nor written."""
    from sentinel.store import Store

    state = args.state
    if state is None:
        state = _policy(args).settings.state
    since = time.time() - args.since
    store = Store.open_read_only(state)  # a StoreError (missing, not a state) -> exit 2
    try:
        rows = _event_rows(store, since)
    except sqlite3.DatabaseError as e:
        raise SentinelError(f"state file {state}: cannot read it ({e})") from e
    except (ValueError, TypeError, KeyError) as e:  # a row sentinel did not write
        raise SentinelError(f"state file {state}: a row is not as sentinel writes it ({e})") from e
    finally:
        store.close()
    rows.sort(key=lambda r: r["at"])
    fmt = args.format or default_format()
    if fmt == "json":
        for row in rows:
            print(json.dumps(row, default=str))
    else:
        print(f"{'TIME':20}  {'EVENT':10}  {'TARGET':28}  WHAT")
        for row in rows:
            print(_event_line(row))
    return EXIT_OK if rows else EXIT_NOTHING


def _event_rows(store: Any, since: float) -> list[dict[str, Any]]:
    """Kills and decisions since ``since``. A kill row carries its full ``record``, so
    ``sentinel render`` takes it as it is; a notify or escalate row names its notifiers."""
    rows: list[dict[str, Any]] = []
    for k in store.kills(since=since):
        r = k.record
        rows.append(
            {
                "at": k.recorded_at,
                "event": "kill",
                "target": k.target_name,
                "target_id": k.target_id,
                "pid": r.pid,
                "comm": r.comm,
                "scope": r.scope,
                "rss_kb": r.rss_kb,
                "constraint": r.constraint,
                "image": (k.target or {}).get("image"),
                "labels": (k.target or {}).get("labels"),
                "runtime": (k.target or {}).get("runtime"),
                "record": r.to_dict(),
            }
        )
    for d in store.decisions(since=since):
        row: dict[str, Any] = {
            "at": d.at,
            "event": "escalation" if d.action == "escalate" else "decision",
            "rule": d.rule,
            "action": d.action,
            "target": d.target_name,
            "target_id": d.target_id,
            "outcome": d.outcome,
            "dry_run": d.dry_run,
            "reason": d.evidence.get("reason"),
            "evidence": d.evidence.get("evidence"),
        }
        if d.action in ("notify", "escalate"):
            row["notifiers"] = _notifiers(d.evidence)
        if d.action == "snapshot":  # what the probe answered: its top growth sites
            result = d.evidence.get("result") or {}
            row["error"] = result.get("error")
            row["probe"] = (result.get("detail") or {}).get("report")
        rows.append(row)
    return rows


def _notifiers(evidence: Any) -> list[str]:
    """The notifiers a notify or escalate decision queued for (as the daemon recorded)."""
    names = evidence.get("notifiers")
    if isinstance(names, list):
        return [str(n) for n in names]
    params = evidence.get("params") or {}
    if isinstance(params.get("value"), str):  # notify: NAME
        return [params["value"]]
    if isinstance(params.get("notifiers"), list):  # escalate: notifiers: [...]
        return [str(n) for n in params["notifiers"]]
    return []


def _event_line(row: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(row["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
    if row["event"] == "kill":
        rss = f"{row['rss_kb'] / 1024:.1f} MiB" if row["rss_kb"] is not None else "?"
        what = f"{row['comm']}[{row['pid']}] killed, {row['scope'] or '?'} OOM, RSS {rss}"
    else:
        dry = " (dry run)" if row["dry_run"] else ""
        to = f" via {', '.join(row['notifiers']) or '?'}" if "notifiers" in row else ""
        what = f"{row['rule']}: {row['action']}{to} -> {row['outcome']}{dry}: {row['reason']}"
        if row.get("probe") or row.get("error"):
            what += f"; {_probe_words(row.get('probe'), row.get('error'))}"
    return f"{when:20}  {row['event']:10}  {str(row['target'])[:28]:28}  {what}"


def _probe_words(probe: Any, error: Any) -> str:
    """A snapshot's answer on one line: the top growth sites, or why there is none."""
    from sentinel.notifiers.slack_render import human_bytes

    sites = [s for s in (probe or {}).get("sites") or [] if isinstance(s, dict)]
    grew = [s for s in sites if isinstance(s.get("growth_bytes"), int) and s["growth_bytes"] > 0]
    if not grew:
        return str(error) if error else "the probe saw no growth"
    parts = []
    for s in grew[:3]:
        rate = s.get("growth_per_hour_bytes")
        per_hour = f", {human_bytes(rate)}/h" if isinstance(rate, int) else ""
        steady = ", steady" if s.get("steady") else ""
        parts.append(
            f"{s.get('file')}:{s.get('line')} +{human_bytes(s['growth_bytes'])}{per_hour}{steady}"
        )
    return "top growth: " + "; ".join(parts)
