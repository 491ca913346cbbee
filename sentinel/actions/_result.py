"""Building :class:`~sentinel.model.ActionResult` values the same way in every action."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sentinel.clients.docker import ContainerInfo
from sentinel.model import ActionResult, Target


class DockerControl(Protocol):
    """What the actions need of :class:`sentinel.clients.docker.DockerClient` (tests may
    hand in their own adapter; never a mock of the ``docker`` library)."""

    def inspect(self, container_id: str) -> ContainerInfo: ...

    def restart(self, container_id: str, *, grace_seconds: float) -> None: ...

    def kill(self, container_id: str, signal: str) -> None: ...


def done(action: str, target: Target, detail: Mapping[str, Any]) -> ActionResult:
    return ActionResult(action, target.id, ok=True, detail=detail, outcome="done")


def would(action: str, target: Target, detail: Mapping[str, Any]) -> ActionResult:
    """Dry run: what would have been done, nothing changed."""
    return ActionResult(action, target.id, ok=True, dry_run=True, detail=detail, outcome="dry_run")


def _not_ok(
    action: str,
    target: Target,
    outcome: str,
    *,
    error: str,
    detail: Mapping[str, Any] | None,
    dry_run: bool,
) -> ActionResult:
    return ActionResult(
        action,
        target.id,
        ok=False,
        dry_run=dry_run,
        detail=detail or {},
        error=error,
        outcome=outcome,
    )


def failed(
    action: str,
    target: Target,
    error: str,
    detail: Mapping[str, Any] | None = None,
    *,
    dry_run: bool = False,
) -> ActionResult:
    return _not_ok(action, target, "failed", error=error, detail=detail, dry_run=dry_run)


def refused(
    action: str,
    target: Target,
    reason: str,
    detail: Mapping[str, Any] | None = None,
    *,
    dry_run: bool = False,
) -> ActionResult:
    return _not_ok(
        action, target, "refused", error=f"refused: {reason}", detail=detail, dry_run=dry_run
    )


def dropped(action: str, target: Target, why: str, *, dry_run: bool = False) -> ActionResult:
    return _not_ok(action, target, "dropped", error=f"dropped: {why}", detail=None, dry_run=dry_run)
