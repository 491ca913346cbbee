"""What every subcommand shares: exit codes, output format choice, a progress bar."""

from __future__ import annotations

import sys
from typing import TextIO

EXIT_OK = 0
EXIT_NOTHING = 1
EXIT_ERROR = 2


def default_format(stream: TextIO = sys.stdout) -> str:
    """``table`` for a person at a terminal, ``json`` for a pipe or a file."""
    return "table" if stream.isatty() else "json"


class ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, total: int, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.total = max(total, 1)
        self.stream = stream
        self.enabled = stream.isatty()
        self._last = -1

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        pct = min(100, done * 100 // self.total)
        if pct == self._last:
            return
        self._last = pct
        width = 30
        filled = width * pct // 100
        self.stream.write(
            f"\r{self.label[-40:]:<40} [{'#' * filled}{'.' * (width - filled)}] {pct:3d}%"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._last >= 0:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()
