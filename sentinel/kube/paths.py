"""Which pod and container a kubelet cgroup path belongs to, in every form kubelet makes.

The kernel names a victim's memory cgroup (``task_memcg=``, ``oom_memcg=``) and
``/proc/<pid>/cgroup`` names a process's; on a Kubernetes node both are paths kubelet and
the container runtime built. :func:`parse_cgroup` reads one back to the pod uid, the
container id (``None`` for the pod's own cgroup), the QoS class and the cgroup driver.

How kubelet names a pod cgroup (``pkg/kubelet/cm``: ``cgroup_manager_linux.go``,
``pod_container_manager_linux.go``, ``qos_container_manager_linux.go``): the abstract name
is the list ``[<cgroupRoot parts>, "kubepods", <"burstable"|"besteffort", absent for
Guaranteed>, "pod" + <uid>]``. kubelet refuses ``_`` inside a part so the systemd mapping
can be undone.

* ``cgroupDriver: cgroupfs`` joins the parts with ``/`` (``CgroupName.ToCgroupfs``)::

      /kubepods/pod<uid>                       Guaranteed
      /kubepods/burstable/pod<uid>
      /kubepods/besteffort/pod<uid>

* ``cgroupDriver: systemd`` (``CgroupName.ToSystemd``) escapes ``-`` to ``_`` in each part,
  joins the parts with ``-``, adds ``.slice`` and expands the slice the way systemd does
  (``libcontainer/cgroups/systemd.ExpandSlice``)::

      /kubepods.slice/kubepods-pod<uid_>.slice
      /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice

* a ``cgroupRoot`` is one more leading part. kind runs its kubelet with
  ``cgroupRoot: /kubelet``, so a kind node holds
  ``/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/
  kubelet-kubepods-burstable-pod<uid_>.slice`` (systemd) or
  ``/kubelet/kubepods/burstable/pod<uid>`` (cgroupfs); and the kind node is itself a
  Docker container, so seen from the host everything sits under ``/docker/<id>/`` or
  ``/system.slice/docker-<id>.scope/`` (issue #11 item 3 names the kind form).

The container's cgroup inside the pod's is the runtime's choice:

* containerd (CRI plugin): systemd ``cri-containerd-<id>.scope`` (the OCI
  ``cgroupsPath`` is ``<pod slice>:cri-containerd:<id>``), cgroupfs a bare ``<id>``;
  Falco's ``libsinsp`` (``cri.cpp``, ``CRI_CGROUP_LAYOUT``) matches the same forms and
  also ``:cri-containerd:<id>``, which it attributes to containerd without
  ``SystemdCgroup = true``: the systemd ``cgroupsPath`` taken literally as one component,
  ``<pod slice>:cri-containerd:<id>``; a bare ``<id>`` under the pod's slice is the other
  result of that mismatch;
* CRI-O: systemd ``crio-<id>.scope``, cgroupfs ``crio-<id>`` (cri-o/cri-o#811 and #812:
  "Prefix is crio- for containers and crio-conmon- for monitor process scopes"). With
  ``conmon_cgroup = "pod"`` the monitor lives beside the container in
  ``crio-conmon-<id>.scope`` / ``crio-conmon-<id>`` (cri-o/cri-o#2248, #838;
  opencontainers/runc#4620 shows one): it is *not* the container, and is returned with
  ``container_id=None`` and ``conmon_of=<id>``;
* Docker through dockershim or cri-dockerd: systemd ``docker-<id>.scope``, cgroupfs a bare
  ``<id>``;
* crun on cgroup v2 adds a ``container`` sub-cgroup under the scope (its
  ``run.oci.systemd.subgroup`` default, containers/crun#305, opencontainers/runc#2448):
  whatever lies below the container's own cgroup is still that container.

Every id is 64 lowercase hex digits. The pod sandbox (``pause``) has a container cgroup of
its own whose id appears in no container status: the pod still resolves, the id does not.

Pod uids are dashed UUIDs from the API server, except static pods: kubelet sets their uid
to the md5 of the manifest (32 hex digits, ``pkg/kubelet/config/common.go``
``applyDefaults``), which is also the mirror pod's ``kubernetes.io/config.mirror``
annotation. Uids come back in the API's form: the systemd ``_`` turned back into ``-``.

cgroup v1 and v2 name the same tree: the kernel prints the path inside the memory
hierarchy either way, ``/sys/fs/cgroup/memory/<path>`` (v1) and ``/sys/fs/cgroup/<path>``
(v2) are the same path under a prefix, and a ``/proc/<pid>/cgroup`` line
(``9:memory:/kubepods/...`` on v1, ``0::/kubepods.slice/...`` on v2) is accepted whole.
node-problem-detector's kernel monitor matches the same kernel lines but names only the
node; this is the step that names the pod.

Nested trees (a kind node inside a Kubernetes pod) hold several pod cgroups on one path:
:func:`parse_cgroups` returns each, outermost first, and :func:`parse_cgroup` the
innermost, the pod whose container the process runs in.

Pure: strings in, values out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

QosClass = Literal["guaranteed", "burstable", "besteffort"]
CgroupDriver = Literal["cgroupfs", "systemd"]
Runtime = Literal["containerd", "cri-o", "docker"]

_HEX64 = r"[0-9a-f]{64}"
_QOS_PARTS: dict[str, QosClass] = {"burstable": "burstable", "besteffort": "besteffort"}
_PROC_LINE = re.compile(r"[0-9]+:[^:/]*:(?=/)")
"""``hierarchy-id:controllers:`` before the path in a ``/proc/<pid>/cgroup`` line."""
_CGROUPFS_POD = re.compile(r"pod(?P<uid>[0-9A-Za-z][0-9A-Za-z-]{0,127})")
_SYSTEMD_POD = re.compile(
    r"(?:(?P<root>.+)-)?kubepods(?:-(?P<qos>burstable|besteffort))?"
    r"-pod(?P<uid>[0-9A-Za-z][0-9A-Za-z_]{0,127})\.slice"
)
_SCOPE = re.compile(rf"(?P<prefix>cri-containerd|crio|docker)-(?P<id>{_HEX64})\.scope")
_CRIO_CGROUPFS = re.compile(rf"crio-(?P<id>{_HEX64})")
_CONMON = re.compile(rf"crio-conmon-(?P<id>{_HEX64})(?:\.scope)?")
_BARE = re.compile(_HEX64)
_LITERAL_SYSTEMD = re.compile(
    rf"(?P<slice>[^:]+\.slice):(?P<prefix>cri-containerd|crio|docker):(?P<id>{_HEX64})"
)
"""``<pod slice>:<prefix>:<id>``: a systemd ``cgroupsPath`` a cgroupfs runc took literally."""
_RUNTIME_OF_PREFIX: dict[str, Runtime] = {
    "cri-containerd": "containerd",
    "crio": "cri-o",
    "docker": "docker",
}


@dataclass(frozen=True, slots=True)
class KubeCgroup:
    """A kubelet cgroup read back: whose pod, which container, which QoS and driver.

    ``container_id`` is ``None`` for the pod's own cgroup (a pod-level limit such as the
    kernel's ``oom_memcg``) and for anything else directly in the pod that is not a
    container (CRI-O's conmon, whose container is then ``conmon_of``). ``runtime`` is known
    where the name says it (``cri-containerd-``, ``crio-``, ``docker-``); a bare cgroupfs
    id may be containerd's or Docker's. ``pod_path`` is the path up to and including the
    pod's cgroup, as given (so it keeps any ``/sys/fs/cgroup`` prefix), for reading the
    pod's own limit.
    """

    pod_uid: str
    qos: QosClass
    driver: CgroupDriver
    pod_path: str
    container_id: str | None = None
    runtime: Runtime | None = None
    conmon_of: str | None = None

    @property
    def is_container(self) -> bool:
        """True when the path is (inside) a container's cgroup, not the pod's or conmon's."""
        return self.container_id is not None


def _strip(path: str) -> str:
    path = path.strip()
    m = _PROC_LINE.match(path)
    return path[m.end() :] if m else path


def _pod_at(parts: list[str], i: int) -> tuple[str, QosClass, CgroupDriver] | None:
    """(uid, qos, driver) when ``parts[i]`` is a kubelet pod cgroup, judged by its parents."""
    part = parts[i]
    if m := _SYSTEMD_POD.fullmatch(part):
        qos: QosClass = _QOS_PARTS.get(m["qos"] or "", "guaranteed")
        return m["uid"].replace("_", "-"), qos, "systemd"
    m = _CGROUPFS_POD.fullmatch(part)
    if m is None or i == 0:
        return None
    parent = parts[i - 1]
    if parent == "kubepods":
        return m["uid"], "guaranteed", "cgroupfs"
    if parent in _QOS_PARTS and i >= 2 and parts[i - 2] == "kubepods":
        return m["uid"], _QOS_PARTS[parent], "cgroupfs"
    return None


def _container(part: str) -> tuple[str | None, Runtime | None, str | None]:
    """(container id, runtime, conmon's container) for the component below a pod cgroup."""
    if m := _CONMON.fullmatch(part):
        return None, "cri-o", m["id"]
    if m := _SCOPE.fullmatch(part):
        return m["id"], _RUNTIME_OF_PREFIX[m["prefix"]], None
    if m := _CRIO_CGROUPFS.fullmatch(part):
        return m["id"], "cri-o", None
    if _BARE.fullmatch(part):
        return part, None, None
    return None, None, None


def parse_cgroups(path: str | None) -> tuple[KubeCgroup, ...]:
    """Every kubelet pod on ``path``, outermost first; ``()`` for a path outside Kubernetes.

    More than one only on nested nodes (kind inside a pod): each pod's container is the
    component right below that pod's cgroup.
    """
    if not path:
        return ()
    path = _strip(path)
    lead = "/" if path.startswith("/") else ""
    parts = [p for p in path.split("/") if p]
    found: list[KubeCgroup] = []
    for i, part in enumerate(parts):
        cid: str | None
        runtime: Runtime | None
        conmon: str | None
        if literal := _LITERAL_SYSTEMD.fullmatch(part):
            pod = _pod_at([*parts[:i], literal["slice"]], i)
            if pod is None:
                continue
            uid, qos, driver = pod
            pod_path = lead + "/".join([*parts[:i], literal["slice"]])
            cid, runtime, conmon = literal["id"], _RUNTIME_OF_PREFIX[literal["prefix"]], None
        else:
            pod = _pod_at(parts, i)
            if pod is None:
                continue
            uid, qos, driver = pod
            pod_path = lead + "/".join(parts[: i + 1])
            child = parts[i + 1] if i + 1 < len(parts) else ""
            cid, runtime, conmon = _container(child)
        found.append(
            KubeCgroup(
                pod_uid=uid,
                qos=qos,
                driver=driver,
                pod_path=pod_path,
                container_id=cid,
                runtime=runtime,
                conmon_of=conmon,
            )
        )
    return tuple(found)


def parse_cgroup(path: str | None) -> KubeCgroup | None:
    """The innermost kubelet pod (and container) on a cgroup path, or ``None``.

    Takes a bare path (``/kubepods/burstable/pod<uid>/<id>``), one under a mount
    (``/sys/fs/cgroup/memory/...``) or any other prefix, or a whole ``/proc/<pid>/cgroup``
    line. ``None`` for paths kubelet did not make (``/docker/<id>``, ``/system.slice/...``).
    """
    found = parse_cgroups(path)
    return found[-1] if found else None
