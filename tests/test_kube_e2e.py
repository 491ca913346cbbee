"""End to end: ``sentinel run --mode kubernetes`` on a node simulated with real cgroups.

No API server can run here, so the pods come from the local Kubernetes API of
``tests/kube_api.py`` (the real ``kubernetes`` client talks to it). The node is real: for
each pod, memory cgroups named exactly as kubelet names them (the cgroupfs driver's
``kubepods/burstable/pod<uid>/<container id>`` or the systemd driver's
``kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/
cri-containerd-<id>.scope``), below a cgroup of this test's own, holding a real process
that leaks. Sentinel must name the pod from the cgroup and the API, forecast the kill and
evict the right pod, and turn a real kernel kill (read from the real ``/dev/kmsg``) into
exactly one ``OOMKilled`` Event on the right pod.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import cgroups
from daemon_process import SentinelProcess
from kube_api import KubeAPI, kube_api_fixture

__all__ = ["kube_api_fixture"]

pytestmark = pytest.mark.kernel

MIB = 1 << 20
NODE = "node-1"


@contextmanager
def kubelet_cgroup(
    driver: str, pod_uid: str, container_id: str, *, limit_bytes: int
) -> Iterator[cgroups.Cgroup]:
    """The container cgroup kubelet would make for a burstable pod, below a cgroup of this
    test's own (the pod cgroup gets a roomier limit, as kubelet gives it the sum)."""
    root = cgroups.create(limit_bytes=512 * MIB)
    try:
        if driver == "cgroupfs":
            names = ["kubepods", "burstable", f"pod{pod_uid}", container_id]
        else:
            uid = pod_uid.replace("-", "_")
            names = [
                "kubepods.slice",
                "kubepods-burstable.slice",
                f"kubepods-burstable-pod{uid}.slice",
                f"cri-containerd-{container_id}.scope",
            ]
        cg = root
        for name in names[:-1]:
            cg = cg.child(name, limit_bytes=512 * MIB)
        yield cg.child(names[-1], limit_bytes=limit_bytes)
    finally:
        root.remove()


def policy(rules: str) -> str:
    return f"""\
version: 1
settings:
  sample_interval: 1s
notifiers:
  ops-log: {{type: log}}
rules:
{rules}"""


def start(kube_api: KubeAPI, rules: str, workdir: Path) -> SentinelProcess:
    return SentinelProcess.start(
        policy(rules),
        workdir,
        args=["--mode", "kubernetes", "--kubeconfig", str(kube_api.kubeconfig), "--node", NODE],
    )


def cid() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


def events_on(kube_api: KubeAPI, pod: str, reason: str) -> list[dict[str, Any]]:
    return [
        e
        for e in kube_api.events()
        if e.get("reason") == reason and (e.get("regarding") or {}).get("name") == pod
    ]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("driver", ["cgroupfs", "systemd"])
def test_forecast_evicts_the_leaking_pod_and_names_it(
    tmp_path: Path, kube_api: KubeAPI, driver: str
) -> None:
    ns = f"team-{uuid.uuid4().hex[:6]}"
    leaky_id, steady_id = cid(), cid()
    leaky = kube_api.add_pod(
        kube_api.pod(
            "scheduler-7d9f8-abcde",
            namespace=ns,
            container_id=leaky_id,
            owner=("ReplicaSet", "scheduler-7d9f8"),
            labels={"app": "scheduler", "pod-template-hash": "7d9f8"},
        )
    )
    steady = kube_api.add_pod(
        kube_api.pod(
            "web-5d8f7-xyz12",
            namespace=ns,
            container_id=steady_id,
            owner=("ReplicaSet", "web-5d8f7"),
            labels={"app": "web", "pod-template-hash": "5d8f7"},
        )
    )
    rules = f"""\
  - name: evict-leakers
    match: {{runtime: kubernetes, namespace: "{ns}"}}
    when: {{projected_oom_within: 40s}}
    do:
      - evict: {{grace_period: 5s}}
      - notify: ops-log
"""
    with (
        kubelet_cgroup(driver, leaky["metadata"]["uid"], leaky_id, limit_bytes=160 * MIB) as a,
        kubelet_cgroup(driver, steady["metadata"]["uid"], steady_id, limit_bytes=160 * MIB) as b,
    ):
        cgroups.allocate(b, 24)  # steady: holds its memory
        cgroups.allocate(a, 8, grow_mib=1, every=0.4)  # leaks 2.5 MiB/s towards 160 MiB
        with start(kube_api, rules, tmp_path) as s:
            s.wait_ready()
            (eviction,) = s.wait_for(
                kube_api.eviction_requests, "sentinel to evict the leaking pod", 120
            )
            assert eviction["metadata"]["name"] == leaky["metadata"]["name"]
            assert eviction["metadata"]["namespace"] == ns
            assert eviction["deleteOptions"]["gracePeriodSeconds"] == 5
            assert not cgroups_killed(a), "the kernel killed the leaker first"
            (done,) = s.wait_for(
                lambda: s.logs("action", action="evict", outcome="done"), "the eviction", 30
            )
            t = done["target"]
            assert t["runtime"] == "kubernetes"
            assert t["node"] == NODE
            assert t["namespace"] == ns
            assert t["pod"] == leaky["metadata"]["name"]
            assert t["container"] == "app"
            assert (t["owner_kind"], t["owner_name"]) == ("Deployment", "scheduler")
            assert t["cgroup"] == a.path
            # OOMPredicted then PreemptiveRestart, on the pod, as the API stores them
            (predicted,) = s.wait_for(
                lambda: events_on(kube_api, leaky["metadata"]["name"], "OOMPredicted"),
                "the OOMPredicted Event",
                30,
            )
            assert predicted["type"] == "Warning"
            assert predicted["regarding"]["uid"] == leaky["metadata"]["uid"]
            assert predicted["reportingController"] == "sentinel"
            (restarted,) = s.wait_for(
                lambda: events_on(kube_api, leaky["metadata"]["name"], "PreemptiveRestart"),
                "the PreemptiveRestart Event",
                30,
            )
            assert restarted["type"] == "Normal"
            assert "evicted the pod" in restarted["note"]
            note = s.wait_for(
                lambda: s.notifications(kind="action", rule="evict-leakers"),
                "the rule's notification",
                30,
            )[0]
            assert note["target"]["pod"] == leaky["metadata"]["name"]
            # the steady pod was watched, named, and left alone
            assert [
                e
                for e in kube_api.eviction_requests()
                if e["metadata"]["name"] == steady["metadata"]["name"]
            ] == []


def cgroups_killed(cg: cgroups.Cgroup) -> bool:
    events = cg.dir / "memory.oom_control"
    if events.exists():
        for line in events.read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1]) > 0
    return False


@pytest.mark.timeout(180)
def test_a_kernel_kill_in_a_pod_is_one_oomkilled_event_on_that_pod(
    tmp_path: Path, kube_api: KubeAPI
) -> None:
    ns = f"team-{uuid.uuid4().hex[:6]}"
    ids = [cid(), cid()]
    pods = [
        kube_api.add_pod(
            kube_api.pod(
                f"worker-{i}", namespace=ns, container_id=ids[i], owner=("StatefulSet", "worker")
            )
        )
        for i in range(2)
    ]
    with start(kube_api, "  []\n", tmp_path) as s:
        s.wait_ready()
        s.wait_for(lambda: s.logs("listening"), "sentinel to listen", 30)
        for i, drv in enumerate(("cgroupfs", "systemd")):
            uid = pods[i]["metadata"]["uid"]
            with kubelet_cgroup(drv, uid, ids[i], limit_bytes=48 * MIB) as cg:
                proc = cgroups.allocate(cg, 8, grow_mib=4, every=0.02)
                assert proc.wait(timeout=60) == -9
            name = pods[i]["metadata"]["name"]
            (ev,) = s.wait_for(
                lambda name=name: events_on(kube_api, name, "OOMKilled"), "the OOMKilled Event", 60
            )
            assert ev["type"] == "Warning"
            assert ev["regarding"]["namespace"] == ns
            assert ev["regarding"]["uid"] == uid
            assert "python" in ev["note"]
            assert "its memory limit ran out" in ev["note"]
        # The first kill's Event is still one (no repeat came with the second kill).
        (first,) = events_on(kube_api, pods[0]["metadata"]["name"], "OOMKilled")
        assert (first.get("series") or {}).get("count", 1) == 1
        kills = [k for k in s.logs("kill") if k["target"].get("namespace") == ns]
        assert sorted(k["target"]["pod"] for k in kills) == ["worker-0", "worker-1"]
        assert {k["target"]["owner_kind"] for k in kills} == {"StatefulSet"}


@pytest.mark.timeout(180)
def test_restart_in_place_stops_the_containers_main_process_through_host_pid(
    tmp_path: Path, kube_api: KubeAPI
) -> None:
    ns = f"team-{uuid.uuid4().hex[:6]}"
    container_id = cid()
    pod = kube_api.add_pod(
        kube_api.pod(
            "batch-0", namespace=ns, container_id=container_id, owner=("StatefulSet", "batch")
        )
    )
    rules = f"""\
  - name: restart-big
    match: {{runtime: kubernetes, namespace: "{ns}", owner: "StatefulSet/*"}}
    when: {{memory_above: {{bytes: 16Mi, for: 2s}}}}
    do:
      - restart: {{grace_period: 3s}}
"""
    with kubelet_cgroup(
        "systemd", pod["metadata"]["uid"], container_id, limit_bytes=128 * MIB
    ) as cg:
        app = cgroups.allocate(cg, 32)  # above the threshold, steady
        with start(kube_api, rules, tmp_path) as s:
            s.wait_ready()
            # kubelet would start it again; here the test sees it end by SIGTERM
            assert s.wait_for(app.poll, "the container's process to stop", 60) == -15
            (done,) = s.wait_for(
                lambda: s.logs("action", action="restart", outcome="done"), "the restart", 30
            )
            assert done["detail"]["via"] == "signal"
            assert done["detail"]["pid"] == app.pid
            assert done["target"]["pod"] == "batch-0"
            assert kube_api.eviction_requests() == []
            (ev,) = s.wait_for(
                lambda: events_on(kube_api, "batch-0", "PreemptiveRestart"), "the Event", 30
            )
            assert "restarted container app" in ev["note"]
