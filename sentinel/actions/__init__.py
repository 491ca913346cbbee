"""Side effects on targets: restart, oom_score_adj, signal, run (hooks), snapshot (the
allocation probe's report).

Each action takes the target, its settings and ``dry_run``, and returns an
:class:`~sentinel.model.ActionResult`; expected failures (a container gone, a process
exited, Docker away, a safety rail) are results, never exceptions. In dry run an action
reads what it needs to say what it would do, and changes nothing.

:func:`execute` carries out one :class:`~sentinel.policy.Decision`: it re-checks a
disruptive one (restart, signal, run) just before acting, dispatches, and logs one JSON line
on the ``sentinel.actions`` logger. The daemon also calls
:func:`~sentinel.actions.oom_score_adj.reapply` every sample tick, so that new processes
and restarted containers get their ``oom_score_adj``.

No action ever touches sentinel itself, its parent chain, or the host's init.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sentinel.actions import hook, oom_score_adj, pod, restart, signal, snapshot
from sentinel.actions._host import Host, init_signal_problem, refusal
from sentinel.actions._log import action_line, log_action
from sentinel.actions._result import DockerControl, dropped
from sentinel.errors import SentinelError
from sentinel.model import ActionResult, Target
from sentinel.policy.decision import Decision
from sentinel.policy.model import (
    DeletePodAction,
    EvictAction,
    OomScoreAdjAction,
    RestartAction,
    RunAction,
    SignalAction,
    SnapshotAction,
)
from sentinel.policy.state import DISRUPTIVE

__all__ = [
    "ActionResult",
    "Clients",
    "DockerControl",
    "Host",
    "action_line",
    "execute",
    "hook",
    "init_signal_problem",
    "log_action",
    "oom_score_adj",
    "refusal",
    "restart",
    "signal",
    "snapshot",
]


@dataclass(frozen=True, slots=True)
class Clients:
    """What the actions act through: Docker (``None`` in sidecar mode) and this host's
    ``/proc`` and cgroups."""

    docker: DockerControl | None = None
    host: Host = field(default_factory=Host)
    kube: pod.KubeControl | None = None
    """The Kubernetes API (``--mode kubernetes``): evict and delete pods."""


def execute(
    decision: Decision,
    target: Target,
    *,
    clients: Clients,
    dry_run: bool,
    recheck: Callable[[], bool],
) -> ActionResult:
    """Carry out ``decision`` on ``target`` (the target as just re-read; its id is the
    decision's) and log one JSON line.

    ``dry_run`` (or the decision's own) decides and logs, changing nothing. For a
    disruptive action ``recheck()`` is called just before acting (in dry run too, so the
    log says what would really have happened); when it returns False, or fails with a
    :class:`~sentinel.errors.SentinelError` or ``OSError``, the action is dropped.

    ``notify`` and ``escalate`` decisions belong to the notifiers: ``ValueError``.
    """
    dry = dry_run or decision.dry_run
    action = decision.action
    if decision.kind in DISRUPTIVE:
        drop: ActionResult | None = None
        try:
            if not recheck():
                drop = dropped(decision.kind, target, "no longer holds", dry_run=dry)
        except (SentinelError, OSError) as e:
            drop = dropped(decision.kind, target, f"the re-check failed: {e}", dry_run=dry)
        if drop is not None:
            log_action(drop, target, decision)
            return drop
    host, docker = clients.host, clients.docker
    if isinstance(action, RestartAction):
        result = restart.restart(
            target, action.restart.grace_period, dry_run=dry, docker=docker, host=host
        )
    elif isinstance(action, SignalAction):
        result = signal.send(target, action.signal, dry_run=dry, docker=docker, host=host)
    elif isinstance(action, RunAction):
        result = hook.run(
            target,
            action.run.command,
            action.run.timeout,
            dry_run=dry,
            rule=decision.rule,
            reason=decision.reason,
            evidence=decision.evidence,
            pass_env=action.run.pass_env,
        )
    elif isinstance(action, EvictAction):
        result = pod.end_pod(
            "evict", target, action.evict.grace_period, kube=clients.kube, dry_run=dry
        )
    elif isinstance(action, DeletePodAction):
        result = pod.end_pod(
            "delete_pod", target, action.delete_pod.grace_period, kube=clients.kube, dry_run=dry
        )
    elif isinstance(action, SnapshotAction):
        result = snapshot.take(
            target,
            timeout=float(action.snapshot.timeout),
            directory=action.snapshot.dir,
            dry_run=dry,
            docker=docker,
            host=host,
        )
    elif isinstance(action, OomScoreAdjAction):
        result = oom_score_adj.apply(
            target, action.oom_score_adj, dry_run=dry, host=host, docker=docker
        )
    else:
        raise ValueError(f"{decision.kind}: not an action of sentinel.actions (see notifiers)")
    log_action(result, target, decision)
    return result
