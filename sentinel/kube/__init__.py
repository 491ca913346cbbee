"""Kubernetes, the pure half: kubelet cgroup paths (:mod:`sentinel.kube.paths`), pods by
container id (:mod:`sentinel.kube.pods`), quantities (:mod:`sentinel.kube.quantity`).

No I/O and no ``kubernetes`` client here: pods arrive as the API's JSON dicts from the
adapter in ``sentinel.clients``; cgroup paths as strings from the kernel or ``/proc``.

Nothing is imported here: ``sentinel parse`` needs only :mod:`sentinel.kube.paths`, and its
start-up counts (it reads logs at grep's pace).
"""
