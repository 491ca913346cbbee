"""`when.confidence`: rules act on the confident ETA unless they ask for the observed one."""

from __future__ import annotations

import dataclasses

import pytest

from policy_helpers import NOW, forecast, policy, run, target
from sentinel.errors import SentinelError
from sentinel.policy import TargetState, still_holds

RULE = """
version: 1
rules:
  - name: early
    match: {{name: scheduler-*}}
    when: {{projected_oom_within: 15m{extra}}}
    do: [{{restart: {{}}}}]
"""


def young(confident: float | None, observed: float | None) -> TargetState:
    f = dataclasses.replace(forecast(confident), observed_eta_seconds=observed)
    return TargetState(target=target("scheduler-1"), forecast=f)


def test_default_is_the_confident_eta() -> None:
    p = policy(RULE.format(extra=""))
    assert p.rules[0].when is not None
    assert p.rules[0].when.confidence == "confident"
    assert run(p, [young(None, 300.0)]) == []
    (restart,) = run(p, [young(600.0, 300.0)])
    assert restart.evidence["projected_oom_in_s"] == 600
    assert restart.evidence["confidence"] == "confident"
    assert restart.evidence["eta_basis"] == "confident"
    assert restart.evidence["observed_eta_s"] == 300


def test_observed_acts_on_the_earlier_of_the_two() -> None:
    p = policy(RULE.format(extra=", confidence: observed"))
    (restart,) = run(p, [young(None, 300.0)])
    assert restart.evidence["projected_oom_in_s"] == 300
    assert restart.evidence["eta_basis"] == "observed"
    assert restart.evidence["confident_eta_s"] is None
    assert "trend" in restart.reason
    (again,) = run(p, [young(600.0, 2000.0)])  # the confident one is sooner: it counts
    assert again.evidence["projected_oom_in_s"] == 600
    assert again.evidence["eta_basis"] == "confident"
    assert run(p, [young(None, 1200.0)]) == []  # not within 15m
    assert run(p, [young(None, None)]) == []


def test_the_recheck_reads_the_same_eta() -> None:
    p = policy(RULE.format(extra=", confidence: observed"))
    (restart,) = run(p, [young(None, 300.0)])
    assert still_holds(restart, young(None, 280.0), NOW)
    assert not still_holds(restart, young(None, None), NOW)


def test_bad_confidence_is_refused_with_its_place() -> None:
    with pytest.raises(SentinelError) as e:
        policy(RULE.format(extra=", confidence: sure"))
    message = str(e.value)
    assert message.startswith("test.yaml:6:")
    assert "rules[0].when.confidence" in message
    assert "observed" in message


def test_confidence_alone_is_refused() -> None:
    text = RULE.replace("projected_oom_within: 15m{extra}", "confidence: observed, {extra}")
    with pytest.raises(SentinelError) as e:
        policy(text.format(extra="memory_above: {percent: 90, for: 1m}"))
    assert "projected_oom_within" in str(e.value)
