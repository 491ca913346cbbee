"""Kubernetes Events on the Pod (``--mode kubernetes``): where Kubernetes users look.

Three reasons, posted by sentinel itself (no rule needed), through the outbox like every
notification (a fault loses none; the API's own dedupe and the client's spam filter keep
them few):

- ``OOMKilled`` (Warning): the kernel killed a process of this pod's container. The note
  names the process, what it held, and whether the node ran out (the pod was below its
  limit: what kubelet reports as ``Error``/137, or not at all for a worker process) or the
  container's own limit did. A kill outside any pod goes on the Node.
- ``OOMPredicted`` (Warning): a rule fired on the forecast, with the ETA.
- ``PreemptiveRestart`` (Normal): the action taken before the kill, and its outcome.

The payload builders are pure; :class:`KubeEventsSender` turns a payload into an
:class:`~sentinel.kube.events.EventSpec` and posts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sentinel.kube.events import EventSpec, ObjectRef
from sentinel.model import KillRecord, Target
from sentinel.units import format_duration, format_size

NAME = "@kubernetes"
"""The outbox's name for the Events (a policy's notifier names cannot start with ``@``)."""

KIB = 1024


class EventPoster(Protocol):
    def post_event(self, spec: EventSpec) -> str: ...


def _regarding(target: Mapping[str, Any], node: str) -> dict[str, str]:
    if target.get("pod") and target.get("namespace"):
        return {
            "kind": "Pod",
            "name": str(target["pod"]),
            "namespace": str(target["namespace"]),
            "uid": str(target.get("pod_uid") or ""),
        }
    return {"kind": "Node", "name": node, "namespace": "", "uid": ""}


def _plain(text: str) -> str:
    """Outside text (a process name) as plain, printable text."""
    return "".join(c if c.isprintable() else "?" for c in text)[:64]


def _container(target: Mapping[str, Any]) -> str:
    c = target.get("container")
    return f"container {c}" if c else "the pod"


def kill_event(target: Target, record: KillRecord, node: str) -> dict[str, Any]:
    """``OOMKilled``: what the kernel killed, and which limit ran out, in plain words."""
    t = target.to_dict()
    who = f"{_plain(record.comm) if record.comm else 'a process'} (pid {record.pid}"
    rss = record.rss_kb
    who += f", {format_size(rss * KIB)} resident)" if rss is not None else ")"
    where = f"on node {node}, outside any pod" if target.pod is None else f"of {_container(t)}"
    if record.scope == "host":
        why = (
            "host OOM: the node ran out of memory; the pod was below its limit "
            f"(constraint {record.constraint or 'CONSTRAINT_NONE'})"
        )
    elif record.scope == "cgroup":
        why = f"its memory limit ran out ({record.oom_memcg or record.task_memcg or 'its cgroup'})"
    else:
        why = "the kernel log did not say which limit ran out"
    return {
        "regarding": _regarding(t, node),
        "reason": "OOMKilled",
        "type": "Warning",
        "action": "Killed",
        "note": f"The kernel OOM killer killed {who} {where}: {why}.",
        "target": t,
    }


def predicted_event(target: Target, evidence: Mapping[str, Any], node: str) -> dict[str, Any]:
    """``OOMPredicted``: the forecast a rule acted on."""
    t = target.to_dict()
    eta = evidence.get("projected_oom_in_s")
    usage, limit = evidence.get("usage_bytes"), evidence.get("limit_bytes")
    constraint = evidence.get("constraint") or "its"
    text = f"Memory of {_container(t)} is projected to run out"
    if isinstance(eta, int | float):
        text += f" in {format_duration(float(eta))}"
    text += f" ({constraint} limit"
    if isinstance(usage, int | float) and isinstance(limit, int | float):
        text += f": {format_size(usage)} of {format_size(limit)}"
    text += "): the kernel would OOM-kill it."
    return {
        "regarding": _regarding(t, node),
        "reason": "OOMPredicted",
        "type": "Warning",
        "action": "Predicted",
        "note": text,
        "target": t,
    }


def restart_event(
    target: Target, action: str, outcome: str, error: str | None, node: str
) -> dict[str, Any]:
    """``PreemptiveRestart``: what sentinel did before the projected kill."""
    t = target.to_dict()
    verb = {"restart": "restarted", "evict": "evicted", "delete_pod": "deleted"}.get(action, action)
    what = {"restart": _container(t), "evict": "the pod", "delete_pod": "the pod"}.get(
        action, _container(t)
    )
    if outcome == "done":
        note = f"sentinel {verb} {what} before the projected OOM kill."
    else:
        note = f"sentinel could not {action.replace('_', ' ')} {what} ({outcome})"
        note += f": {error}." if error else "."
    return {
        "regarding": _regarding(t, node),
        "reason": "PreemptiveRestart",
        "type": "Normal" if outcome == "done" else "Warning",
        "action": action.capitalize(),
        "note": note,
        "target": t,
    }


def spec_of(payload: Mapping[str, Any], node: str) -> EventSpec:
    r = payload["regarding"]
    return EventSpec(
        regarding=ObjectRef(
            kind=str(r["kind"]),
            name=str(r["name"]),
            namespace=str(r.get("namespace") or ""),
            uid=str(r.get("uid") or ""),
        ),
        reason=str(payload["reason"]),
        note=str(payload["note"]),
        type="Normal" if payload.get("type") == "Normal" else "Warning",
        action=str(payload.get("action") or ""),
        reporting_instance=node,
    )


class KubeEventsSender:
    """The outbox's sender for :data:`NAME`: one Event per payload (deduplicated and
    rate-limited by the client)."""

    name = NAME

    def __init__(self, api: EventPoster, node: str) -> None:
        self.api = api
        self.node = node

    def send(self, notification: Mapping[str, Any]) -> None:
        self.api.post_event(spec_of(notification, self.node))
