"""Pods by container id and by uid: who a cgroup path or a kill record belongs to.

Pods arrive as the API's ``v1.Pod`` JSON (what ``GET /api/v1/pods`` lists and a watch
delivers; the adapter hands over plain dicts, never client objects). :class:`PodIndex`
keeps those on this node and answers :meth:`PodIndex.lookup` with a :class:`PodRef`:
node, namespace, pod, container, owner, the container's memory limit, QoS, static or not.

What the API says, and where:

* container ids: ``status.containerStatuses[]``, ``initContainerStatuses[]`` and
  ``ephemeralContainerStatuses[]``, each with ``containerID`` (``containerd://<64hex>``,
  ``cri-o://<64hex>``, ``docker://<64hex>``), ``state.terminated.containerID`` and
  ``lastState.terminated.containerID``. After an OOM kill kubelet restarts the container
  under a new id and the killed id survives only in ``lastState``; the index also keeps
  the ids it saw in earlier versions of the pod (a few per container), so a second restart
  does not orphan a kill read late.
* owner: the ``ownerReferences`` entry with ``controller: true``. A ReplicaSet made by a
  Deployment is named ``<deployment>-<pod-template-hash>`` and its pods carry the
  ``pod-template-hash`` label (``pkg/controller/deployment/sync.go``), so such a pod is
  ``Deployment/<deployment>`` without asking the API; a ReplicaSet whose name does not end
  in the pod's hash stays ``ReplicaSet/<name>``. StatefulSet, DaemonSet, Job and any other
  kind are named as the reference says. A Job made by a CronJob stays ``Job/<name>``: a pod
  carries nothing that names the CronJob (its labels come from the job template), and the
  index does not guess from the name.
* static pods: kubelet runs them from files and posts a *mirror* pod carrying the
  ``kubernetes.io/config.mirror`` annotation (``pkg/kubelet/types/pod_update.go``); since
  Kubernetes 1.17 it is also owned by the ``Node``. The mirror's ``metadata.uid`` is the API
  server's, but the pod's cgroup is named after the static pod's own uid, which is the
  annotation's value (``kubernetes.io/config.hash``): both resolve. Owner ``Node/<node>``.
* memory limit: ``status.containerStatuses[].resources.limits.memory`` when the kubelet
  reports it (in-place resize: the limit it applied), else
  ``spec.containers[].resources.limits.memory``; for the pod itself the pod-level
  ``spec.resources.limits.memory`` (1.32+) when set.
* QoS: ``status.qosClass`` in the paths' spelling (``guaranteed``, ``burstable``,
  ``besteffort``).

Deleted pods stay findable for ``deleted_ttl`` seconds after their delete event, so a kill
the kernel logged just before the pod went away is still named. Time is passed in
(``now``, seconds on any monotonic scale); nothing here reads a clock.

One thread (the watch's) writes; every change publishes a new immutable snapshot, so
lookups from other threads need no lock and never see half an update.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from sentinel.kube.paths import QosClass
from sentinel.kube.quantity import QuantityError, parse_bytes

PodJSON = Mapping[str, Any]
"""A pod as the API serialises ``v1.Pod`` (``metadata``, ``spec``, ``status``)."""
ContainerKind = Literal["container", "init", "ephemeral"]

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
HASH_ANNOTATION = "kubernetes.io/config.hash"
TEMPLATE_HASH_LABEL = "pod-template-hash"
DEFAULT_DELETED_TTL = 300.0
"""Seconds a deleted pod stays findable: kills are read within seconds, a backlog after a
restart within minutes."""
MAX_DELETED = 1024
"""Deleted pods kept at most (the oldest go first), whatever the TTL."""
IDS_PER_CONTAINER = 8
"""Container ids kept per container across restarts (the current one and seven before)."""

_QOS: dict[str, QosClass] = {
    "Guaranteed": "guaranteed",
    "Burstable": "burstable",
    "BestEffort": "besteffort",
}
_STATUS_LISTS: tuple[tuple[str, str, ContainerKind], ...] = (
    ("containerStatuses", "containers", "container"),
    ("initContainerStatuses", "initContainers", "init"),
    ("ephemeralContainerStatuses", "ephemeralContainers", "ephemeral"),
)


@dataclass(frozen=True, slots=True)
class PodRef:
    """Who a container (or a pod's own cgroup) is, as far as the API said.

    ``container``, ``container_kind`` and ``memory_limit`` are the container's when the
    lookup found a container id; for a pod-level answer ``container`` is ``None``,
    ``container_id`` is the id asked about (if any) and ``memory_limit`` the pod-level
    limit. ``owner_kind`` is ``None`` for a bare pod. ``deleted`` marks an answer from the
    cache of deleted pods; ``terminating`` a pod with a ``deletionTimestamp``.
    """

    node: str | None
    namespace: str
    pod: str
    pod_uid: str
    container: str | None = None
    container_id: str | None = None
    container_kind: ContainerKind | None = None
    owner_kind: str | None = None
    owner_name: str | None = None
    memory_limit: int | None = None
    qos: QosClass | None = None
    static: bool = False
    terminating: bool = False
    deleted: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    """The pod's labels (``match.pod_labels`` selects on them)."""

    @property
    def owner(self) -> str | None:
        """``Kind/name`` as policies write it (``Deployment/web``), or ``None``."""
        return f"{self.owner_kind}/{self.owner_name}" if self.owner_kind else None


@dataclass(frozen=True, slots=True)
class _Container:
    name: str
    kind: ContainerKind
    memory_limit: int | None


@dataclass(frozen=True, slots=True)
class _Pod:
    ref: PodRef  # pod-level: no container fields
    uids: tuple[str, ...]  # metadata.uid first, then the static pod's own uid
    containers: Mapping[str, _Container]
    ids: Mapping[str, str]  # container id -> container name, newest first


@dataclass(frozen=True, slots=True)
class _State:
    live: Mapping[str, _Pod] = field(default_factory=dict)  # by metadata.uid
    deleted: Mapping[str, tuple[_Pod, float]] = field(default_factory=dict)  # (pod, expires)
    live_ids: Mapping[str, str] = field(default_factory=dict)  # container id -> metadata.uid
    live_uids: Mapping[str, str] = field(default_factory=dict)  # any uid -> metadata.uid
    deleted_ids: Mapping[str, str] = field(default_factory=dict)
    deleted_uids: Mapping[str, str] = field(default_factory=dict)


def _map(obj: Any, key: str) -> Mapping[str, Any]:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _list(obj: Any, key: str) -> list[Mapping[str, Any]]:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, Mapping)]


def _str(obj: Any, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, str) and value else None


def normalize_container_id(container_id: str | None) -> str | None:
    """The bare id from ``containerd://<id>``, ``cri-o://<id>``, ``docker://<id>`` or ``<id>``.

    Lowercased; ``None`` for ``None`` or an empty id (a container still waiting).
    """
    if not container_id:
        return None
    _, sep, rest = container_id.partition("://")
    bare = (rest if sep else container_id).strip().lower()
    return bare or None


def _memory_limit(resources: Mapping[str, Any]) -> int | None:
    value = _map(resources, "limits").get("memory")
    if value is None:
        return None
    try:
        return parse_bytes(value)
    except QuantityError:
        return None  # the API validates quantities; a malformed one names no limit


def owner_of(pod: PodJSON) -> tuple[str | None, str | None]:
    """(kind, name) of the workload that owns a pod, read from the pod alone.

    ReplicaSet ``<d>-<hash>`` with the pod's ``pod-template-hash`` label ``<hash>`` ->
    ``("Deployment", "<d>")``; a mirror pod -> ``("Node", <node>)``; no owner ->
    ``(None, None)``.
    """
    metadata = _map(pod, "metadata")
    node = _str(_map(pod, "spec"), "nodeName")
    refs = _list(metadata, "ownerReferences")
    ref = next((r for r in refs if r.get("controller") is True), refs[0] if refs else None)
    if MIRROR_ANNOTATION in _map(metadata, "annotations"):
        return "Node", node or (_str(ref, "name") if ref else None)
    if ref is None:
        return None, None
    kind, name = _str(ref, "kind"), _str(ref, "name")
    if kind == "ReplicaSet" and name:
        template_hash = _str(_map(metadata, "labels"), TEMPLATE_HASH_LABEL)
        suffix = f"-{template_hash}"
        if template_hash and name.endswith(suffix) and len(name) > len(suffix):
            return "Deployment", name[: -len(suffix)]
    return kind, name


def container_ids(pod: PodJSON) -> dict[str, tuple[str, ContainerKind]]:
    """Every container id the pod's status names -> (container name, kind).

    Current ids (``containerID``, ``state.terminated``) come before the previous
    (``lastState.terminated``), regular containers before init and ephemeral ones.
    """
    status = _map(pod, "status")
    found: dict[str, tuple[str, ContainerKind]] = {}
    previous: dict[str, tuple[str, ContainerKind]] = {}
    for status_key, _spec_key, kind in _STATUS_LISTS:
        for entry in _list(status, status_key):
            name = _str(entry, "name")
            if name is None:
                continue
            for raw in (
                _str(entry, "containerID"),
                _str(_map(_map(entry, "state"), "terminated"), "containerID"),
            ):
                if cid := normalize_container_id(raw):
                    found.setdefault(cid, (name, kind))
            last = _str(_map(_map(entry, "lastState"), "terminated"), "containerID")
            if cid := normalize_container_id(last):
                previous.setdefault(cid, (name, kind))
    for cid, who in previous.items():
        found.setdefault(cid, who)
    return found


def _summarize(pod: PodJSON) -> _Pod:
    metadata, spec, status = _map(pod, "metadata"), _map(pod, "spec"), _map(pod, "status")
    uid, name = _str(metadata, "uid"), _str(metadata, "name")
    if uid is None or name is None:
        raise ValueError("not a v1.Pod: metadata.uid and metadata.name are required")
    annotations = _map(metadata, "annotations")
    owner_kind, owner_name = owner_of(pod)
    static = owner_kind == "Node"
    uids = [uid]
    for key in (MIRROR_ANNOTATION, HASH_ANNOTATION):
        alias = _str(annotations, key)
        if static and alias and alias not in uids:
            uids.append(alias)
    qos_class = _str(status, "qosClass")
    ref = PodRef(
        node=_str(spec, "nodeName"),
        namespace=_str(metadata, "namespace") or "default",
        pod=name,
        pod_uid=uid,
        owner_kind=owner_kind,
        owner_name=owner_name,
        memory_limit=_memory_limit(_map(spec, "resources")),
        qos=_QOS.get(qos_class) if qos_class else None,
        static=static,
        terminating=metadata.get("deletionTimestamp") is not None,
        labels={str(k): str(v) for k, v in _map(metadata, "labels").items()},
    )
    containers: dict[str, _Container] = {}
    for status_key, spec_key, kind in _STATUS_LISTS:
        for c in _list(spec, spec_key):
            if cname := _str(c, "name"):
                containers[cname] = _Container(cname, kind, _memory_limit(_map(c, "resources")))
        for entry in _list(status, status_key):
            cname = _str(entry, "name")
            applied = _memory_limit(_map(entry, "resources"))
            if cname and applied is not None:
                containers[cname] = _Container(cname, kind, applied)
    found = container_ids(pod)
    for cname, kind in found.values():  # a status for a container the spec does not list
        containers.setdefault(cname, _Container(cname, kind, None))
    ids = {cid: cname for cid, (cname, _kind) in found.items()}
    return _Pod(ref=ref, uids=tuple(uids), containers=containers, ids=ids)


def _merge_ids(new: _Pod, old: _Pod | None) -> _Pod:
    """``new`` also keeping ``old``'s ids of the same containers, a few per container."""
    if old is None:
        return new
    ids = dict(new.ids)
    per_name: dict[str, int] = {}
    for cname in ids.values():
        per_name[cname] = per_name.get(cname, 0) + 1
    for cid, cname in old.ids.items():
        if cid in ids or cname not in new.containers:
            continue
        if per_name.get(cname, 0) < IDS_PER_CONTAINER:
            ids[cid] = cname
            per_name[cname] = per_name.get(cname, 0) + 1
    return replace(new, ids=ids)


def _ref(entry: _Pod, container_id: str | None, *, deleted: bool) -> PodRef:
    ref = replace(entry.ref, deleted=True) if deleted else entry.ref
    if container_id is None:
        return ref
    cname = entry.ids.get(container_id)
    if cname is None:
        return replace(ref, container_id=container_id)
    container = entry.containers[cname]
    return replace(
        ref,
        container=cname,
        container_id=container_id,
        container_kind=container.kind,
        memory_limit=container.memory_limit,
    )


class PodIndex:
    """The pods of one node, by container id and by pod uid, with deleted pods kept a while.

    Feed it what a list+watch delivers (:meth:`apply`, or :meth:`add`, :meth:`delete`,
    :meth:`replace` after a relist); ask it with :meth:`lookup`. With ``node`` set, pods
    bound to another node are ignored (the watch's field selector, checked again here).
    """

    def __init__(self, *, node: str | None = None, deleted_ttl: float = DEFAULT_DELETED_TTL):
        if deleted_ttl < 0:
            raise ValueError(f"deleted_ttl must be >= 0, got {deleted_ttl}")
        self.node = node
        self.deleted_ttl = deleted_ttl
        self._state = _State()

    def __len__(self) -> int:
        """Live pods (the deleted ones kept for lookups are not counted)."""
        return len(self._state.live)

    def _publish(self, live: dict[str, _Pod], deleted: dict[str, tuple[_Pod, float]]) -> None:
        if len(deleted) > MAX_DELETED:
            oldest = sorted(deleted, key=lambda uid: deleted[uid][1])
            for uid in oldest[: len(deleted) - MAX_DELETED]:
                del deleted[uid]

        def by_id(pods: Iterable[_Pod]) -> tuple[dict[str, str], dict[str, str]]:
            ids: dict[str, str] = {}
            uids: dict[str, str] = {}
            for p in pods:
                for cid in p.ids:
                    ids.setdefault(cid, p.ref.pod_uid)
                for alias in p.uids:
                    uids.setdefault(alias, p.ref.pod_uid)
            return ids, uids

        live_ids, live_uids = by_id(live.values())
        deleted_ids, deleted_uids = by_id(p for p, _ in deleted.values())
        self._state = _State(
            live=MappingProxyType(live),
            deleted=MappingProxyType(deleted),
            live_ids=live_ids,
            live_uids=live_uids,
            deleted_ids=deleted_ids,
            deleted_uids=deleted_uids,
        )

    def _mine(self, pod: PodJSON) -> bool:
        return self.node is None or _str(_map(pod, "spec"), "nodeName") == self.node

    def add(self, pod: PodJSON) -> None:
        """A pod added or modified (the same to the index). Raises ``ValueError`` on a dict
        without ``metadata.uid`` or ``metadata.name``."""
        entry = _summarize(pod)
        uid = entry.ref.pod_uid
        state = self._state
        live, deleted = dict(state.live), dict(state.deleted)
        if not self._mine(pod):
            if uid in live:  # moved off this node's view: treat as gone, now unknown
                del live[uid]
                self._publish(live, deleted)
            return
        old = live.get(uid) or (deleted[uid][0] if uid in deleted else None)
        live[uid] = _merge_ids(entry, old)
        deleted.pop(uid, None)
        self._publish(live, deleted)

    update = add

    def delete(self, pod: PodJSON, now: float) -> None:
        """A pod deleted at ``now``: findable until ``now + deleted_ttl``, then forgotten."""
        entry = _summarize(pod)
        uid = entry.ref.pod_uid
        state = self._state
        live, deleted = dict(state.live), self._unexpired(now)
        old = live.pop(uid, None)
        deleted[uid] = (_merge_ids(entry, old), now + self.deleted_ttl)
        self._publish(live, deleted)

    def replace(self, pods: Iterable[PodJSON], now: float) -> None:
        """A fresh list (after a dropped watch): pods missing from it count as deleted."""
        entries: dict[str, _Pod] = {}
        for pod in pods:
            if self._mine(pod):
                entry = _summarize(pod)
                entries[entry.ref.pod_uid] = entry
        state = self._state
        deleted = self._unexpired(now)
        live: dict[str, _Pod] = {}
        for uid, entry in entries.items():
            live[uid] = _merge_ids(entry, state.live.get(uid))
            deleted.pop(uid, None)
        for uid, old in state.live.items():
            if uid not in entries:
                deleted[uid] = (old, now + self.deleted_ttl)
        self._publish(live, deleted)

    def apply(self, event_type: str, pod: PodJSON, now: float) -> None:
        """One watch event: ``ADDED``, ``MODIFIED``, ``DELETED``; ``BOOKMARK`` is ignored.

        Raises ``ValueError`` on any other type (``ERROR`` carries a Status, not a pod:
        the adapter handles it by relisting).
        """
        if event_type in ("ADDED", "MODIFIED"):
            self.add(pod)
        elif event_type == "DELETED":
            self.delete(pod, now)
        elif event_type != "BOOKMARK":
            raise ValueError(f"not a pod watch event type: {event_type!r}")

    def expire(self, now: float) -> int:
        """Forget deleted pods whose time is up at ``now``; returns how many went."""
        state = self._state
        kept = self._unexpired(now)
        gone = len(state.deleted) - len(kept)
        if gone:
            self._publish(dict(state.live), kept)
        return gone

    def _unexpired(self, now: float) -> dict[str, tuple[_Pod, float]]:
        return {uid: v for uid, v in self._state.deleted.items() if v[1] > now}

    def lookup(
        self,
        container_id: str | None = None,
        pod_uid: str | None = None,
        *,
        now: float,
    ) -> PodRef | None:
        """The pod (and container) for a container id and/or a pod uid, or ``None``.

        A known container id wins (ids are unique; a static pod's uid in its cgroup differs
        from its mirror's); then the pod uid, which answers at pod level, carrying the id
        asked about in ``container_id`` with ``container=None``. Live pods first, then
        deleted ones whose ``deleted_ttl`` has not run out at ``now`` (an entry expires at
        exactly ``deleted_at + deleted_ttl``). Uids are accepted dashed or with
        underscores (the systemd spelling).
        """
        state = self._state  # one snapshot for the whole answer
        cid = normalize_container_id(container_id)
        uid = pod_uid.replace("_", "-") if pod_uid else None

        def deleted_pod(primary: str | None) -> _Pod | None:
            if primary is None or primary not in state.deleted:
                return None
            entry, expires = state.deleted[primary]
            return entry if expires > now else None

        if cid is not None:
            if cid in state.live_ids:
                return _ref(state.live[state.live_ids[cid]], cid, deleted=False)
            if (entry := deleted_pod(state.deleted_ids.get(cid))) is not None:
                return _ref(entry, cid, deleted=True)
        if uid is not None:
            if uid in state.live_uids:
                return _ref(state.live[state.live_uids[uid]], cid, deleted=False)
            if (entry := deleted_pod(state.deleted_uids.get(uid))) is not None:
                return _ref(entry, cid, deleted=True)
        return None


def pods_on_node(items: Iterable[PodJSON], node: str) -> list[PodJSON]:
    """The pods bound to ``node`` (``spec.nodeName``), in the order given.

    The list+watch asks the API for ``spec.nodeName=<node>``; this checks the answer again
    client-side (a proxy or a fake server may ignore the selector).
    """
    return [p for p in items if _str(_map(p, "spec"), "nodeName") == node]
