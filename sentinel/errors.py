"""sentinel's own error vocabulary: what went wrong, said once, in the user's terms."""

from __future__ import annotations


class SentinelError(Exception):
    """An error reported to the user as one clear line (exit code 2 at the CLI)."""


class SourceError(SentinelError):
    """A log source could not be opened or read (missing file, no permission, ...)."""


class TemporaryError(SentinelError):
    """A failure worth retrying after ``delay`` seconds (a daemon restarting, a 5xx)."""

    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay
