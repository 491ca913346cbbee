"""The ``log`` notifier: one JSON line per notification on stdout."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO

_lock = threading.Lock()


class LogSender:
    """Writes each notification as one JSON object on one line (stdout by default)."""

    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self.name = name
        self.stream = stream

    def send(self, notification: Mapping[str, Any]) -> None:
        out = self.stream or sys.stdout
        line = json.dumps({"notifier": self.name, **notification}, default=str)
        with _lock:
            out.write(line + "\n")
            out.flush()
