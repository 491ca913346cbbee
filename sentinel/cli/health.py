"""``sentinel health``: ask a running daemon whether it is healthy (a container's
HEALTHCHECK, a systemd watchdog script, a person).

The daemon writes the address it listens on next to its state file (``STATE.address``),
so the check finds it even when ``settings.listen`` picks a port (``:0``) or the policy is
not at hand; ``--url`` overrides. Exit 0: healthy; 1: unhealthy or not answering; 2: no
address to ask.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from sentinel.cli.common import EXIT_NOTHING, EXIT_OK, one_line
from sentinel.errors import SentinelError
from sentinel.units import quoted

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
    p.add_argument(
        "--url",
        type=url_arg,
        help="ask this http(s) URL instead (e.g. http://127.0.0.1:9310/healthz)",
    )
    p.set_defaults(run=run)


def url_arg(text: str) -> str:
    """An argparse type: an ``http`` or ``https`` URL with a host (never ``file:``)."""
    try:
        parts = urllib.parse.urlsplit(text)
        _ = parts.port  # a port that is no number, or out of range: ValueError
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a URL: {quoted(text)} ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"expected an http:// or https:// URL with a host, got {quoted(text)}"
        )
    if any(not c.isprintable() or c.isspace() for c in text):
        raise argparse.ArgumentTypeError(
            f"a URL has no spaces or control characters: {quoted(text)}"
        )
    return text


def _shown(url: str) -> str:
    """``url`` for messages: no user:password, no query string (they may hold secrets)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "?..." if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", "")) + query


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
        address = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        address = ""
    except OSError as e:
        raise SentinelError(f"cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError:
        raise SentinelError(f"{path}: not an address (not text); give --url") from None
    if not address:
        address = policy.settings.listen or ""
    if not address:
        raise SentinelError(
            "no HTTP endpoint to ask: settings.listen is null and no daemon wrote "
            f"{path} (give --url)"
        )
    return health_url(address, path)


def health_url(address: str, origin: Path | str) -> str:
    """``http://HOST:PORT/healthz`` for a listen address (``127.0.0.1:9310``, ``:9310``,
    ``[::1]:9310`` or ``::1:9310`` as a server reports it); a wildcard asks over loopback."""
    host, sep, port = address.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not (sep and port.isascii() and port.isdigit() and int(port) <= 65535) or any(
        c in host for c in "[]/ @?#"
    ):
        raise SentinelError(
            f"{origin}: not an address to ask: {quoted(address)} (expected HOST:PORT)"
        )
    if host in ("", "0.0.0.0"):  # a wildcard bind: ask over loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{int(port)}/healthz"


def run(args: argparse.Namespace) -> int:
    url = _url(args)
    shown = _shown(url)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            body = response.read(200).decode("utf-8", "replace").strip()
    except urllib.error.HTTPError as e:
        body = e.read(200).decode("utf-8", "replace").strip()
        print(f"sentinel: {shown}: {e.code} {one_line(body)}", file=sys.stderr)
        return EXIT_NOTHING
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        print(f"sentinel: {shown}: no answer ({one_line(str(reason))})", file=sys.stderr)
        return EXIT_NOTHING
    except http.client.HTTPException as e:  # something listens, but does not speak HTTP
        print(f"sentinel: {shown}: no HTTP answer ({type(e).__name__})", file=sys.stderr)
        return EXIT_NOTHING
    except ValueError as e:  # a URL urllib refuses (checked before, so unlikely)
        raise SentinelError(f"{shown}: cannot ask this URL ({e})") from e
    print(one_line(body) or "ok")
    return EXIT_OK
