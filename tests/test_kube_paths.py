"""Every cgroup path kubelet and the runtimes make reads back to its pod and container."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel.kube.paths import (
    CgroupDriver,
    KubeCgroup,
    QosClass,
    Runtime,
    parse_cgroup,
    parse_cgroups,
)

DATA = Path(__file__).parent / "data"
UID = "1788d98a-0700-426a-8701-2312e4cc2163"
UID_ = UID.replace("-", "_")
STATIC_UID = "8f3cbf1d9e2a4b7c6d5e4f3a2b1c0d9e"  # md5 of a static pod's manifest
CID = "6141f63fdc9f5bca4ad9c5a98e50a8ad7588948f281668a09bb4f1309af7b059"
NODE = "428406e4f18a1cb65e9691d40b63f3d92c95c1b0d15b5c427bed470b6832cd6e"  # a kind node


def kc(
    qos: QosClass,
    driver: CgroupDriver,
    pod_path: str,
    cid: str | None = None,
    runtime: Runtime | None = None,
) -> KubeCgroup:
    return KubeCgroup(
        pod_uid=UID, qos=qos, driver=driver, pod_path=pod_path, container_id=cid, runtime=runtime
    )


CGROUPFS_BURSTABLE = f"/kubepods/burstable/pod{UID}"
SYSTEMD_BURSTABLE = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"
KIND_SYSTEMD = (
    "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
    f"kubelet-kubepods-burstable-pod{UID_}.slice"
)

FORMS = [
    # cgroupfs driver: containerd and Docker name the container by its bare id
    pytest.param(
        f"/kubepods/pod{UID}/{CID}",
        kc("guaranteed", "cgroupfs", f"/kubepods/pod{UID}", CID),
        id="cgroupfs-guaranteed",
    ),
    pytest.param(
        f"{CGROUPFS_BURSTABLE}/{CID}",
        kc("burstable", "cgroupfs", CGROUPFS_BURSTABLE, CID),
        id="cgroupfs-burstable",
    ),
    pytest.param(
        f"/kubepods/besteffort/pod{UID}/{CID}",
        kc("besteffort", "cgroupfs", f"/kubepods/besteffort/pod{UID}", CID),
        id="cgroupfs-besteffort",
    ),
    pytest.param(
        f"{CGROUPFS_BURSTABLE}/crio-{CID}",
        kc("burstable", "cgroupfs", CGROUPFS_BURSTABLE, CID, "cri-o"),
        id="cgroupfs-crio",
    ),
    pytest.param(
        CGROUPFS_BURSTABLE,
        kc("burstable", "cgroupfs", CGROUPFS_BURSTABLE),
        id="cgroupfs-pod-level",
    ),
    # systemd driver: the runtime's scope in the pod's slice
    pytest.param(
        f"{SYSTEMD_BURSTABLE}/cri-containerd-{CID}.scope",
        kc("burstable", "systemd", SYSTEMD_BURSTABLE, CID, "containerd"),
        id="systemd-containerd",
    ),
    pytest.param(
        f"{SYSTEMD_BURSTABLE}/crio-{CID}.scope",
        kc("burstable", "systemd", SYSTEMD_BURSTABLE, CID, "cri-o"),
        id="systemd-crio",
    ),
    pytest.param(
        f"{SYSTEMD_BURSTABLE}/docker-{CID}.scope",
        kc("burstable", "systemd", SYSTEMD_BURSTABLE, CID, "docker"),
        id="systemd-docker",
    ),
    pytest.param(
        f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope",
        kc(
            "guaranteed",
            "systemd",
            f"/kubepods.slice/kubepods-pod{UID_}.slice",
            CID,
            "containerd",
        ),
        id="systemd-guaranteed",
    ),
    pytest.param(
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice",
        kc(
            "besteffort",
            "systemd",
            f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice",
        ),
        id="systemd-pod-level",
    ),
    # crun on cgroup v2 runs the container in a `container` sub-cgroup of its scope
    pytest.param(
        f"{SYSTEMD_BURSTABLE}/crio-{CID}.scope/container",
        kc("burstable", "systemd", SYSTEMD_BURSTABLE, CID, "cri-o"),
        id="crun-subgroup",
    ),
    # containerd without SystemdCgroup under a systemd kubelet: the bare id in the slice
    pytest.param(
        f"{SYSTEMD_BURSTABLE}/{CID}",
        kc("burstable", "systemd", SYSTEMD_BURSTABLE, CID),
        id="systemd-slice-bare-id",
    ),
    # ... or runc taking the systemd cgroupsPath `<slice>:<prefix>:<id>` literally
    pytest.param(
        f"/kubepods-burstable-pod{UID_}.slice:cri-containerd:{CID}",
        kc("burstable", "systemd", f"/kubepods-burstable-pod{UID_}.slice", CID, "containerd"),
        id="systemd-cgroupspath-literal",
    ),
    # kind: cgroupRoot /kubelet, inside the node's Docker container
    pytest.param(
        f"{KIND_SYSTEMD}/cri-containerd-{CID}.scope",
        kc("burstable", "systemd", KIND_SYSTEMD, CID, "containerd"),
        id="kind-systemd",
    ),
    pytest.param(
        f"/system.slice/docker-{NODE}.scope{KIND_SYSTEMD}/cri-containerd-{CID}.scope",
        kc(
            "burstable",
            "systemd",
            f"/system.slice/docker-{NODE}.scope{KIND_SYSTEMD}",
            CID,
            "containerd",
        ),
        id="kind-systemd-seen-from-host",
    ),
    pytest.param(
        f"/kubelet/kubepods/burstable/pod{UID}/{CID}",
        kc("burstable", "cgroupfs", f"/kubelet/kubepods/burstable/pod{UID}", CID),
        id="kind-cgroupfs",
    ),
    pytest.param(
        f"/docker/{NODE}/kubelet/kubepods/pod{UID}/{CID}",
        kc("guaranteed", "cgroupfs", f"/docker/{NODE}/kubelet/kubepods/pod{UID}", CID),
        id="docker-in-docker",
    ),
    pytest.param(
        f"/docker/{NODE}/kubepods/besteffort/pod{UID}/{CID}",
        kc("besteffort", "cgroupfs", f"/docker/{NODE}/kubepods/besteffort/pod{UID}", CID),
        id="docker-in-docker-no-root",
    ),
    # cgroup v1 and v2: under a mount, and as /proc/<pid>/cgroup lines
    pytest.param(
        f"/sys/fs/cgroup/memory{CGROUPFS_BURSTABLE}/{CID}",
        kc("burstable", "cgroupfs", f"/sys/fs/cgroup/memory{CGROUPFS_BURSTABLE}", CID),
        id="v1-mount",
    ),
    pytest.param(
        f"/sys/fs/cgroup{SYSTEMD_BURSTABLE}/cri-containerd-{CID}.scope",
        kc("burstable", "systemd", f"/sys/fs/cgroup{SYSTEMD_BURSTABLE}", CID, "containerd"),
        id="v2-mount",
    ),
    pytest.param(
        f"9:memory:{CGROUPFS_BURSTABLE}/{CID}",
        kc("burstable", "cgroupfs", CGROUPFS_BURSTABLE, CID),
        id="v1-proc-line",
    ),
    pytest.param(
        f"1:name=systemd:{SYSTEMD_BURSTABLE}/docker-{CID}.scope\n",
        kc("burstable", "systemd", SYSTEMD_BURSTABLE, CID, "docker"),
        id="v1-proc-line-named-hierarchy",
    ),
    pytest.param(
        f"0::{SYSTEMD_BURSTABLE}/crio-{CID}.scope",
        kc("burstable", "systemd", SYSTEMD_BURSTABLE, CID, "cri-o"),
        id="v2-proc-line",
    ),
]


@pytest.mark.parametrize(("path", "want"), FORMS)
def test_every_kubelet_form_is_read(path: str, want: KubeCgroup) -> None:
    assert parse_cgroup(path) == want


def test_pod_uid_comes_back_dashed_from_the_systemd_spelling() -> None:
    got = parse_cgroup(f"{SYSTEMD_BURSTABLE}/crio-{CID}.scope")
    assert got is not None
    assert got.pod_uid == UID
    assert "_" not in got.pod_uid


@pytest.mark.parametrize(
    "path",
    [
        f"/kubepods/burstable/pod{STATIC_UID}/{CID}",
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC_UID}.slice/"
        f"cri-containerd-{CID}.scope",
    ],
    ids=["cgroupfs", "systemd"],
)
def test_static_pod_uid_is_the_manifest_hash(path: str) -> None:
    got = parse_cgroup(path)
    assert got is not None
    assert (got.pod_uid, got.container_id) == (STATIC_UID, CID)


@pytest.mark.parametrize(
    "path",
    [
        f"{SYSTEMD_BURSTABLE}/crio-conmon-{CID}.scope",
        f"{CGROUPFS_BURSTABLE}/crio-conmon-{CID}",
    ],
    ids=["systemd", "cgroupfs"],
)
def test_crio_conmon_is_the_pod_not_a_container(path: str) -> None:
    got = parse_cgroup(path)
    assert got is not None
    assert got.pod_uid == UID
    assert got.container_id is None
    assert not got.is_container
    assert got.conmon_of == CID


@pytest.mark.parametrize(
    "path",
    [
        None,
        "",
        "/",
        f"/docker/{CID}",
        f"/system.slice/docker-{CID}.scope",
        f"/system.slice/containerd.service/kubepods-burstable-pod{UID_}",  # no .slice
        "/system.slice/kubelet.service",
        "/user.slice/user-1000.slice/session-2.scope",
        f"/machine.slice/libpod-{CID}.scope",
        f"/lxc/pod{UID}",
        f"/pod{UID}/{CID}",  # a pod part without kubepods above it
        f"/kubepods/guaranteed/pod{UID}/{CID}",  # no such QoS cgroup
        f"/custom/burstable/pod{UID}/{CID}",  # a QoS name without kubepods above it
        "/kubepods",
        "/kubepods/burstable",
        "/kubepods.slice/kubepods-burstable.slice",
        "/kubepods.slice",
        f"9:memory:/docker/{CID}",
    ],
)
def test_paths_kubelet_did_not_make_are_none(path: str | None) -> None:
    assert parse_cgroup(path) is None
    assert parse_cgroups(path) == ()


def test_unknown_children_of_a_pod_are_pod_level() -> None:
    for child in ("cri-containerd-abc.scope", "crio-1234", "cabbede", CID[:63], CID.upper()):
        got = parse_cgroup(f"{CGROUPFS_BURSTABLE}/{child}")
        assert got == kc("burstable", "cgroupfs", CGROUPFS_BURSTABLE), child


def test_nested_pods_are_all_listed_innermost_last() -> None:
    inner_uid = "0b2f1c9e-6d3a-4f7b-8e5c-1a2b3c4d5e6f"
    outer = f"{SYSTEMD_BURSTABLE}/cri-containerd-{NODE}.scope"
    path = f"{outer}/kubelet/kubepods/besteffort/pod{inner_uid}/{CID}"
    found = parse_cgroups(path)
    assert [(f.pod_uid, f.container_id, f.driver) for f in found] == [
        (UID, NODE, "systemd"),
        (inner_uid, CID, "cgroupfs"),
    ]
    assert parse_cgroup(path) == found[-1]


def _expected_records() -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    for path in sorted((DATA / "oom-logs").glob("*.expected.json")):
        data = json.loads(path.read_text())
        items = data if isinstance(data, list) else data.get("records", [])
        records += [r for r in items if isinstance(r, dict) and r.get("pod_uid")]
    return records


def test_the_kernel_samples_name_the_same_pods() -> None:
    """Real kernel records (tests/data/oom-logs) with their ground truth."""
    records = _expected_records()
    assert len(records) >= 4
    for r in records:
        task = parse_cgroup(str(r["task_memcg"]))
        assert task is not None, r["task_memcg"]
        assert (task.pod_uid, task.container_id) == (r["pod_uid"], r.get("container_id"))
        if r.get("oom_memcg") and "pod" in str(r["oom_memcg"]).rsplit("/", 1)[-1]:
            pod = parse_cgroup(str(r["oom_memcg"]))
            assert pod is not None
            assert (pod.pod_uid, pod.container_id) == (r["pod_uid"], None)
            assert str(r["task_memcg"]).startswith(pod.pod_path)


# -- round trip: format as kubelet and the runtime would, parse back ----------------------


def kubelet_pod_cgroup(root: list[str], qos: str, uid: str, driver: str) -> str:
    """``CgroupName{root..., "kubepods", qos?, "pod"+uid}`` through ToCgroupfs / ToSystemd."""
    name = [*root, "kubepods", *([] if qos == "guaranteed" else [qos]), f"pod{uid}"]
    if driver == "cgroupfs":
        return "/" + "/".join(name)
    escaped = [part.replace("-", "_") for part in name]
    # systemd's ExpandSlice: a-b-c.slice -> /a.slice/a-b.slice/a-b-c.slice
    return "".join(f"/{'-'.join(escaped[: i + 1])}.slice" for i in range(len(escaped)))


def runtime_container_cgroup(runtime: str, driver: str, cid: str) -> str:
    if driver == "systemd":
        prefix = {"containerd": "cri-containerd", "cri-o": "crio", "docker": "docker"}[runtime]
        return f"{prefix}-{cid}.scope"
    return f"crio-{cid}" if runtime == "cri-o" else cid


HEX64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
UIDS = st.one_of(
    st.uuids().map(str),
    st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),  # static pods
)
PREFIXES = st.one_of(
    st.just(""),
    st.just("/sys/fs/cgroup"),
    st.just("/sys/fs/cgroup/memory"),
    HEX64.map(lambda h: f"/docker/{h}"),
    HEX64.map(lambda h: f"/system.slice/docker-{h}.scope"),
    st.just("/machine.slice/whatever.scope/nested"),
)
ROOTS = st.lists(st.sampled_from(["kubelet", "custom", "k8s"]), max_size=2)


@given(
    prefix=PREFIXES,
    root=ROOTS,
    qos=st.sampled_from(["guaranteed", "burstable", "besteffort"]),
    uid=UIDS,
    driver=st.sampled_from(["cgroupfs", "systemd"]),
    runtime=st.sampled_from(["containerd", "cri-o", "docker"]),
    cid=st.one_of(st.none(), HEX64),
    subgroup=st.sampled_from(["", "/container"]),
    proc_line=st.sampled_from(["", "0::", "4:memory:"]),
)
def test_round_trip(
    *,
    prefix: str,
    root: list[str],
    qos: str,
    uid: str,
    driver: str,
    runtime: str,
    cid: str | None,
    subgroup: str,
    proc_line: str,
) -> None:
    pod_path = prefix + kubelet_pod_cgroup(root, qos, uid, driver)
    path = pod_path
    if cid is not None:
        path += "/" + runtime_container_cgroup(runtime, driver, cid) + subgroup
    got = parse_cgroup(proc_line + path)
    assert got is not None, path
    assert (got.pod_uid, got.qos, got.driver, got.pod_path, got.container_id) == (
        uid,
        qos,
        driver,
        pod_path,
        cid,
    )
    named = driver == "systemd" or runtime == "cri-o"
    assert got.runtime == (runtime if cid is not None and named else None)
    assert got.is_container == (cid is not None)
