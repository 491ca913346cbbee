"""``sentinel check`` and ``sentinel schema``: validate a policy file, print its JSON Schema."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentinel.cli.common import EXIT_OK
from sentinel.errors import SourceError

if TYPE_CHECKING:  # pydantic models load in ~0.1 s: only the commands that use them pay
    from sentinel.policy.model import Policy


def register(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="validate a policy file and print the effective policy",
        description=(
            "Validate POLICY and print the effective policy, every default resolved (YAML, "
            "or JSON with --format json); without POLICY, the built-in default policy. "
            "Exit 0 when valid; 2 with every problem on stderr as FILE:LINE:COLUMN: KEY "
            "PATH: what was expected; what was found."
        ),
    )
    p.add_argument("policy", nargs="?", metavar="POLICY", help="a policy file, or '-' for stdin")
    p.add_argument(
        "--format", choices=("yaml", "json"), default="yaml", help="output format (default yaml)"
    )
    p.set_defaults(run=run_check)

    s = sub.add_parser(
        "schema",
        help="print the policy file's JSON Schema",
        description=(
            "Print the JSON Schema of policy files, for editors to validate and complete "
            "them (e.g. '# yaml-language-server: $schema=sentinel-policy.json')."
        ),
    )
    s.set_defaults(run=run_schema)


def read_policy_text(name: str) -> str:
    """The text of a policy file (``-``: stdin), or a :class:`SourceError` saying why not.
    Reads at most :data:`MAX_POLICY_BYTES` (a :class:`PolicyError` beyond): a policy is never
    that large, and ``/dev/zero`` must not fill the memory."""
    from sentinel.policy.load import MAX_POLICY_BYTES, too_large

    shown = "<stdin>" if name == "-" else name
    try:
        if name == "-" and not hasattr(sys.stdin, "buffer"):  # a text stream (tests)
            data = sys.stdin.read(MAX_POLICY_BYTES + 1).encode("utf-8", "surrogatepass")
        elif name == "-":
            data = sys.stdin.buffer.read(MAX_POLICY_BYTES + 1)
        else:
            with Path(name).open("rb") as f:
                data = f.read(MAX_POLICY_BYTES + 1)
        if len(data) > MAX_POLICY_BYTES:
            raise too_large(shown)
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SourceError(f"{shown}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise SourceError(f"{shown}: cannot read the policy: {e.strerror or e}") from e


def load_policy_file(name: str | None) -> Policy:
    """The policy in file ``name``, or the built-in default when ``name`` is None."""
    from sentinel.policy import default_policy, load_policy

    if name is None:
        return default_policy()
    return load_policy(read_policy_text(name), "<stdin>" if name == "-" else name)


def run_check(args: argparse.Namespace) -> int:
    from sentinel.policy import effective_document
    from sentinel.policy.load import render_yaml

    policy = load_policy_file(args.policy)  # a PolicyError is reported by main: exit 2
    document = effective_document(policy)
    if args.format == "json":
        print(json.dumps(document, indent=2))
    else:
        sys.stdout.write(render_yaml(document))
    return EXIT_OK


def policy_schema() -> dict[str, Any]:
    from sentinel.policy.docs import policy_json_schema

    return policy_json_schema()


def run_schema(args: argparse.Namespace) -> int:
    print(json.dumps(policy_schema(), indent=2))
    return EXIT_OK
