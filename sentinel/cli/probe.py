"""``sentinel probe export DIR``: the allocation probe as one file for an app's image.

The probe (:mod:`sentinel.probe`) imports only the standard library, so the file runs in any
Python >= 3.10 image without sentinel: copy it next to the app and start the app with
``python -m sentinel_probe -- app.py`` (or ``import sentinel_probe;
sentinel_probe.start()`` in the app).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from sentinel.cli.common import EXIT_OK
from sentinel.errors import SentinelError

EXPORTED_NAME = "sentinel_probe.py"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "probe",
        help="the Python allocation probe for the `snapshot` action (export it for an image)",
        description=(
            "The allocation probe a Python service runs so that the `snapshot` action can ask "
            "it for its top growth sites. It needs nothing but the standard library."
        ),
    )
    actions = p.add_subparsers(dest="probe_command", required=True, metavar="ACTION")
    e = actions.add_parser(
        "export",
        help="write the probe as DIR/sentinel_probe.py",
        description=(
            "Write the probe as DIR/sentinel_probe.py (DIR is made if missing). In the app's "
            "image: `python -m sentinel_probe -- app.py ARGS` runs the app with the probe, or "
            "`import sentinel_probe; sentinel_probe.start()` in the app. Settings come from "
            "SENTINEL_PROBE_DIR, SENTINEL_PROBE_FRAMES, SENTINEL_PROBE_WARMUP, "
            "SENTINEL_PROBE_INTERVAL and SENTINEL_PROBE_TOP."
        ),
    )
    e.add_argument("dir", type=Path, metavar="DIR", help="where to write sentinel_probe.py")
    e.set_defaults(run=run_export)


def source() -> bytes:
    """The probe's source, as shipped with this sentinel."""
    from sentinel import probe

    return Path(probe.__file__).read_bytes()


def run_export(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    if directory.exists() and not directory.is_dir():
        raise SentinelError(f"{directory}: not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / EXPORTED_NAME
    tmp = directory / f".{EXPORTED_NAME}.{os.getpid()}.tmp"
    tmp.write_bytes(source())
    tmp.chmod(0o644)
    tmp.replace(path)
    print(path)
    return EXIT_OK
