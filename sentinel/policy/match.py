"""Which targets a rule's ``match`` selects: globs on name and image, labels, runtime; for
Kubernetes the namespace glob, the pod's labels and its owner (``Kind/name``)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from sentinel.model import Target
from sentinel.policy.model import Match, Selector

_DOCKER_HUB_PREFIXES = (
    "docker.io/library/",
    "index.docker.io/library/",
    "docker.io/",
    "index.docker.io/",
)


def image_forms(image: str) -> tuple[str, ...]:
    """The ways people write the same image: as given, without a Docker Hub prefix, and
    with an implicit ``:latest`` (``docker.io/library/redis`` -> ``redis``, ``redis:latest``)."""
    forms = [image]
    for prefix in _DOCKER_HUB_PREFIXES:
        if image.startswith(prefix):
            forms.append(image[len(prefix) :])
            break
    last = forms[-1].rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        forms.extend(f + ":latest" for f in list(forms))
    return tuple(dict.fromkeys(forms))


def selects(selector: Selector, target: Target) -> bool:
    """Every key the selector gives matches the target (an empty selector matches all)."""
    if selector.runtime is not None and target.runtime != selector.runtime:
        return False
    if selector.name is not None and not fnmatchcase(target.name.lstrip("/"), selector.name):
        return False
    if selector.image is not None and (
        target.image is None
        or not any(fnmatchcase(form, selector.image) for form in image_forms(target.image))
    ):
        return False
    if selector.namespace is not None and (
        target.namespace is None or not fnmatchcase(target.namespace, selector.namespace)
    ):
        return False
    if selector.owner is not None and (
        target.owner_kind is None
        or not fnmatchcase(f"{target.owner_kind}/{target.owner_name or ''}", selector.owner)
    ):
        return False
    if selector.pod_labels and (
        target.pod is None
        or not all(target.labels.get(k) == v for k, v in selector.pod_labels.items())
    ):
        return False
    return all(target.labels.get(key) == value for key, value in selector.labels.items())


def matches(match: Match, target: Target) -> bool:
    """The rule selects the target: never sentinel itself, never an excluded target."""
    if target.is_self:
        return False
    return selects(match, target) and not any(selects(ex, target) for ex in match.exclude)
