"""Pods from the API's JSON name the container, owner and limit behind a container id.

The fixtures in tests/data/kube are ``v1.Pod`` objects as ``kubectl get pod -o json``
prints them (see the README there).
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sentinel.kube.pods as pods_module
from sentinel.kube.pods import (
    IDS_PER_CONTAINER,
    PodIndex,
    PodRef,
    container_ids,
    normalize_container_id,
    owner_of,
    pods_on_node,
)
from sentinel.kube.quantity import MAX_BYTES, QuantityError, parse_bytes, parse_quantity

KUBE = Path(__file__).parent / "data" / "kube"
MI = 1 << 20


def load(name: str) -> dict[str, Any]:
    pod: dict[str, Any] = json.loads((KUBE / f"{name}.json").read_text())
    return pod


def status_of(pod: dict[str, Any], name: str, key: str = "containerStatuses") -> dict[str, Any]:
    entry: dict[str, Any] = next(s for s in pod["status"][key] if s["name"] == name)
    return entry


def bare_id(prefixed: str) -> str:
    return prefixed.split("://", 1)[1]


def index_of(*names: str, **kwargs: Any) -> PodIndex:
    index = PodIndex(**kwargs)
    for name in names:
        index.add(load(name))
    return index


# -- the fixtures, one kind of owner each ------------------------------------------------


def test_deployment_pod_after_an_oom_restart_knows_both_ids() -> None:
    pod = load("deployment-oomkilled")
    web = status_of(pod, "web")
    assert web["lastState"]["terminated"]["reason"] == "OOMKilled"
    killed = bare_id(web["lastState"]["terminated"]["containerID"])
    current = bare_id(web["containerID"])
    index = index_of("deployment-oomkilled")

    for cid in (killed, current):
        ref = index.lookup(container_id=cid, now=0.0)
        assert ref == PodRef(
            node="worker-1",
            namespace="shop",
            pod="web-7d4b9c8f6d-x2k9p",
            pod_uid=pod["metadata"]["uid"],
            container="web",
            container_id=cid,
            container_kind="container",
            owner_kind="Deployment",
            owner_name="web",
            memory_limit=256 * MI,
            qos="burstable",
            labels=pod["metadata"]["labels"],
        )
    assert ref.labels == {"app": "web", "pod-template-hash": "7d4b9c8f6d"}
    sidecar = index.lookup(container_id=status_of(pod, "log-shipper")["containerID"], now=0.0)
    assert sidecar is not None
    assert (sidecar.container, sidecar.memory_limit) == ("log-shipper", 64 * MI)
    assert sidecar.owner == "Deployment/web"


def test_ids_outlive_laststate_across_restarts_but_are_bounded() -> None:
    pod = load("deployment-oomkilled")
    web = status_of(pod, "web")
    first_killed = bare_id(web["lastState"]["terminated"]["containerID"])
    index = PodIndex()
    index.add(pod)
    ids = [bare_id(web["containerID"])]
    for restart in range(IDS_PER_CONTAINER):
        newer = f"{restart:064x}"
        web["lastState"]["terminated"]["containerID"] = f"containerd://{ids[-1]}"
        web["containerID"] = f"containerd://{newer}"
        web["restartCount"] += 1
        ids.append(newer)
        index.add(copy.deepcopy(pod))
        if restart == 0:  # the first killed id is no longer in the pod: the index kept it
            assert first_killed not in container_ids(pod)
            ref = index.lookup(container_id=first_killed, now=0.0)
            assert ref is not None
            assert ref.container == "web"
    assert index.lookup(container_id=first_killed, now=0.0) is None  # the oldest went
    for cid in ids[-IDS_PER_CONTAINER:]:
        ref = index.lookup(container_id=cid, now=0.0)
        assert ref is not None
        assert ref.container == "web"


def test_statefulset_pod_on_crio() -> None:
    pod = load("statefulset")
    cid = status_of(pod, "postgres")["containerID"]
    assert cid.startswith("cri-o://")
    ref = index_of("statefulset").lookup(container_id=bare_id(cid), now=0.0)
    assert ref is not None
    assert (ref.owner_kind, ref.owner_name) == ("StatefulSet", "db")
    assert (ref.namespace, ref.pod, ref.container) == ("data", "db-0", "postgres")
    assert (ref.memory_limit, ref.qos, ref.node) == (1 << 30, "guaranteed", "worker-2")


def test_daemonset_pod_on_docker_without_limit() -> None:
    pod = load("daemonset")
    cid = status_of(pod, "node-exporter")["containerID"]
    assert cid.startswith("docker://")
    ref = index_of("daemonset").lookup(container_id=cid, now=0.0)
    assert ref is not None
    assert ref.owner == "DaemonSet/node-exporter"
    assert (ref.memory_limit, ref.qos) == (None, "besteffort")


def test_job_pod_is_its_job_even_when_a_cronjob_made_it() -> None:
    pod = load("job")
    state = status_of(pod, "backup")["state"]["terminated"]
    assert state["reason"] == "Completed"
    ref = index_of("job").lookup(container_id=bare_id(state["containerID"]), now=0.0)
    assert ref is not None
    assert ref.owner == "Job/backup-28391040"
    assert ref.memory_limit == 500_000_000  # 500M is decimal


def test_static_pod_resolves_by_its_mirror_hash_and_its_api_uid() -> None:
    pod = load("static-mirror")
    annotations = pod["metadata"]["annotations"]
    static_uid = annotations["kubernetes.io/config.mirror"]
    assert static_uid != pod["metadata"]["uid"]
    index = index_of("static-mirror")
    for uid in (static_uid, pod["metadata"]["uid"]):
        ref = index.lookup(pod_uid=uid, now=0.0)
        assert ref is not None
        assert ref.static
        assert ref.owner == "Node/kind-control-plane"
        assert ref.pod_uid == pod["metadata"]["uid"]
        assert ref.container is None
    cid = bare_id(status_of(pod, "kube-apiserver")["containerID"])
    ref = index.lookup(container_id=cid, pod_uid=static_uid, now=0.0)
    assert ref is not None
    assert (ref.container, ref.memory_limit, ref.qos) == ("kube-apiserver", None, "burstable")


def test_static_pod_from_an_older_kubelet_without_a_node_owner() -> None:
    pod = load("static-mirror")
    del pod["metadata"]["ownerReferences"]
    assert owner_of(pod) == ("Node", "kind-control-plane")
    ref = PodIndex()
    ref.add(pod)
    got = ref.lookup(pod_uid=pod["metadata"]["annotations"]["kubernetes.io/config.hash"], now=0)
    assert got is not None
    assert got.static


def test_init_sidecar_and_ephemeral_containers_are_named() -> None:
    pod = load("init-ephemeral")
    index = index_of("init-ephemeral")
    migrate = status_of(pod, "migrate", "initContainerStatuses")
    assert "containerID" in migrate["state"]["terminated"]
    cases = {
        bare_id(migrate["state"]["terminated"]["containerID"]): ("migrate", "init", 128 * MI),
        bare_id(status_of(pod, "proxy", "initContainerStatuses")["containerID"]): (
            "proxy",
            "init",
            64 * MI,
        ),
        bare_id(status_of(pod, "debugger-x7k2q", "ephemeralContainerStatuses")["containerID"]): (
            "debugger-x7k2q",
            "ephemeral",
            None,
        ),
        bare_id(status_of(pod, "api")["containerID"]): ("api", "container", 512 * MI),
    }
    for cid, want in cases.items():
        ref = index.lookup(container_id=cid, now=0.0)
        assert ref is not None
        assert (ref.container, ref.container_kind, ref.memory_limit) == want
        assert ref.owner == "Deployment/api"


def test_bare_pod_has_no_owner() -> None:
    pod = load("bare")
    ref = index_of("bare").lookup(container_id=status_of(pod, "scratch")["containerID"], now=0)
    assert ref is not None
    assert (ref.owner_kind, ref.owner_name, ref.owner) == (None, None, None)
    assert (ref.memory_limit, ref.qos, ref.static) == (1536 * MI, "guaranteed", False)


# -- owners --------------------------------------------------------------------------------


def test_replicaset_not_named_after_the_template_hash_stays_a_replicaset() -> None:
    pod = load("deployment-oomkilled")
    pod["metadata"]["ownerReferences"][0]["name"] = "web-handmade"
    assert owner_of(pod) == ("ReplicaSet", "web-handmade")
    pod = load("deployment-oomkilled")
    del pod["metadata"]["labels"]["pod-template-hash"]
    assert owner_of(pod) == ("ReplicaSet", "web-7d4b9c8f6d")
    pod = load("deployment-oomkilled")
    pod["metadata"]["ownerReferences"][0]["name"] = "-7d4b9c8f6d"
    assert owner_of(pod) == ("ReplicaSet", "-7d4b9c8f6d")


def test_the_controller_reference_is_the_owner() -> None:
    pod = load("job")
    pod["metadata"]["ownerReferences"].insert(
        0, {"apiVersion": "v1", "kind": "ConfigMap", "name": "keeper", "uid": "x"}
    )
    assert owner_of(pod) == ("Job", "backup-28391040")
    pod["metadata"]["ownerReferences"][1]["controller"] = False
    assert owner_of(pod) == ("ConfigMap", "keeper")  # no controller: the first reference


# -- lookups -------------------------------------------------------------------------------


def test_pod_level_lookup_and_unknown_container_of_a_known_pod() -> None:
    pod = load("deployment-oomkilled")
    uid = pod["metadata"]["uid"]
    index = index_of("deployment-oomkilled")
    ref = index.lookup(pod_uid=uid.replace("-", "_"), now=0.0)
    assert ref is not None
    assert (ref.pod, ref.container, ref.container_id, ref.memory_limit) == (
        "web-7d4b9c8f6d-x2k9p",
        None,
        None,
        None,
    )
    sandbox = "f" * 64  # the pause container: in the pod's cgroup, in no status
    ref = index.lookup(container_id=f"containerd://{sandbox}", pod_uid=uid, now=0.0)
    assert ref is not None
    assert (ref.container, ref.container_id, ref.owner) == (None, sandbox, "Deployment/web")
    assert index.lookup(container_id=sandbox, now=0.0) is None
    assert index.lookup(pod_uid="00000000-0000-0000-0000-000000000000", now=0.0) is None
    assert index.lookup(now=0.0) is None


def test_a_known_container_id_wins_over_another_pods_uid() -> None:
    index = index_of("deployment-oomkilled", "bare")
    bare_uid = load("bare")["metadata"]["uid"]
    cid = status_of(load("deployment-oomkilled"), "web")["containerID"]
    ref = index.lookup(container_id=cid, pod_uid=bare_uid, now=0.0)
    assert ref is not None
    assert ref.pod == "web-7d4b9c8f6d-x2k9p"


def test_applied_limit_from_an_in_place_resize_wins_over_the_spec() -> None:
    pod = load("bare")
    status_of(pod, "scratch")["resources"] = {"limits": {"cpu": "500m", "memory": "2Gi"}}
    pod["spec"]["resources"] = {"limits": {"memory": "3Gi"}}
    index = PodIndex()
    index.add(pod)
    ref = index.lookup(container_id=status_of(pod, "scratch")["containerID"], now=0.0)
    assert ref is not None
    assert ref.memory_limit == 2 << 30
    pod_level = index.lookup(pod_uid=pod["metadata"]["uid"], now=0.0)
    assert pod_level is not None
    assert pod_level.memory_limit == 3 << 30


def test_container_id_forms() -> None:
    cid = "ab" * 32
    for raw in (f"containerd://{cid}", f"cri-o://{cid}", f"docker://{cid}", cid, cid.upper()):
        assert normalize_container_id(raw) == cid
    assert normalize_container_id("") is None
    assert normalize_container_id(None) is None
    assert normalize_container_id("containerd://") is None


def test_waiting_containers_have_no_id_yet() -> None:
    pod = load("bare")
    entry = status_of(pod, "scratch")
    del entry["containerID"]
    entry["state"] = {"waiting": {"reason": "ContainerCreating"}}
    assert container_ids(pod) == {}
    index = PodIndex()
    index.add(pod)
    assert len(index) == 1


# -- deletion, relists and watch events ---------------------------------------------------


def test_deleted_pod_is_found_until_its_ttl_runs_out() -> None:
    pod = load("deployment-oomkilled")
    killed = status_of(pod, "web")["lastState"]["terminated"]["containerID"]
    index = index_of("deployment-oomkilled", deleted_ttl=30.0)
    pod["metadata"]["deletionTimestamp"] = "2024-05-14T11:00:00Z"
    index.add(pod)
    terminating = index.lookup(container_id=killed, now=99.0)
    assert terminating is not None
    assert (terminating.terminating, terminating.deleted) == (True, False)

    index.delete(pod, now=100.0)
    assert len(index) == 0
    for now in (100.0, 129.999):
        ref = index.lookup(container_id=killed, now=now)
        assert ref is not None
        assert (ref.container, ref.deleted) == ("web", True)
        assert index.lookup(pod_uid=pod["metadata"]["uid"], now=now) is not None
    assert index.lookup(container_id=killed, now=130.0) is None  # expires at exactly the TTL
    assert index.lookup(pod_uid=pod["metadata"]["uid"], now=130.0) is None
    assert index.expire(now=129.0) == 0
    assert index.expire(now=130.0) == 1
    assert index.lookup(container_id=killed, now=100.0) is None  # forgotten for good


def test_deleted_pods_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pods_module, "MAX_DELETED", 3)
    index = PodIndex(deleted_ttl=1000.0)
    base = load("bare")
    uids = []
    for n in range(5):
        pod = copy.deepcopy(base)
        pod["metadata"]["uid"] = f"{n:08d}-0000-0000-0000-000000000000"
        uids.append(pod["metadata"]["uid"])
        index.add(pod)
        index.delete(pod, now=float(n))
    found = [index.lookup(pod_uid=uid, now=10.0) is not None for uid in uids]
    assert found == [False, False, True, True, True]


def test_relist_moves_missing_pods_to_the_deleted_cache() -> None:
    index = index_of("deployment-oomkilled", "bare", deleted_ttl=60.0)
    dep, bare = load("deployment-oomkilled"), load("bare")
    index.replace([bare], now=10.0)
    assert len(index) == 1
    gone = index.lookup(pod_uid=dep["metadata"]["uid"], now=69.0)
    assert gone is not None
    assert gone.deleted
    assert index.lookup(pod_uid=dep["metadata"]["uid"], now=70.0) is None
    kept = index.lookup(pod_uid=bare["metadata"]["uid"], now=69.0)
    assert kept is not None
    assert not kept.deleted
    index.replace([dep, bare], now=20.0)  # back in the list: live again
    back = index.lookup(pod_uid=dep["metadata"]["uid"], now=1000.0)
    assert back is not None
    assert not back.deleted


def test_watch_events() -> None:
    pod = load("statefulset")
    cid = status_of(pod, "postgres")["containerID"]
    index = PodIndex(deleted_ttl=5.0)
    index.apply("ADDED", pod, now=0.0)
    pod["status"]["qosClass"] = "Burstable"
    index.apply("MODIFIED", pod, now=1.0)
    ref = index.lookup(container_id=cid, now=1.0)
    assert ref is not None
    assert ref.qos == "burstable"
    index.apply("BOOKMARK", {"metadata": {"resourceVersion": "9"}}, now=2.0)
    assert len(index) == 1
    index.apply("DELETED", pod, now=3.0)
    assert len(index) == 0
    assert index.lookup(container_id=cid, now=7.999) is not None
    assert index.lookup(container_id=cid, now=8.0) is None
    with pytest.raises(ValueError, match="ERROR"):
        index.apply("ERROR", {"kind": "Status", "code": 410}, now=4.0)


def test_pods_of_other_nodes_are_left_out() -> None:
    items = [load(n) for n in ("deployment-oomkilled", "statefulset", "daemonset", "bare")]
    assert [p["metadata"]["name"] for p in pods_on_node(items, "worker-1")] == [
        "web-7d4b9c8f6d-x2k9p",
        "node-exporter-7xk2p",
    ]
    assert pods_on_node(items, "worker-9") == []
    index = PodIndex(node="worker-1")
    for pod in items:
        index.add(pod)
    assert len(index) == 2
    assert index.lookup(pod_uid=items[1]["metadata"]["uid"], now=0.0) is None


def test_a_dict_that_is_not_a_pod_is_refused() -> None:
    index = PodIndex()
    with pytest.raises(ValueError, match=r"metadata\.uid"):
        index.add({"metadata": {"name": "x"}})
    with pytest.raises(ValueError, match="deleted_ttl"):
        PodIndex(deleted_ttl=-1)


# -- quantities ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("128Mi", 128 * MI),
        ("1G", 10**9),
        ("500M", 500 * 10**6),
        ("1.5Gi", 1536 * MI),
        ("134217728", 134217728),
        ("1e9", 10**9),
        ("1E3", 1000),
        ("1E", 10**18),
        ("100m", Decimal("0.1")),
        ("250u", Decimal("0.00025")),
        ("5n", Decimal("5e-9")),
        ("1k", 1000),
        ("1Ki", 1024),
        ("2Ti", 2 << 40),
        ("1Ei", 1 << 60),
        (".5Gi", 512 * MI),
        ("1.", 1),
        ("+1Mi", MI),
        ("-1", -1),
        ("12e-1", Decimal("1.2")),
        ("0", 0),
    ],
)
def test_parse_quantity(text: str, value: int | Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Mi",
        "1K",  # decimal kilo is lowercase
        "1mi",
        "1GB",
        "1Gib",
        "1e",
        "1E+",
        " 1Gi",
        "1Gi ",
        "1 Gi",
        "1..2",
        "--1",
        "0x10",
        "1,5Gi",
        "1e1000",
        "1" * 65,
        "∞",
    ],
)
def test_parse_quantity_refuses(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


def test_parse_bytes_rounds_up_like_the_api() -> None:
    assert parse_bytes("100m") == 1
    assert parse_bytes("1.5") == 2
    assert parse_bytes("1e9") == 10**9
    assert parse_bytes(134217728) == 134217728
    assert parse_bytes("7Ei") == 7 << 60
    assert parse_bytes(str(MAX_BYTES)) == MAX_BYTES


@pytest.mark.parametrize("bad", ["-1Mi", "8Ei", str(MAX_BYTES + 1), "1K", True, 1.5, None])
def test_parse_bytes_refuses(bad: Any) -> None:
    with pytest.raises(QuantityError):
        parse_bytes(bad)


SUFFIXES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}


@given(n=st.integers(min_value=0, max_value=10**9), suffix=st.sampled_from(sorted(SUFFIXES)))
def test_integer_quantities_are_exact(n: int, suffix: str) -> None:
    assert parse_bytes(f"{n}{suffix}") == n * SUFFIXES[suffix]
    assert parse_quantity(f"{n}.0{suffix}") == n * SUFFIXES[suffix]
