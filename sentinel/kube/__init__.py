"""Kubernetes, the pure half: kubelet cgroup paths, pods by container id, quantities.

No I/O and no ``kubernetes`` client here: pods arrive as the API's JSON dicts from the
adapter in ``sentinel.clients``; cgroup paths as strings from the kernel or ``/proc``.
"""

from sentinel.kube.paths import KubeCgroup, parse_cgroup, parse_cgroups
from sentinel.kube.pods import PodIndex, PodRef, owner_of, pods_on_node
from sentinel.kube.quantity import QuantityError, parse_bytes, parse_quantity

__all__ = [
    "KubeCgroup",
    "PodIndex",
    "PodRef",
    "QuantityError",
    "owner_of",
    "parse_bytes",
    "parse_cgroup",
    "parse_cgroups",
    "parse_quantity",
    "pods_on_node",
]
