"""``evict`` and ``delete_pod``: end a pod's run through the Kubernetes API, so that its
controller makes a new one.

* ``evict``: the Eviction API (``policy/v1``): PodDisruptionBudgets are honoured; a 429 is
  retried with backoff by the adapter, then the result says ``blocked`` (the daemon
  escalates once).
* ``delete_pod``: a plain delete with the grace period (opt-in: no budget is asked).

Both are refused for a pod nobody would make again: one without an owner, or a static pod
(kubelet's own, from a manifest on the node: the API cannot evict it).
"""

from __future__ import annotations

from typing import Protocol

from sentinel.actions._result import done, failed, refused, would
from sentinel.clients.kubernetes import EvictionBlocked, PodGone
from sentinel.errors import SentinelError, TemporaryError
from sentinel.model import ActionResult, Target


class KubeControl(Protocol):
    """What these actions need of :class:`sentinel.clients.kubernetes.KubeClient`."""

    def evict(self, namespace: str, name: str, *, grace_period: float | None) -> str: ...

    def delete_pod(self, namespace: str, name: str, *, grace_period: float | None) -> str: ...


def _refusal(target: Target) -> str | None:
    if target.pod is None or target.namespace is None:
        return "the target is not a container of a pod"
    if target.owner_kind is None:
        return "the pod has no owner: nothing would make it again"
    if target.owner_kind == "Node":
        return "a static pod (kubelet's own): the API cannot evict or delete it"
    return None


def end_pod(
    action: str,
    target: Target,
    grace_period: float | None,
    *,
    kube: KubeControl | None,
    dry_run: bool,
) -> ActionResult:
    """``action`` (``evict`` or ``delete_pod``) the pod of ``target``."""
    reason = _refusal(target)
    if reason is not None:
        return refused(action, target, reason, dry_run=dry_run)
    namespace, name = target.namespace or "", target.pod or ""
    detail: dict[str, object] = {
        "via": "kubernetes",
        "namespace": namespace,
        "pod": name,
        "owner": f"{target.owner_kind}/{target.owner_name}",
    }
    if grace_period is not None:
        detail["grace_s"] = grace_period
    if dry_run:
        verb = "evict" if action == "evict" else "delete"
        return would(
            action, target, {**detail, "would": f"{verb} pod {target.namespace}/{target.pod}"}
        )
    if kube is None:
        return failed(action, target, "no Kubernetes client (not in --mode kubernetes)", detail)
    try:
        if action == "evict":
            detail["result"] = kube.evict(namespace, name, grace_period=grace_period)
        else:
            detail["result"] = kube.delete_pod(namespace, name, grace_period=grace_period)
    except EvictionBlocked as e:
        detail["blocked"] = True
        return failed(action, target, str(e), detail)
    except PodGone as e:
        detail["gone"] = True
        return failed(action, target, str(e), detail)
    except TemporaryError as e:
        detail.update(temporary=True, retry_after_s=e.delay)
        return failed(action, target, str(e), detail)
    except SentinelError as e:
        return failed(action, target, str(e), detail)
    return done(action, target, detail)
