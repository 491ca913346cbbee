"""``sentinel health``: ask a running daemon whether it is healthy (a container's
HEALTHCHECK, a systemd watchdog script, a person).

The daemon writes the address it listens on next to its state file (``STATE.address``),
so the check finds it even when ``settings.listen`` picks a port (``:0``) or the policy is
not at hand; ``--url`` overrides. Exit 0: healthy; 1: unhealthy or not answering; 2: no
address to ask.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sentinel.cli.common import EXIT_NOTHING, EXIT_OK
from sentinel.errors import SentinelError

TIMEOUT_S = 5.0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "health",
        help="ask the running daemon whether it is healthy (exit 0) or not (exit 1)",
        description=(
            "GET /healthz of the running `sentinel run`: healthy when its threads live and "
            "its sample ticks go on. The address is read from the file the daemon writes "
            "beside its state (STATE.address), else the policy's settings.listen."
        ),
    )
    p.add_argument("-c", "--config", metavar="POLICY", help="the daemon's policy file")
    p.add_argument("--state", help="the daemon's state file (default: the policy's)")
    p.add_argument("--url", help="ask this URL instead (e.g. http://127.0.0.1:9310/healthz)")
    p.set_defaults(run=run)


def address_file(state: str | Path) -> Path:
    """Where the daemon with this state file writes the address it listens on."""
    return Path(f"{state}.address")


def _url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    from sentinel.cli.policy import load_policy_file

    policy = load_policy_file(args.config)
    state = args.state or policy.settings.state
    path = address_file(state)
    try:
        address = path.read_text().strip()
    except FileNotFoundError:
        address = ""
    except OSError as e:
        raise SentinelError(f"cannot read {path}: {e.strerror}") from e
    if not address:
        address = policy.settings.listen or ""
    if not address:
        raise SentinelError(
            "no HTTP endpoint to ask: settings.listen is null and no daemon wrote "
            f"{path} (give --url)"
        )
    host, _, port = address.rpartition(":")
    if host in ("", "0.0.0.0", "[::]"):  # a wildcard bind: ask over loopback
        host = "127.0.0.1"
    return f"http://{host}:{port}/healthz"


def run(args: argparse.Namespace) -> int:
    url = _url(args)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            body = response.read(200).decode("utf-8", "replace").strip()
    except urllib.error.HTTPError as e:
        body = e.read(200).decode("utf-8", "replace").strip()
        print(f"sentinel: {url}: {e.code} {body}", file=sys.stderr)
        return EXIT_NOTHING
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        print(f"sentinel: {url}: no answer ({reason})", file=sys.stderr)
        return EXIT_NOTHING
    print(body or "ok")
    return EXIT_OK
