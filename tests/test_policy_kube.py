"""Kubernetes in the policy: match on namespace, pod labels and owner; evict and delete_pod
(disruptive, need a `when`, counted by `max_restarts` together with restarts)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from policy_helpers import NOW, kinds, leaking, policy, run, target
from sentinel.errors import SentinelError
from sentinel.model import Target
from sentinel.policy import History
from sentinel.policy.model import DeletePodAction, EvictAction

MIN = 60.0


def pod(
    name: str,
    *,
    namespace: str = "prod",
    owner: tuple[str, str] | None = ("Deployment", "web"),
    labels: dict[str, str] | None = None,
) -> Target:
    t = target(name, labels=labels if labels is not None else {"app": "web"})
    return replace(
        t,
        runtime="kubernetes",
        node="node-1",
        namespace=namespace,
        pod=f"{name}-7d9f8-abcde",
        pod_uid="0f5c3b5e-6a8e-4a57-9d57-0c2a3f2b1c11",
        container=name,
        owner_kind=owner[0] if owner else None,
        owner_name=owner[1] if owner else None,
    )


EVICT = policy(
    """\
version: 1
rules:
  - name: evict-leaking-web
    match:
      runtime: kubernetes
      namespace: "prod*"
      owner: Deployment/web
      pod_labels: {app: web}
    when: {projected_oom_within: 15m}
    do:
      - evict: {grace_period: 20s}
    max_restarts: {count: 2, per: 14d}
"""
)


def test_match_selects_on_namespace_owner_and_pod_labels() -> None:
    selected = pod("web")
    others = [
        pod("web", namespace="staging"),  # namespace glob
        pod("web", owner=("StatefulSet", "web")),  # owner kind
        pod("web", owner=None),  # no owner
        pod("web", labels={"app": "api"}),  # pod label differs
        replace(target("web", labels={"app": "web"}), runtime="docker"),  # not a pod
    ]
    assert kinds(run(EVICT, [leaking(selected, 5 * MIN)])) == [
        ("evict-leaking-web", "web", "evict")
    ]
    for other in others:
        assert run(EVICT, [leaking(other, 5 * MIN)]) == [], other


def test_evict_takes_its_grace_period_and_is_disruptive() -> None:
    (d,) = run(EVICT, [leaking(pod("web"), 5 * MIN)])
    assert isinstance(d.action, EvictAction)
    assert d.action.evict.grace_period == 20
    assert d.disruptive
    assert d.params() == {"grace_period": "20s"}


def test_evictions_use_the_restart_budget_then_escalate_once() -> None:
    web = pod("web")
    history = History()
    now = NOW
    fired: list[str] = []
    for _ in range(4):
        decisions = run(EVICT, [leaking(web, 5 * MIN, at=now)], now=now, history=history)
        fired += [d.kind for d in decisions]
        history = history.with_decisions(decisions)
        now += 10 * MIN  # past the cooldown
    assert fired == ["evict", "evict", "escalate"]


@pytest.mark.parametrize("action", ["evict: {}", "delete_pod: {grace_period: 0s}", "evict:"])
def test_evict_and_delete_pod_parse(action: str) -> None:
    p = policy(
        f"""\
version: 1
rules:
  - name: r
    match: {{runtime: kubernetes}}
    when: {{projected_oom_within: 5m}}
    do:
      - {action}
"""
    )
    (a,) = p.rules[0].do
    assert isinstance(a, EvictAction | DeletePodAction)


def test_evict_without_when_is_refused() -> None:
    with pytest.raises(SentinelError) as e:
        policy(
            """\
version: 1
rules:
  - name: r
    do:
      - evict: {}
"""
        )
    assert "expected a `when` for `evict`" in str(getattr(e.value, "problems", e.value))
