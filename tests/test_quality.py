"""Lint, format, strict types and import layering are part of the test suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Executable Python scripts without a .py ending: ruff lints them only when named.
SCRIPTS = tuple(
    str(p.relative_to(REPO))
    for p in sorted((REPO / "bench").iterdir())
    if p.is_file()
    and not p.suffix
    and p.read_text(errors="replace").startswith("#!/usr/bin/env python")
)


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "cmd",
    [
        ("ruff", "check", "sentinel", "tests", "bench", *SCRIPTS),
        ("ruff", "format", "--check", "sentinel", "tests", "bench", *SCRIPTS),
        ("mypy",),
        ("lint-imports",),
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict", "import-linter"],
)
def test_tool_is_clean(cmd: tuple[str, ...]) -> None:
    result = _run(str(BIN / cmd[0]), *cmd[1:])
    assert result.returncode == 0, result.stdout + result.stderr
