"""A local Kubernetes API on 127.0.0.1 for the real ``kubernetes`` client.

It is kmock's :class:`kmock.KubernetesEmulator` (an aiohttp server that stores objects in
memory and serves discovery, create, get, patch, delete and Status errors), run in a thread
of its own, with what the emulator lacks added the way a real API server does it:

- pods keep a global, growing ``resourceVersion``: a list answers with the current one; a
  watch from a resourceVersion sends exactly the changes after it (no replay), one from
  ``""``/``"0"`` starts with the current pods as ``ADDED``; ``fieldSelector`` (``a=b``,
  ``a!=b``), ``timeoutSeconds`` and ``allowWatchBookmarks`` (a ``BOOKMARK`` before a watch
  ends at its timeout) are honoured; after :meth:`KubeAPI.compact` a watch from an older
  resourceVersion gets the ``ERROR`` event with a 410 ``Expired`` Status, as the apiserver's
  watch cache sends it;
- ``pods/<name>/eviction`` (policy/v1 Eviction): 201 and the pod deleted; 429 with the
  PodDisruptionBudget Status while :meth:`KubeAPI.block_evictions` says so; 404 for a pod
  that is gone;
- the ``events.k8s.io`` API can be made to answer 404 (an old cluster) or 403 (RBAC).

Events of both APIs are stored by the emulator (create, and merge PATCH) and read back with
:meth:`KubeAPI.events`.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import logging
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock
import pytest
import yaml
from kmock._internal import apps, rendering

T = TypeVar("T")

# The emulator's access log would write from its own thread after pytest closed the
# captured streams ("Logging error ... I/O operation on closed file"): not wanted.
logging.getLogger("aiohttp.access").disabled = True

PODS = kmock.resource("", "v1", "pods")
NODES = kmock.resource("", "v1", "nodes")
CORE_EVENTS = kmock.resource("", "v1", "events")
EVENTS_V1 = kmock.resource("events.k8s.io", "v1", "events")


def status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    """A ``v1.Status`` as the API server writes it for an error."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


def ok(payload: Any) -> kmock.Response:
    """A 200 with ``payload``. Every answer of an overridden emulator method says its status:
    kmock keeps the status of a :class:`kmock.Response` a callback returns on the reaction
    itself, so one 404 would otherwise turn every later answer of that reaction into 404."""
    return kmock.Response(status=200, payload=payload)


@dataclass(frozen=True)
class Change:
    rv: int
    type: str
    pod: dict[str, Any]


def _field(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def matches_field_selector(obj: dict[str, Any], selector: str | None) -> bool:
    """The apiserver's field selector: terms ``a=b``, ``a==b``, ``a!=b`` joined by commas."""
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            key, _, want = term.partition("!=")
            if _field(obj, key) == want:
                return False
        else:
            key, _, want = term.replace("==", "=").partition("=")
            if _field(obj, key) != want:
                return False
    return True


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with pods served by resourceVersion (see the module)."""

    rv: int = 1000
    pods: dict[tuple[str, str], dict[str, Any]] = attrs.field(factory=dict)
    log: list[Change] = attrs.field(factory=list)
    compacted: int = 0
    """A watch from a resourceVersion below this one gets 410 Gone."""
    drops: int = 0
    evictions_blocked: int = 0
    events_api_status: int | None = None
    pods_status: int | None = None
    """Every pod request answers this error (a 403 of RBAC, a 500 of an overloaded API)."""
    field_selectors: bool = True
    """False: ignore ``fieldSelector`` (as a proxy that drops it would)."""
    gone_as_http: bool = False
    """An expired watch gets an HTTP 410 rather than the 200 and ``ERROR`` event."""
    changed: asyncio.Condition | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        eviction = r"/api/v1/namespaces/[^/]+/pods/[^/]+/eviction"
        self.fallback["post", re.compile(eviction)] << self._serve_eviction

    def _cond(self) -> asyncio.Condition:
        if self.changed is None:
            self.changed = asyncio.Condition()
        return self.changed

    # -- what the tests change -------------------------------------------------------
    async def put_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        async with self._cond():
            meta = pod["metadata"]
            key = (meta["namespace"], meta["name"])
            kind = "MODIFIED" if key in self.pods else "ADDED"
            self.rv += 1
            stored = copy.deepcopy(pod)
            stored["metadata"]["resourceVersion"] = str(self.rv)
            self.pods[key] = stored
            self.log.append(Change(self.rv, kind, copy.deepcopy(stored)))
            self._cond().notify_all()
            return copy.deepcopy(stored)

    async def remove_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        async with self._cond():
            pod = self.pods.pop((namespace, name), None)
            if pod is None:
                return None
            self.rv += 1
            pod["metadata"]["resourceVersion"] = str(self.rv)
            self.log.append(Change(self.rv, "DELETED", copy.deepcopy(pod)))
            self._cond().notify_all()
            return pod

    async def drop_watches(self) -> None:
        async with self._cond():
            self.drops += 1
            self._cond().notify_all()

    # -- serving -----------------------------------------------------------------------
    async def _handle(self, request: rendering.Request) -> Any:
        if request.resource == PODS and self.pods_status is not None:
            code = self.pods_status
            reason = {403: "Forbidden", 500: "InternalError", 503: "ServiceUnavailable"}
            raise kmock.KubernetesError(
                status=code,
                reason=reason.get(code, "Unknown"),
                message=f"pods is not available ({code})",
                details={"kind": "pods"},
            )
        if request.resource == PODS:
            # Pods are ours: skip the emulator's own object store, keep kmock's reactions.
            return await apps.RawHandler._handle(self, request)
        if request.resource == EVENTS_V1 and self.events_api_status is not None:
            code = self.events_api_status
            if code == 404:
                raise kmock.KubernetesError(
                    status=404,
                    reason="NotFound",
                    message="the server could not find the requested resource",
                    details={"group": "events.k8s.io", "kind": "events"},
                )
            raise kmock.KubernetesError(
                status=code,
                reason="Forbidden",
                message='events.events.k8s.io is forbidden: User "system:serviceaccount:'
                'kube-system:sentinel" cannot create resource "events" in API group '
                '"events.k8s.io"',
                details={"group": "events.k8s.io", "kind": "events"},
            )
        return await super()._handle(request)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        # The apiserver's Status: standard reasons, no traceback in the details.
        if isinstance(exc, kmock.KubernetesError):
            code = exc.status
            reason = "NotFound" if code == 404 else exc.reason or "InternalError"
            body = status(code, reason, exc.message or "", **(exc.details or {}))
        else:
            code, body = 500, status(500, "InternalError", repr(exc))
        return aiohttp.web.json_response(body, status=code)

    def _selector(self, request: rendering.Request) -> str | None:
        return request.params.get("fieldSelector") if self.field_selectors else None

    def _pod_list(self, request: rendering.Request) -> dict[str, Any]:
        selector = self._selector(request)
        items = [
            copy.deepcopy(pod)
            for (ns, _), pod in sorted(self.pods.items())
            if (request.namespace is None or ns == request.namespace)
            and matches_field_selector(pod, selector)
        ]
        return {
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self.rv)},
            "items": items,
        }

    async def _serve_list(self, request: rendering.Request) -> Any:
        if request.resource == PODS:
            async with self._cond():
                return ok(self._pod_list(request))
        return ok(await super()._serve_list(request))

    async def _serve_fetch(self, request: rendering.Request) -> Any:
        if request.resource == PODS:
            pod = self.pods.get((request.namespace or "", request.name or ""))
            if pod is None:
                return self._gone(request)
            return ok(copy.deepcopy(pod))
        return ok(await super()._serve_fetch(request))

    async def _serve_delete(self, request: rendering.Request) -> Any:
        if request.resource == PODS:
            pod = await self.remove_pod(request.namespace or "", request.name or "")
            return self._gone(request) if pod is None else ok(pod)
        return ok(await super()._serve_delete(request))

    def _gone(self, request: rendering.Request) -> kmock.Response:
        body = status(
            404,
            "NotFound",
            f'pods "{request.name}" not found',
            name=request.name,
            kind="pods",
        )
        return kmock.Response(status=404, payload=body)

    async def _serve_eviction(self, request: rendering.Request) -> Any:
        if (request.namespace or "", request.name or "") not in self.pods:
            return self._gone(request)
        if self.evictions_blocked > 0:
            self.evictions_blocked -= 1
            body = status(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
                causes=[
                    {
                        "reason": "DisruptionBudget",
                        "message": "The disruption budget web-pdb needs 2 healthy pods "
                        "and has 2 currently",
                    }
                ],
            )
            return kmock.Response(status=429, payload=body)
        await self.remove_pod(request.namespace or "", request.name or "")
        ok = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        return kmock.Response(status=201, payload=ok)

    async def _serve_watch(self, request: rendering.Request) -> Any:
        if request.resource == PODS:
            since = request.params.get("resourceVersion") or "0"
            if self.gone_as_http and since != "0" and int(since) < self.compacted:
                message = f"too old resource version: {since} ({self.compacted})"
                return kmock.Response(status=410, payload=status(410, "Expired", message))
            return ok(self._watch_pods(request))
        return ok(super()._serve_watch(request))

    async def _watch_pods(self, request: rendering.Request) -> AsyncIterator[Any]:
        yield b""  # send the headers now, as the apiserver does
        params = request.params
        selector = self._selector(request)
        timeout = float(params.get("timeoutSeconds") or 1800)
        bookmarks = params.get("allowWatchBookmarks") == "true"
        since_text = params.get("resourceVersion") or "0"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        cond = self._cond()
        async with cond:
            drops = self.drops
            if since_text == "0":
                since = self.rv
                initial = list(self._pod_list(request)["items"])
            else:
                since = int(since_text)
                initial = []
                if since < self.compacted:
                    message = f"too old resource version: {since} ({self.compacted})"
                    yield {"type": "ERROR", "object": status(410, "Expired", message)}
                    return
        for pod in initial:
            yield {"type": "ADDED", "object": pod}
        while True:
            async with cond:
                pending = [c for c in self.log if c.rv > since]
                if not pending and self.drops == drops:
                    try:
                        await asyncio.wait_for(cond.wait(), max(0.0, deadline - loop.time()))
                    except TimeoutError:
                        break
                    pending = [c for c in self.log if c.rv > since]
                dropped = self.drops != drops
            if dropped:
                # The connection breaks (a load balancer, an apiserver restart): what it
                # had not sent yet is not sent.
                transport = request._raw_request.transport if request._raw_request else None
                if transport is not None:
                    transport.abort()
                return
            for change in pending:
                since = change.rv
                ns_ok = request.namespace in (None, change.pod["metadata"]["namespace"])
                if ns_ok and matches_field_selector(change.pod, selector):
                    yield {"type": change.type, "object": change.pod}
        if bookmarks:
            yield {
                "type": "BOOKMARK",
                "object": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self.rv)},
                },
            }


class KubeAPI:
    """The running emulator, for a test: its kubeconfig and what a test may do to it."""

    def __init__(self, tmp_path: Path, *, node: str = "node-1") -> None:
        self.node = node
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.kmock: KubeEmulator = self._run(self._start())
        self.url = str(self._server.url).rstrip("/")
        self.kubeconfig = tmp_path / "kubeconfig"
        self.token = "s3cr3t-bearer-" + uuid.uuid4().hex
        self.kubeconfig.write_text(yaml.safe_dump(self.kubeconfig_dict()))
        self._uids = itertools.count(1)

    def kubeconfig_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": self.url}}],
            "users": [{"name": "sentinel", "user": {"token": self.token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "sentinel"}}],
            "current-context": "local",
        }

    async def _start(self) -> KubeEmulator:
        handler = KubeEmulator()
        await handler.__aenter__()
        self._server = kmock.Server(handler)
        await self._server.__aenter__()
        return handler

    async def _stop(self) -> None:
        await self._server.__aexit__(None, None, None)
        await self.kmock.__aexit__(None, None, None)

    def close(self) -> None:
        self._run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def _call(self, fn: Callable[[], T]) -> T:
        async def call() -> T:
            return fn()

        return self._run(call())

    # -- pods --------------------------------------------------------------------------
    def pod(
        self,
        name: str,
        *,
        namespace: str = "default",
        node: str | None = None,
        uid: str | None = None,
        labels: dict[str, str] | None = None,
        owner: tuple[str, str] | None = ("ReplicaSet", "web-5d8f7"),
        container_id: str | None = None,
    ) -> dict[str, Any]:
        """A pod as the API server returns it, scheduled on ``node`` (default: this one)."""
        uid = uid or f"0000000{next(self._uids)}-aaaa-bbbb-cccc-{uuid.uuid4().hex[:12]}"
        meta: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "labels": labels or {"app": name},
            "creationTimestamp": "2024-05-01T10:00:00Z",
        }
        if owner:
            meta["ownerReferences"] = [
                {
                    "apiVersion": "apps/v1",
                    "kind": owner[0],
                    "name": owner[1],
                    "uid": str(uuid.uuid4()),
                    "controller": True,
                }
            ]
        cid = container_id or uuid.uuid4().hex + uuid.uuid4().hex
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {
                "nodeName": node or self.node,
                "containers": [
                    {
                        "name": "app",
                        "image": "registry.example/app:1",
                        "resources": {"limits": {"memory": "256Mi"}},
                    }
                ],
            },
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "app",
                        "containerID": f"containerd://{cid}",
                        "ready": True,
                        "restartCount": 0,
                        "image": "registry.example/app:1",
                        "imageID": "",
                        "state": {"running": {"startedAt": "2024-05-01T10:00:01Z"}},
                    }
                ],
            },
        }

    def add_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        return self._run(self.kmock.put_pod(pod))

    def modify_pod(
        self, namespace: str, name: str, change: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        pod = copy.deepcopy(self.kmock.pods[(namespace, name)])
        change(pod)
        return self._run(self.kmock.put_pod(pod))

    def delete_pod(self, namespace: str, name: str) -> None:
        assert self._run(self.kmock.remove_pod(namespace, name)) is not None

    def has_pod(self, namespace: str, name: str) -> bool:
        return self._call(lambda: (namespace, name) in self.kmock.pods)

    @property
    def resource_version(self) -> str:
        return self._call(lambda: str(self.kmock.rv))

    def drop_watches(self) -> None:
        """Break every open watch connection (after it has sent what it had)."""
        self._run(self.kmock.drop_watches())

    def compact(self) -> None:
        """Forget the history so far: a watch from an older resourceVersion gets 410 Gone."""

        def do() -> None:
            self.kmock.compacted = self.kmock.rv

        self._call(do)

    def watch_requests(self) -> list[dict[str, str]]:
        """The query parameters of every pod watch served so far."""
        return self._call(
            lambda: [
                dict(r.params)
                for r in self.kmock._requests
                if r.resource == PODS and r.params.get("watch") == "true"
            ]
        )

    # -- evictions, nodes, the events.k8s.io API ---------------------------------------
    def block_evictions(self, times: int) -> None:
        """The next ``times`` evictions answer 429 (a PodDisruptionBudget says no)."""

        def do() -> None:
            self.kmock.evictions_blocked = times

        self._call(do)

    def eviction_requests(self) -> list[dict[str, Any]]:
        return self._call(
            lambda: [
                r.data
                for r in self.kmock._requests
                if r.resource == PODS and r.subresource == "eviction"
            ]
        )

    def set(self, **flags: Any) -> None:
        """Set the emulator's switches (``pods_status``, ``field_selectors``,
        ``gone_as_http``, ``events_api_status``, ``evictions_blocked``)."""

        def do() -> None:
            for key, value in flags.items():
                assert hasattr(self.kmock, key), key
                setattr(self.kmock, key, value)

        self._call(do)

    def set_events_api(self, code: int | None) -> None:
        """``events.k8s.io`` answers ``code`` (404: not served, 403: forbidden), or works."""

        def do() -> None:
            self.kmock.events_api_status = code

        self._call(do)

    def delete_events(self) -> None:
        """Forget every stored Event (as the API does after their 1 h TTL)."""

        def do() -> None:
            for key, obj in list(self.kmock.objects.items()):
                if key[0] in (EVENTS_V1, CORE_EVENTS) and not obj.deleted:
                    obj.delete()

        self._call(do)

    def add_node(self, name: str) -> dict[str, Any]:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "uid": str(uuid.uuid4()), "labels": {}},
            "status": {"nodeInfo": {"kernelVersion": "6.1.0"}},
        }

        def do() -> None:
            self.kmock.objects[NODES, None, name] = node

        self._call(do)
        return node

    def events(self, api: str = "events.k8s.io") -> list[dict[str, Any]]:
        """The Events stored through ``api`` (``events.k8s.io`` or ``v1``), oldest first."""
        resource = EVENTS_V1 if api == "events.k8s.io" else CORE_EVENTS

        def read() -> list[dict[str, Any]]:
            found = []
            for (res, _, _), obj in self.kmock.objects.items():
                if res == resource and not obj.deleted:
                    found.append(json.loads(json.dumps(obj.raw)))
            return found

        return self._call(read)

    def event_writes(self) -> list[tuple[str, str, str]]:
        """(method, path, content type) of every write to either Events API."""
        return self._call(
            lambda: [
                (str(r.method.value).upper(), r.url.path, r.headers.get("Content-Type", ""))
                for r in self.kmock._requests
                if r.resource in (EVENTS_V1, CORE_EVENTS) and str(r.method.value).lower() != "get"
            ]
        )

    def authorizations(self) -> set[str]:
        return self._call(
            lambda: {r.headers.get("Authorization", "") for r in self.kmock._requests}
        )


@pytest.fixture(name="kube_api")
def kube_api_fixture(tmp_path: Path) -> Iterator[KubeAPI]:
    """A running :class:`KubeAPI` (import ``kube_api_fixture`` to use it as ``kube_api``)."""
    api = KubeAPI(tmp_path)
    try:
        yield api
    finally:
        api.close()
