"""What is wrong with a policy file, each problem with its place: file, line, column, key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sentinel.errors import SentinelError


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a policy file. ``line`` and ``column`` count from 1; ``path`` is
    the key path (``rules[0].when.projected_oom_within``), empty for the whole document.
    ``message`` says what was expected and what was found."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class PolicyError(SentinelError):
    """A policy file that cannot be used; carries every problem found, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
