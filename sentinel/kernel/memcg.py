"""Who lived in a memory cgroup: container runtime, container id, pod, QoS, systemd unit.

The kernel names the victim's cgroup (``task_memcg``); the cgroup path says which
runtime made it. Paths seen in the wild, innermost first wins for nested hierarchies
(kind nodes, LXC running Docker):

* Docker, cgroupfs driver: ``/docker/<64hex>``; systemd driver:
  ``/system.slice/docker-<64hex>.scope``
* containerd / CRI: ``cri-containerd-<64hex>.scope``; CRI-O: ``crio-<64hex>.scope``
  (``crio-conmon-<id>.scope`` is the monitor, not the container)
* Podman: ``libpod-<64hex>.scope``, ``/libpod_parent/libpod-<64hex>``
* Kubernetes: ``/kubepods[/burstable|/besteffort]/pod<uid>/<64hex>`` and
  ``kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_with_underscores>.slice/...``
* LXC: ``/lxc/<name>``, ``/lxc.payload.<name>``, ``/lxc.monitor.<name>``
* systemd: the innermost ``*.service`` or ``*.scope`` unit

Pure: strings in, values out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEX64 = r"[0-9a-f]{64}"
_SCOPED = re.compile(rf"(?P<kind>docker|cri-containerd|crio|libpod)-(?P<id>{_HEX64})(?:\.scope)?")
_BARE = re.compile(_HEX64)
_POD = re.compile(
    r"(?:kubepods(?:-(?:burstable|besteffort))?-)?pod"
    r"(?P<uid>[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
    r"(?:\.slice)?"
)
_RUNTIME_OF_PREFIX = {
    "docker": "docker",
    "cri-containerd": "containerd",
    "crio": "cri-o",
    "libpod": "podman",
}


@dataclass(frozen=True, slots=True)
class MemcgIdentity:
    """What a memcg path says about the workload inside it; ``None`` where it says nothing."""

    runtime: str | None = None
    container_id: str | None = None
    pod_uid: str | None = None
    qos_class: str | None = None
    systemd_unit: str | None = None


def identify(path: str | None) -> MemcgIdentity:
    """Read the container, pod and unit identity from a cgroup path (v1 or v2).

    Components are read outside in; an inner container overrides an outer one, so a
    nested hierarchy names its innermost workload. A systemd unit names the runtime only
    where no container encloses it.
    """
    if not path:
        return MemcgIdentity()
    parts = [p for p in path.split("/") if p]
    runtime: str | None = None
    container_id: str | None = None
    pod_uid: str | None = None
    qos: str | None = None
    unit: str | None = None
    kube = False
    for i, part in enumerate(parts):
        pod = _POD.fullmatch(part)
        if part.startswith("kubepods"):
            kube = True
            if "burstable" in part:
                qos = "burstable"
            elif "besteffort" in part:
                qos = "besteffort"
            elif qos is None:
                qos = "guaranteed"
            if pod:
                pod_uid = pod["uid"].replace("_", "-")
        elif kube and part in ("burstable", "besteffort"):
            qos = part
        elif pod and kube:
            pod_uid = pod["uid"].replace("_", "-")
        elif m := _SCOPED.fullmatch(part):
            container_id = m["id"]
            runtime = _RUNTIME_OF_PREFIX[m["kind"]]
            unit = part if part.endswith(".scope") else unit
        elif _BARE.fullmatch(part):
            container_id = part
            parent = parts[i - 1] if i else ""
            if parent == "docker":
                runtime = "docker"
            elif parent == "libpod_parent":
                runtime = "podman"
            elif kube:
                runtime = "kubernetes"
        elif part == "lxc" or part.startswith(("lxc.payload.", "lxc.monitor.")):
            runtime = "lxc"
        elif part.endswith((".service", ".scope")):
            unit = part
            if runtime is None and not kube:
                runtime = "systemd"
    if kube and runtime in (None, "systemd"):
        runtime = "kubernetes"
    return MemcgIdentity(
        runtime=runtime,
        container_id=container_id,
        pod_uid=pod_uid,
        qos_class=qos if kube else None,
        systemd_unit=unit,
    )
