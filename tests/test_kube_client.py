"""The Kubernetes adapter against a local API (tests/kube_api.py) with the real client."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kube_api import KubeAPI, kube_api_fixture  # noqa: F401  (the fixture kube_api)
from sentinel.clients.kubernetes import EvictionBlocked, KubeClient, PodGone
from sentinel.errors import SentinelError, TemporaryError
from sentinel.kube.events import BURST, EventSpec, ObjectRef

NODE = "node-1"


@pytest.fixture
def client(kube_api: KubeAPI) -> Iterator[KubeClient]:
    with KubeClient.connect(node=NODE, kubeconfig=str(kube_api.kubeconfig), watch_timeout=1) as c:
        yield c


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {check}")


class Watcher:
    """``client.watch_pods`` run in a thread; what it yields lands in a queue."""

    def __init__(self, client: KubeClient, rv: str) -> None:
        self.stop = threading.Event()
        self.got: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(client, rv), daemon=True)
        self.thread.start()

    def _run(self, client: KubeClient, rv: str) -> None:
        try:
            for item in client.watch_pods(rv, self.stop):
                self.got.put(item)
        except BaseException as e:
            self.error = e

    def next(self) -> tuple[str, str]:
        kind, obj = self.got.get(timeout=10)
        if kind == "RESYNC":
            return kind, ",".join(sorted(p["metadata"]["name"] for p in obj["items"]))
        return kind, obj["metadata"]["name"]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the watch did not honour stop"
        assert self.error is None, self.error


@pytest.fixture
def watch(client: KubeClient) -> Iterator[Callable[[str], Watcher]]:
    watchers: list[Watcher] = []

    def start(rv: str) -> Watcher:
        watchers.append(Watcher(client, rv))
        return watchers[-1]

    yield start
    for w in watchers:
        w.close()


def names(pods: list[dict[str, Any]]) -> list[str]:
    return sorted(p["metadata"]["name"] for p in pods)


# -- list and watch -------------------------------------------------------------------------
def test_list_names_this_nodes_pods_and_the_resource_version(
    kube_api: KubeAPI, client: KubeClient
) -> None:
    kube_api.add_pod(kube_api.pod("web-1"))
    kube_api.add_pod(kube_api.pod("elsewhere", node="node-2"))
    kube_api.add_pod(kube_api.pod("dns", namespace="kube-system"))
    pods, rv = client.list_pods()
    assert names(pods) == ["dns", "web-1"]
    assert rv == kube_api.resource_version
    assert pods[0]["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")


def test_other_nodes_pods_are_filtered_out_even_when_the_server_does_not(
    kube_api: KubeAPI, client: KubeClient, watch: Callable[[str], Watcher]
) -> None:
    kube_api.set(field_selectors=False)
    kube_api.add_pod(kube_api.pod("mine"))
    kube_api.add_pod(kube_api.pod("theirs", node="node-2"))
    pods, rv = client.list_pods()
    assert names(pods) == ["mine"]
    w = watch(rv)
    kube_api.add_pod(kube_api.pod("theirs-2", node="node-2"))
    kube_api.add_pod(kube_api.pod("mine-2"))
    assert w.next() == ("ADDED", "mine-2")
    assert w.got.empty()


def test_a_dropped_watch_resumes_without_losing_or_repeating_a_change(
    kube_api: KubeAPI, client: KubeClient, watch: Callable[[str], Watcher]
) -> None:
    kube_api.add_pod(kube_api.pod("before"))
    pods, rv = client.list_pods()
    assert names(pods) == ["before"]
    w = watch(rv)
    added = kube_api.add_pod(kube_api.pod("web-1"))
    assert w.next() == ("ADDED", "web-1")

    kube_api.drop_watches()  # the connection breaks; these happen before the next watch
    kube_api.add_pod(kube_api.pod("web-2"))
    kube_api.modify_pod("default", "web-1", lambda p: p["metadata"]["labels"].update(v="2"))
    kube_api.delete_pod("default", "before")
    kube_api.add_pod(kube_api.pod("elsewhere", node="node-2"))
    kube_api.add_pod(kube_api.pod("web-3"))

    seen = [w.next() for _ in range(4)]
    assert seen == [
        ("ADDED", "web-2"),
        ("MODIFIED", "web-1"),
        ("DELETED", "before"),
        ("ADDED", "web-3"),
    ]
    resumed = [r["resourceVersion"] for r in kube_api.watch_requests()]
    assert resumed[:2] == [rv, added["metadata"]["resourceVersion"]]
    assert all(r.get("fieldSelector") == f"spec.nodeName={NODE}" for r in kube_api.watch_requests())
    w.close()
    assert w.got.empty()


def test_a_watch_that_times_out_resumes_from_its_bookmark(
    kube_api: KubeAPI, client: KubeClient, watch: Callable[[str], Watcher]
) -> None:
    _, rv = client.list_pods()
    w = watch(rv)
    kube_api.add_pod(kube_api.pod("mine"))
    assert w.next() == ("ADDED", "mine")
    kube_api.add_pod(kube_api.pod("theirs", node="node-2"))  # moves the version, not sent
    newest = kube_api.resource_version
    wait_for(lambda: any(r["resourceVersion"] == newest for r in kube_api.watch_requests()))
    kube_api.add_pod(kube_api.pod("mine-2"))
    assert w.next() == ("ADDED", "mine-2")
    assert all(r.get("allowWatchBookmarks") == "true" for r in kube_api.watch_requests())
    assert all(r.get("timeoutSeconds") == "1" for r in kube_api.watch_requests())


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
def test_an_expired_resource_version_lists_again_and_says_resync(
    kube_api: KubeAPI, client: KubeClient, watch: Callable[[str], Watcher], as_http: bool
) -> None:
    kube_api.set(gone_as_http=as_http)
    kube_api.add_pod(kube_api.pod("old"))
    _, rv = client.list_pods()
    kube_api.add_pod(kube_api.pod("missed"))
    kube_api.compact()
    w = watch(rv)
    assert w.next() == ("RESYNC", "missed,old")
    kube_api.add_pod(kube_api.pod("after"))
    assert w.next() == ("ADDED", "after")
    assert w.got.empty()


def test_stop_ends_an_idle_watch(kube_api: KubeAPI, client: KubeClient) -> None:
    _, rv = client.list_pods()
    w = Watcher(client, rv)
    wait_for(kube_api.watch_requests)
    started = time.monotonic()
    w.close()
    assert time.monotonic() - started < 5


# -- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "error"), [(403, SentinelError), (500, TemporaryError), (503, TemporaryError)]
)
def test_api_errors_are_one_line_without_the_token(
    kube_api: KubeAPI, client: KubeClient, code: int, error: type[SentinelError]
) -> None:
    kube_api.set(pods_status=code)
    with pytest.raises(error) as caught:
        client.list_pods()
    text = str(caught.value)
    assert type(caught.value) is error
    assert text.startswith(f"list pods: the Kubernetes API answered {code} ")
    assert "\n" not in text
    assert kube_api.token not in text
    assert f"Bearer {kube_api.token}" in kube_api.authorizations()


def test_a_refused_watch_raises_instead_of_retrying(kube_api: KubeAPI, client: KubeClient) -> None:
    kube_api.set(pods_status=403)
    with pytest.raises(SentinelError, match=r"watch pods on node-1: .* 403 Forbidden"):
        next(client.watch_pods("1", threading.Event()))


def test_an_unreachable_api_is_temporary(tmp_path: Path, kube_api: KubeAPI) -> None:
    config = kube_api.kubeconfig.read_text().replace(kube_api.url, "http://127.0.0.1:9")
    path = tmp_path / "unreachable"
    path.write_text(config)
    c = KubeClient.connect(node=NODE, kubeconfig=str(path), request_timeout=2)
    c._api_client.configuration.retries = 0
    with pytest.raises(TemporaryError, match="not reachable") as caught:
        c.list_pods()
    assert "\n" not in str(caught.value)
    assert kube_api.token not in str(caught.value)


def test_connect_errors_are_one_line(
    tmp_path: Path, kube_api: KubeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    errors = []
    for kwargs in [
        {"environ": {"NODE_NAME": NODE}},
        {"environ": {}, "kubeconfig": str(kube_api.kubeconfig)},
        {"environ": {"KUBECONFIG": str(tmp_path / "missing")}, "node": NODE},
        {"environ": {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "node": NODE},
    ]:
        with pytest.raises(SentinelError) as caught:
            KubeClient.connect(**kwargs)  # type: ignore[arg-type]
        errors.append(str(caught.value))
    bad = tmp_path / "bad"
    bad.write_text("clusters: [\n")
    with pytest.raises(SentinelError) as caught:
        KubeClient.connect(node=NODE, kubeconfig=str(bad), environ={})
    errors.append(str(caught.value))
    assert all("\n" not in e and "Traceback" not in e for e in errors), errors
    assert "no Kubernetes configuration" in errors[0]
    assert "NODE_NAME" in errors[1]
    assert "no Kubernetes configuration" in errors[2]
    assert "in-cluster" in errors[3]
    assert str(bad) in errors[4]
    # YAML, but not a kubeconfig (a text file given by mistake): said so, not a TypeError
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(SentinelError, match="not a kubeconfig"):
        KubeClient.connect(node=NODE, kubeconfig=str(text), environ={})


def test_connect_takes_the_node_from_node_name(kube_api: KubeAPI) -> None:
    env = {"NODE_NAME": "node-7", "KUBECONFIG": str(kube_api.kubeconfig)}
    with KubeClient.connect(environ=env) as c:
        assert c.node == "node-7"
        kube_api.add_pod(kube_api.pod("there", node="node-7"))
        assert names(c.list_pods()[0]) == ["there"]


# -- events -------------------------------------------------------------------------------
def oom(pod: dict[str, Any], note: str = "killed python (pid 4242): RSS 250 MiB") -> EventSpec:
    return EventSpec(
        regarding=ObjectRef.of(pod),
        reason="OOMKilled",
        note=note,
        type="Warning",
        action="Killed",
        reporting_instance=NODE,
    )


def test_an_event_in_events_k8s_io_then_its_series(kube_api: KubeAPI, client: KubeClient) -> None:
    pod = kube_api.add_pod(kube_api.pod("web-1", namespace="shop"))
    assert client.post_event(oom(pod)) == "created"
    [event] = kube_api.events()
    assert event["regarding"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "web-1",
        "namespace": "shop",
        "uid": pod["metadata"]["uid"],
    }
    assert event["metadata"]["namespace"] == "shop"
    assert event["metadata"]["name"].startswith("web-1.")
    assert (event["reason"], event["type"], event["action"]) == ("OOMKilled", "Warning", "Killed")
    assert (event["reportingController"], event["reportingInstance"]) == ("sentinel", NODE)
    assert event["note"].startswith("killed python")
    assert event["eventTime"].endswith("Z")
    assert len(event["eventTime"].split(".")[1]) == 7  # MicroTime: six digits and Z
    assert "series" not in event

    assert client.post_event(oom(pod)) == "updated"
    [event] = kube_api.events()
    assert event["series"]["count"] == 2
    assert event["series"]["lastObservedTime"] >= event["eventTime"]
    assert [(m, ct) for m, _, ct in kube_api.event_writes()] == [
        ("POST", "application/json"),
        ("PATCH", "application/merge-patch+json"),
    ]
    assert kube_api.events("v1") == []


@pytest.mark.parametrize("code", [404, 403])
def test_core_v1_events_when_events_k8s_io_is_missing_or_forbidden(
    kube_api: KubeAPI, client: KubeClient, code: int
) -> None:
    kube_api.set_events_api(code)
    pod = kube_api.add_pod(kube_api.pod("web-1"))
    assert client.post_event(oom(pod)) == "created"
    assert client.post_event(oom(pod)) == "updated"
    assert kube_api.events() == []
    [event] = kube_api.events("v1")
    assert event["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert event["message"].startswith("killed python")
    assert event["count"] == 2
    assert event["source"] == {"component": "sentinel", "host": NODE}
    assert event["firstTimestamp"] <= event["lastTimestamp"]
    paths = [path for _, path, _ in kube_api.event_writes()]
    assert paths[0] == "/apis/events.k8s.io/v1/namespaces/default/events"
    assert paths[1:] == [
        "/api/v1/namespaces/default/events",
        f"/api/v1/namespaces/default/events/{event['metadata']['name']}",
    ]


def test_an_oom_outside_any_pod_is_an_event_on_the_node(
    kube_api: KubeAPI, client: KubeClient
) -> None:
    kube_api.add_node(NODE)
    node = client.get_node(NODE)
    spec = EventSpec(
        regarding=ObjectRef.of(node, kind="Node"),
        reason="OOMKilled",
        note="killed sshd (pid 900) outside any pod",
    )
    assert client.post_event(spec) == "created"
    [event] = kube_api.events()
    assert event["metadata"]["namespace"] == "default"
    assert event["regarding"]["kind"] == "Node"
    assert event["reportingInstance"] == NODE  # the client's node when the spec names none
    assert event["regarding"]["uid"] == node["metadata"]["uid"]
    with pytest.raises(SentinelError, match=r"get node nope: .*404"):
        client.get_node("nope")


def test_the_26th_event_on_one_pod_is_dropped(kube_api: KubeAPI, client: KubeClient) -> None:
    pod = kube_api.add_pod(kube_api.pod("web-1"))
    other = kube_api.add_pod(kube_api.pod("web-2"))
    results = [client.post_event(oom(pod, f"kill {i}")) for i in range(BURST + 1)]
    assert results == ["created"] * BURST + ["dropped"]
    assert client.post_event(oom(other)) == "created"
    notes = sorted(e["note"] for e in kube_api.events())
    assert len(notes) == BURST + 1
    assert f"kill {BURST}" not in notes


def test_an_expired_event_is_written_again(kube_api: KubeAPI, client: KubeClient) -> None:
    pod = kube_api.add_pod(kube_api.pod("web-1"))
    client.post_event(oom(pod))
    kube_api.delete_events()
    assert client.post_event(oom(pod)) == "created"
    [event] = kube_api.events()
    assert event["series"]["count"] == 2


# -- eviction and deletion ------------------------------------------------------------------
def test_an_eviction_answered_429_is_retried(kube_api: KubeAPI, client: KubeClient) -> None:
    kube_api.add_pod(kube_api.pod("web-1"))
    kube_api.block_evictions(2)
    assert client.evict("default", "web-1", grace_period=29.5, backoff=0.01) == "evicted"
    requests = kube_api.eviction_requests()
    assert len(requests) == 3
    assert requests[0]["apiVersion"] == "policy/v1"
    assert requests[0]["deleteOptions"]["gracePeriodSeconds"] == 30
    assert not kube_api.has_pod("default", "web-1")


def test_an_eviction_refused_until_the_deadline_is_blocked(
    kube_api: KubeAPI, client: KubeClient
) -> None:
    kube_api.add_pod(kube_api.pod("web-1"))
    kube_api.block_evictions(1000)
    with pytest.raises(EvictionBlocked) as caught:
        client.evict("default", "web-1", grace_period=None, deadline=0.3, backoff=0.02)
    text = str(caught.value)
    assert "disruption budget" in text
    assert "\n" not in text
    attempts = len(kube_api.eviction_requests())
    assert 3 <= attempts <= 6  # 0.02, 0.04, 0.08, 0.16 s: the next wait passes the deadline
    assert f"refused {attempts} times" in text
    assert "deleteOptions" not in kube_api.eviction_requests()[0]
    assert kube_api.has_pod("default", "web-1")


def test_a_pod_deleted_while_its_eviction_waits_is_gone(
    kube_api: KubeAPI, client: KubeClient
) -> None:
    kube_api.add_pod(kube_api.pod("web-1"))
    kube_api.block_evictions(1000)
    outcome: queue.Queue[BaseException | str] = queue.Queue()

    def evict() -> None:
        try:
            outcome.put(client.evict("default", "web-1", grace_period=None, backoff=0.02))
        except BaseException as e:
            outcome.put(e)

    threading.Thread(target=evict, daemon=True).start()
    wait_for(lambda: len(kube_api.eviction_requests()) >= 2)
    kube_api.delete_pod("default", "web-1")
    result = outcome.get(timeout=10)
    assert isinstance(result, PodGone)
    assert "evict pod default/web-1" in str(result)


def test_evict_and_delete_of_a_missing_pod_are_pod_gone(
    kube_api: KubeAPI, client: KubeClient
) -> None:
    with pytest.raises(PodGone):
        client.evict("default", "nope", grace_period=None)
    with pytest.raises(PodGone, match="delete pod default/nope"):
        client.delete_pod("default", "nope", grace_period=5)


def test_delete_pod(kube_api: KubeAPI, client: KubeClient, watch: Callable[[str], Watcher]) -> None:
    kube_api.add_pod(kube_api.pod("web-1"))
    _, rv = client.list_pods()
    w = watch(rv)
    assert client.delete_pod("default", "web-1", grace_period=0.2) == "deleted"
    assert w.next() == ("DELETED", "web-1")
    assert not kube_api.has_pod("default", "web-1")
