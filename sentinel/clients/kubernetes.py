"""The only module that talks to the Kubernetes API (through the official ``kubernetes``
client), imported only in Kubernetes mode; ``kubernetes`` itself is imported by
:meth:`KubeClient.connect`, so the errors here can be caught without it installed.

Plain dicts in and out: pods and nodes are the API's JSON (never client models), Events go
in as :class:`~sentinel.kube.events.EventSpec`. Errors are sentinel's own, one line each,
with no bearer token in them: 5xx and a connection that fails are
:class:`~sentinel.errors.TemporaryError`; a pod that no longer exists is :class:`PodGone`;
an eviction a PodDisruptionBudget keeps refusing is :class:`EvictionBlocked`; the rest is a
:class:`~sentinel.errors.SentinelError` naming what was asked and what the API said.

What each call needs from RBAC: pods ``list``/``watch`` (:meth:`KubeClient.list_pods`,
:meth:`KubeClient.watch_pods`), events ``create``/``patch`` in ``events.k8s.io`` or core
(:meth:`KubeClient.post_event`), nodes ``get``, ``pods/eviction`` ``create``
(:meth:`KubeClient.evict`), pods ``delete`` (:meth:`KubeClient.delete_pod`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from sentinel import redact
from sentinel.errors import SentinelError, TemporaryError
from sentinel.kube.events import EventCorrelator, EventDecision, EventSpec, ObjectRef

log = logging.getLogger(__name__)

__all__ = [
    "EventSpec",
    "EvictionBlocked",
    "KubeClient",
    "ObjectRef",
    "PodGone",
]

EVENTS_V1 = "events.k8s.io/v1"
CORE_V1 = "v1"
MERGE_PATCH = "application/merge-patch+json"


class PodGone(SentinelError):
    """The pod was deleted (or never existed): 404."""


class EvictionBlocked(SentinelError):
    """Every eviction until the deadline answered 429 (a PodDisruptionBudget refuses)."""


def _kubernetes() -> Any:
    """The ``kubernetes`` package, imported on first use (Kubernetes mode only)."""
    try:
        import kubernetes.client  # noqa: PLC0415
        import kubernetes.config  # noqa: PLC0415
    except ImportError as e:
        raise SentinelError(
            "Kubernetes mode needs the kubernetes client: pip install 'sentinel-oom[kubernetes]'"
        ) from e
    return kubernetes


def _one_line(text: str) -> str:
    return redact.scrub(" ".join(str(text).split()))


def _status_text(body: Any) -> tuple[str, str]:
    """(reason, message) of a ``v1.Status`` body; ("", first line of the body) otherwise."""
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else body
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("kind") == "Status":
        return str(data.get("reason") or ""), str(data.get("message") or "")
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    return "", text.strip().splitlines()[0][:200] if text.strip() else ""


def _retry_after(body: Any) -> float:
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else {}
        return float((data.get("details") or {}).get("retryAfterSeconds") or 0)
    except (ValueError, AttributeError, TypeError):
        return 0.0


def _micro_time(t: float) -> str:
    """``metav1.MicroTime`` (``RFC3339Micro``): always six fraction digits, UTC."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time(t: float) -> str:
    """``metav1.Time``: RFC 3339 in whole seconds, UTC."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_of(pod: Mapping[str, Any]) -> str | None:
    spec = pod.get("spec") or {}
    return spec.get("nodeName") if isinstance(spec, Mapping) else None


def _version_of(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata") or {}
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return str(rv) if rv else None


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class KubeClient:
    """A thin, typed face of the Kubernetes API for one node (see the module)."""

    def __init__(
        self,
        api_client: Any,
        node: str,
        *,
        watch_timeout: int = 60,
        request_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._k = _kubernetes()
        self._api_client = api_client
        self.node = node
        self.watch_timeout = max(1, int(watch_timeout))
        """Seconds a watch request lasts (the server ends it; a stop is seen after it)."""
        self.request_timeout = request_timeout
        self._clock = clock
        self._core = self._k.client.CoreV1Api(api_client)
        self._events_api = EVENTS_V1
        self._correlator = EventCorrelator()
        self._events_lock = threading.Lock()
        self.server = str(getattr(api_client.configuration, "host", "") or "")

    # -- construction --------------------------------------------------------------------
    @classmethod
    def connect(
        cls,
        *,
        node: str | None = None,
        kubeconfig: str | None = None,
        environ: Mapping[str, str] | None = None,
        watch_timeout: int = 60,
        request_timeout: float = 30.0,
    ) -> KubeClient:
        """A client for this node's pods.

        The configuration: ``kubeconfig`` when given; else the pod's service account when
        ``KUBERNETES_SERVICE_HOST`` is set (in-cluster); else ``KUBECONFIG`` or
        ``~/.kube/config``. The node: ``node``, else ``NODE_NAME`` (set it from the
        Downward API's ``spec.nodeName``). Nothing is asked of the API here.
        """
        env = os.environ if environ is None else environ
        node = node or env.get("NODE_NAME") or None
        k = _kubernetes()
        configuration = k.client.Configuration()
        if kubeconfig:
            source = f"kubeconfig {kubeconfig}"
        elif env.get("KUBERNETES_SERVICE_HOST"):
            source = "the in-cluster service account"
        else:
            path = env.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
            if not os.path.exists(path.split(os.pathsep)[0]):
                raise SentinelError(
                    "no Kubernetes configuration: not in a cluster (KUBERNETES_SERVICE_HOST"
                    " is not set) and no kubeconfig (set KUBECONFIG or pass --kubeconfig)"
                )
            kubeconfig, source = path, f"kubeconfig {path}"
        try:
            if kubeconfig:
                k.config.load_kube_config(
                    config_file=kubeconfig,
                    client_configuration=configuration,
                    persist_config=False,
                )
            else:
                k.config.load_incluster_config(client_configuration=configuration)
        except (TypeError, AttributeError, KeyError) as e:  # YAML, but not a kubeconfig
            raise SentinelError(
                f"Kubernetes configuration from {source}: not a kubeconfig (expected a mapping"
                " with clusters, users and contexts)"
            ) from e
        except Exception as e:  # ConfigException, OSError, a YAML error, ...
            raise SentinelError(
                f"Kubernetes configuration from {source}: {_one_line(str(e))}"
            ) from e
        token = str((configuration.api_key or {}).get("authorization") or "")
        redact.remember(token, token.removeprefix("Bearer ").strip())
        if not node:
            raise SentinelError(
                "no node name: set NODE_NAME (from the Downward API's spec.nodeName) or --node"
            )
        api_client = k.client.ApiClient(configuration)
        return cls(api_client, node, watch_timeout=watch_timeout, request_timeout=request_timeout)

    def close(self) -> None:
        self._api_client.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- errors --------------------------------------------------------------------------
    def _translate(self, what: str, e: Exception) -> SentinelError:
        k = self._k
        if isinstance(e, k.client.ApiException):
            code = int(e.status or 0)
            reason, message = _status_text(e.body)
            said = f"{code} {reason}".strip() + (f": {message}" if message else "")
            text = _one_line(f"{what}: the Kubernetes API answered {said}")
            if code >= 500 or code in (0, 429):
                return TemporaryError(text, delay=5.0)
            return SentinelError(text)
        urllib3 = _urllib3()
        if isinstance(e, urllib3.exceptions.HTTPError | OSError):
            return TemporaryError(
                _one_line(f"{what}: the Kubernetes API at {self.server} is not reachable ({e})"),
                delay=5.0,
            )
        return SentinelError(_one_line(f"{what}: {type(e).__name__}: {e}"))

    def _call(self, what: str, fn: Callable[[], Any], *, gone: str | None = None) -> Any:
        """``fn()``, its errors translated; a 404 is :class:`PodGone` when ``gone`` says
        what is gone."""
        try:
            return fn()
        except SentinelError:
            raise
        except Exception as e:
            if gone and isinstance(e, self._k.client.ApiException) and e.status == 404:
                raise PodGone(f"{what}: {gone} no longer exists") from None
            raise self._translate(what, e) from None

    def _json(self, what: str, fn: Callable[[], Any]) -> dict[str, Any]:
        response = self._call(what, fn)
        try:
            data = json.loads(response.data)
        except ValueError as e:
            raise SentinelError(f"{what}: the Kubernetes API sent no JSON ({e})") from None
        if not isinstance(data, dict):
            raise SentinelError(f"{what}: the Kubernetes API sent {type(data).__name__}")
        return data

    # -- pods ----------------------------------------------------------------------------
    @property
    def _selector(self) -> str:
        return f"spec.nodeName={self.node}"

    def list_pods(self) -> tuple[list[dict[str, Any]], str]:
        """The pods on this node (the API's JSON) and the list's resourceVersion."""
        data = self._json(
            "list pods",
            lambda: self._core.list_pod_for_all_namespaces(
                field_selector=self._selector,
                _preload_content=False,
                _request_timeout=self.request_timeout,
            ),
        )
        items = [p for p in data.get("items") or [] if _node_of(p) == self.node]
        return items, str((data.get("metadata") or {}).get("resourceVersion") or "")

    def watch_pods(
        self, resource_version: str, stop: threading.Event
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Changes to this node's pods after ``resource_version``, until ``stop`` is set.

        Yields ``("ADDED" | "MODIFIED" | "DELETED", pod)``. A watch that ends or breaks is
        resumed from the last resourceVersion seen (bookmarks included), so nothing is lost
        or repeated; when that version has expired (410 Gone) the pods are listed again and
        ``("RESYNC", {"items": [...], "resourceVersion": ...})`` says to replace them all.
        Connection failures are retried with backoff (0.5 s doubling to 30 s, logged);
        a refusal (403, ...) raises :class:`~sentinel.errors.SentinelError`. ``stop`` is
        seen between events and at least every :attr:`watch_timeout` seconds.
        """
        rv = resource_version
        failures = 0
        expired = False
        while not stop.is_set():
            try:
                if expired:
                    items, rv = self.list_pods()
                    expired = False
                    yield "RESYNC", {"items": items, "resourceVersion": rv}
                for kind, obj in self._watch_once(rv, stop):
                    failures = 0
                    rv = _version_of(obj) or rv
                    if kind == "BOOKMARK":
                        continue
                    if _node_of(obj) == self.node:
                        yield kind, obj
                    if stop.is_set():
                        return
                failures = 0
            except _Expired:
                log.info("pod watch from resourceVersion %s expired: listing again", rv)
                expired = True
            except TemporaryError as e:
                delay = min(30.0, 0.5 * 2**failures) if failures else 0.0
                failures += 1
                log.warning("pod watch broke (%s); resuming in %.1f s", e, delay)
                if delay and stop.wait(delay):
                    return

    def _watch_once(self, rv: str, stop: threading.Event) -> Iterator[tuple[str, dict[str, Any]]]:
        """One watch request: its events until the server ends it."""
        what = f"watch pods on {self.node}"
        try:
            response = self._core.list_pod_for_all_namespaces(
                field_selector=self._selector,
                watch=True,
                resource_version=rv,
                allow_watch_bookmarks=True,
                timeout_seconds=self.watch_timeout,
                _preload_content=False,
                _request_timeout=(self.request_timeout, self.watch_timeout + self.request_timeout),
            )
        except self._k.client.ApiException as e:
            if e.status == 410:
                raise _Expired from None
            raise self._translate(what, e) from None
        except Exception as e:
            raise self._translate(what, e) from None
        try:
            for line in _lines(response):
                if stop.is_set():
                    return
                try:
                    event = json.loads(line)
                    kind, obj = str(event["type"]), event["object"]
                except (ValueError, KeyError, TypeError):
                    log.warning("pod watch: skipped a line that is no event: %.200r", line)
                    continue
                if kind == "ERROR":
                    code = int(obj.get("code") or 0) if isinstance(obj, dict) else 0
                    if code == 410:
                        raise _Expired
                    reason, message = _status_text(obj)
                    text = _one_line(f"{what}: the watch said {code} {reason}: {message}")
                    if code >= 500 or code == 0:
                        raise TemporaryError(text)
                    raise SentinelError(text)
                if isinstance(obj, dict):
                    yield kind, obj
        except SentinelError:
            raise
        except _Expired:
            raise
        except Exception as e:
            raise self._translate(what, e) from None
        finally:
            response.close()
            response.release_conn()

    def evict(
        self,
        namespace: str,
        name: str,
        *,
        grace_period: float | None,
        deadline: float = 60.0,
        backoff: float = 1.0,
    ) -> str:
        """Evict the pod through the Eviction API (``policy/v1``), which honours its
        PodDisruptionBudgets: a 429 is retried after ``backoff`` seconds, doubling, for
        ``deadline`` seconds, then :class:`EvictionBlocked`. 404: :class:`PodGone`."""
        what = f"evict pod {namespace}/{name}"
        body: dict[str, Any] = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        if grace_period is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": max(0, math.ceil(grace_period))}
        eviction = self._k.client.V1Eviction.from_dict(body)
        started = time.monotonic()
        delay = backoff
        attempts = 0
        while True:
            attempts += 1
            try:
                self._core.create_namespaced_pod_eviction(
                    name,
                    namespace,
                    eviction,
                    _preload_content=False,
                    _request_timeout=self.request_timeout,
                )
                return "evicted"
            except self._k.client.ApiException as e:
                if e.status == 404:
                    raise PodGone(f"{what}: the pod no longer exists") from None
                if e.status != 429:
                    raise self._translate(what, e) from None
                _, message = _status_text(e.body)
                wait = max(delay, _retry_after(e.body))
                elapsed = time.monotonic() - started
                if elapsed + wait > deadline:
                    raise EvictionBlocked(
                        _one_line(f"{what}: refused {attempts} times in {elapsed:.0f} s: {message}")
                    ) from None
                log.info("%s: 429 (%s); again in %.1f s", what, message, wait)
                time.sleep(wait)
                delay *= 2
            except Exception as e:
                raise self._translate(what, e) from None

    def delete_pod(self, namespace: str, name: str, *, grace_period: float | None) -> str:
        """Delete the pod (no PodDisruptionBudget is asked). 404: :class:`PodGone`."""
        seconds = None if grace_period is None else max(0, math.ceil(grace_period))
        self._call(
            f"delete pod {namespace}/{name}",
            lambda: self._core.delete_namespaced_pod(
                name,
                namespace,
                grace_period_seconds=seconds,
                _preload_content=False,
                _request_timeout=self.request_timeout,
            ),
            gone="the pod",
        )
        return "deleted"

    def get_node(self, name: str) -> dict[str, Any]:
        """The Node (for an Event about a kill outside any pod)."""
        return self._json(
            f"get node {name}",
            lambda: self._core.read_node(
                name, _preload_content=False, _request_timeout=self.request_timeout
            ),
        )

    # -- events --------------------------------------------------------------------------
    def post_event(self, spec: EventSpec) -> str:
        """Report ``spec`` as an Event (``events.k8s.io/v1``; core ``v1`` when that API
        answers 404 or 403), deduplicated and rate-limited by
        :class:`~sentinel.kube.events.EventCorrelator`. Returns what was done: ``created``,
        ``updated`` (the count of the same Event) or ``dropped`` (rate limit). The reporting
        instance is this node unless ``spec`` names one."""
        if not spec.reporting_instance:
            spec = dataclasses.replace(spec, reporting_instance=self.node)
        with self._events_lock:
            decision = self._correlator.observe(spec, self._clock())
            if decision.outcome == "drop":
                log.debug("event %s on %s dropped (rate limit)", spec.reason, spec.regarding.name)
                return "dropped"
            if decision.outcome == "update":
                try:
                    self._patch_event(spec, decision)
                    return "updated"
                except _EventMissing:
                    pass  # expired from the API (1 h by default): write it anew
            self._create_event(spec, decision)
            return "created"

    def _event_path(self, api: str, namespace: str, name: str = "") -> str:
        base = "/apis/events.k8s.io/v1" if api == EVENTS_V1 else "/api/v1"
        return f"{base}/namespaces/{namespace}/events" + (f"/{name}" if name else "")

    def _create_event(self, spec: EventSpec, decision: EventDecision) -> None:
        what = f"post event {spec.reason} on {spec.regarding.kind} {spec.regarding.name}"
        if self._events_api == EVENTS_V1:
            try:
                self._send("POST", EVENTS_V1, spec.namespace, "", _events_v1(spec, decision))
                return
            except self._k.client.ApiException as e:
                if e.status not in (403, 404):
                    raise self._translate(what, e) from None
                log.info(
                    "events.k8s.io/v1 answered %s: posting core v1 Events from now on",
                    e.status,
                )
                self._events_api = CORE_V1
            except Exception as e:
                raise self._translate(what, e) from None
        try:
            self._send("POST", CORE_V1, spec.namespace, "", _core_event(spec, decision))
        except Exception as e:
            raise self._translate(what, e) from None

    def _patch_event(self, spec: EventSpec, decision: EventDecision) -> None:
        what = f"update event {decision.name} ({spec.reason}) on {spec.regarding.name}"
        if self._events_api == EVENTS_V1:
            patch: dict[str, Any] = {
                "series": {
                    "count": decision.count,
                    "lastObservedTime": _micro_time(decision.last_seen),
                }
            }
        else:
            patch = {"count": decision.count, "lastTimestamp": _time(decision.last_seen)}
        try:
            self._send("PATCH", self._events_api, spec.namespace, decision.name, patch)
        except self._k.client.ApiException as e:
            if e.status == 404:
                raise _EventMissing from None
            raise self._translate(what, e) from None
        except Exception as e:
            raise self._translate(what, e) from None

    def _send(self, method: str, api: str, namespace: str, name: str, body: Any) -> None:
        """A write of a JSON body as is (the client's Event models would reformat the
        MicroTime fields; the API wants six fraction digits)."""
        content_type = MERGE_PATCH if method == "PATCH" else "application/json"
        request = self._api_client.param_serialize(
            method,
            self._event_path(api, namespace, name),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api_client.call_api(*request, _request_timeout=self.request_timeout)
        response.read()
        if not 200 <= response.status <= 299:
            raise self._k.client.ApiException.from_response(
                http_resp=response, body=None, data=None
            )


class _EventMissing(Exception):
    """The Event to update is not in the API any more."""


def _events_v1(spec: EventSpec, decision: EventDecision) -> dict[str, Any]:
    event: dict[str, Any] = {
        "apiVersion": EVENTS_V1,
        "kind": "Event",
        "metadata": {"name": decision.name, "namespace": spec.namespace},
        "eventTime": _micro_time(decision.first_seen),
        "reportingController": spec.reporting_controller,
        "reportingInstance": spec.reporting_instance,
        "action": spec.action,
        "reason": spec.reason,
        "type": spec.type,
        "note": spec.note,
        "regarding": spec.regarding.as_api(),
    }
    if decision.count > 1:
        event["series"] = {
            "count": decision.count,
            "lastObservedTime": _micro_time(decision.last_seen),
        }
    return event


def _core_event(spec: EventSpec, decision: EventDecision) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": decision.name, "namespace": spec.namespace},
        "involvedObject": spec.regarding.as_api(),
        "reason": spec.reason,
        "message": spec.note,
        "type": spec.type,
        "action": spec.action,
        "count": decision.count,
        "firstTimestamp": _time(decision.first_seen),
        "lastTimestamp": _time(decision.last_seen),
        "source": {"component": spec.reporting_controller, "host": spec.reporting_instance},
        "reportingComponent": spec.reporting_controller,
        "reportingInstance": spec.reporting_instance,
    }


def _urllib3() -> Any:
    import urllib3  # noqa: PLC0415  (the client's transport; imported with it)

    return urllib3


def _lines(response: Any) -> Iterator[str]:
    """The lines of a streamed response, as they arrive."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk if isinstance(chunk, bytes) else str(chunk).encode()
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line.decode(errors="replace")
    if buffer.strip():
        yield buffer.decode(errors="replace")
