"""Kubernetes, the pure half: kubelet cgroup paths, pods by container id, quantities.

No I/O and no ``kubernetes`` client here: pods arrive as the API's JSON dicts from the
adapter in ``sentinel.clients``; cgroup paths as strings from the kernel or ``/proc``.

The names below are imported on first use: ``sentinel parse`` needs only
:mod:`sentinel.kube.paths`, and its start-up counts (it reads logs at grep's pace).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentinel.kube.paths import KubeCgroup, parse_cgroup, parse_cgroups
    from sentinel.kube.pods import PodIndex, PodRef, owner_of, pods_on_node
    from sentinel.kube.quantity import QuantityError, parse_bytes, parse_quantity

_HOMES = {
    "KubeCgroup": "paths",
    "parse_cgroup": "paths",
    "parse_cgroups": "paths",
    "PodIndex": "pods",
    "PodRef": "pods",
    "owner_of": "pods",
    "pods_on_node": "pods",
    "QuantityError": "quantity",
    "parse_bytes": "quantity",
    "parse_quantity": "quantity",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sentinel.kube.{home}"), name)
    globals()[name] = value
    return value
