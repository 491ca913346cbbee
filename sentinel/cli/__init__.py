"""The ``sentinel`` command: thin argument parsing over the rest of the package.

Exit codes (every subcommand): 0 success / something found, 1 nothing found, 2 an error
(the message names what failed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from sentinel import __version__
from sentinel.cli import forecast as forecast_cmd
from sentinel.cli import health as health_cmd
from sentinel.cli import notify as notify_cmd
from sentinel.cli import parse as parse_cmd
from sentinel.cli import policy as policy_cmd
from sentinel.cli import run as run_cmd
from sentinel.cli import top as top_cmd
from sentinel.cli.common import EXIT_ERROR, EXIT_OK
from sentinel.errors import SentinelError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentinel",
        description="Keeps memory-leaking containers from dying silently.",
    )
    parser.add_argument("--version", action="version", version=f"sentinel {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log detail on stderr"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parse_cmd.register(sub)
    policy_cmd.register(sub)
    forecast_cmd.register(sub)
    top_cmd.register(sub)
    run_cmd.register(sub)
    notify_cmd.register(sub)
    health_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG
        if args.verbose > 1
        else logging.INFO
        if args.verbose
        else logging.WARNING,
        format="sentinel: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.run(args)
    except SentinelError as e:
        problems = getattr(e, "problems", None)  # a PolicyError: every problem, in place
        if problems:
            for problem in problems:
                print(problem, file=sys.stderr)
            count = len(problems)
            print(
                f"sentinel: {count} problem{'s' if count != 1 else ''} in the policy",
                file=sys.stderr,
            )
        else:
            print(f"sentinel: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
