"""The ``sentinel`` command: thin argument parsing over the rest of the package.

Exit codes (every subcommand): 0 success / something found, 1 nothing found (or
unhealthy), 2 a user error (one line on stderr names what failed), 70 an internal error (a
bug in sentinel: one short line, the traceback only with ``-v``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Sequence

from sentinel import __version__
from sentinel.cli.common import (
    EXIT_ERROR,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Formatter,
    configure_logging,
    imports_done,
    one_line,
)
from sentinel.errors import SentinelError

MODULES = ("parse", "policy", "forecast", "top", "run", "notify", "health", "probe")
"""The modules under ``sentinel.cli`` that register subcommands, in ``--help`` order."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or (``only``) just one module's subcommands: ``sentinel
    parse`` then imports nothing else (it reads logs at grep's pace; startup counts)."""
    parser = argparse.ArgumentParser(
        prog="sentinel",
        formatter_class=Formatter,
        description="Keeps memory-leaking containers from dying silently.",
    )
    parser.add_argument("--version", action="version", version=f"sentinel {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log detail on stderr"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in (only,) if only else MODULES:
        importlib.import_module(f"sentinel.cli.{name}").register(sub)
    return parser


def entry() -> int:
    """The ``sentinel`` command: :func:`main` with the cyclic garbage collector off while
    the modules load (tens of thousands of objects, none of them garbage: each collection
    would only walk them). The command turns it back on once it has what it works with
    (:func:`~sentinel.cli.common.imports_done`): ``sentinel parse`` of a large file ends
    3-7% sooner (``bench/parse``, interleaved runs)."""
    gc.disable()
    try:
        return main()
    finally:
        gc.enable()


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is no option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only="parse" if _command(words) == "parse" else None)
    args = parser.parse_args(words)
    if not getattr(args, "lazy_logging", False):  # parse sets it up if it will log
        configure_logging(args.verbose)
        imports_done()  # parse says when, after the imports its reader process runs beside
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
            print(f"sentinel: error: {one_line(str(e))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_OK
    except OSError as e:  # the machine said no (a full disk, a vanished terminal): not a bug
        where = f": {e.filename}" if e.filename else ""
        print(f"sentinel: error: {one_line(str(e.strerror or e))}{where}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:
        return _internal_error(e, verbose=args.verbose > 0)
    return code


def _internal_error(e: Exception, *, verbose: bool) -> int:
    """A bug: one short line naming the exception and where it rose (not its message,
    which may hold anything, a token included); the traceback only with ``-v``."""
    import traceback  # only here: 5 ms of every start-up otherwise

    if verbose:
        traceback.print_exception(e, file=sys.stderr)
    frames = traceback.extract_tb(e.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        name = last.filename
        marker = f"{os.sep}sentinel{os.sep}"
        if marker in name:
            name = "sentinel" + os.sep + name.rsplit(marker, 1)[1]
        else:
            name = os.path.basename(name)
        where = f" at {name}:{last.lineno}"
    hint = "" if verbose else "; run with -v for the traceback"
    print(
        f"sentinel: internal error: {type(e).__name__}{where}{hint}",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def _quiet_stdout() -> None:
    """The reader of stdout went away (``sentinel parse | head``): point stdout at
    /dev/null so Python's flush at exit does not print a second BrokenPipeError."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a StringIO in tests: nothing to redirect
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(entry())
