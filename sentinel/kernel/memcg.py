"""Who lived in a memory cgroup: container runtime, container id, pod, QoS, systemd unit.

The kernel names the victim's cgroup (``task_memcg``); the cgroup path says which
runtime made it. Paths seen in the wild, innermost first wins for nested hierarchies
(kind nodes, LXC running Docker):

* Docker, cgroupfs driver: ``/docker/<64hex>``; systemd driver:
  ``/system.slice/docker-<64hex>.scope``
* containerd / CRI: ``cri-containerd-<64hex>.scope``; CRI-O: ``crio-<64hex>.scope``
  (``crio-conmon-<id>.scope`` is the monitor, not the container)
* Podman: ``libpod-<64hex>.scope``, ``/libpod_parent/libpod-<64hex>``
* Kubernetes: ``/kubepods[/burstable|/besteffort]/pod<uid>/<64hex>``,
  ``kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_with_underscores>.slice/...``
  and every other form kubelet makes (:mod:`sentinel.kube.paths`)
* LXC: ``/lxc/<name>``, ``/lxc.payload.<name>``, ``/lxc.monitor.<name>``
* systemd: the innermost ``*.service`` or ``*.scope`` unit

Pure: strings in, values out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sentinel.kube.paths import parse_cgroup

_HEX64 = r"[0-9a-f]{64}"
_SCOPED = re.compile(rf"(?P<kind>docker|cri-containerd|crio|libpod)-(?P<id>{_HEX64})(?:\.scope)?")
_BARE = re.compile(_HEX64)
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
    where no container encloses it. Pods are read by :func:`sentinel.kube.paths.parse_cgroup`,
    which knows every form kubelet makes (a ``cgroupRoot`` such as kind's
    ``kubelet-kubepods-burstable-pod<uid>.slice``, static pods' 32-hex uids).
    """
    if not path:
        return MemcgIdentity()
    parts = [p for p in path.split("/") if p]
    pod = parse_cgroup(path)
    kube = pod is not None
    runtime: str | None = None
    container_id: str | None = None
    unit: str | None = None
    for i, part in enumerate(parts):
        if m := _SCOPED.fullmatch(part):
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
        pod_uid=pod.pod_uid if pod is not None else None,
        qos_class=pod.qos if pod is not None else None,
        systemd_unit=unit,
    )
