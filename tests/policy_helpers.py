"""Builders for policy tests: targets, states, forecasts, kill events; time is a number."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sentinel.forecast.types import Forecast
from sentinel.model import KillRecord, Target
from sentinel.policy import (
    Decision,
    History,
    KillEvent,
    MemoryPoint,
    Policy,
    State,
    TargetState,
    evaluate,
    load_policy,
)

NOW = 1_700_000_000.0
MiB = 1024**2


def policy(text: str) -> Policy:
    return load_policy(text, "test.yaml")


def target(
    name: str = "scheduler-1",
    *,
    id: str | None = None,
    image: str | None = "acme/scheduler:1.4",
    labels: Mapping[str, str] | None = None,
    runtime: str = "docker",
    started_at: float | None = NOW - 86400,
    is_self: bool = False,
) -> Target:
    return Target(
        id=id or f"id-{name}",
        name=name,
        runtime=runtime,
        image=image,
        labels={"team": "data"} if labels is None else labels,
        started_at=started_at,
        is_self=is_self,
    )


def forecast(eta: float | None, *, t: float = NOW, constraint: str = "cgroup") -> Forecast:
    return Forecast(
        t=t,
        usage_bytes=180 * MiB,
        limit_bytes=192 * MiB,
        constraint=constraint,
        eta_seconds=eta,
        eta_low=eta,
        eta_high=eta,
        rate_bytes_per_s=0.0 if not eta else 12 * MiB / eta,
        peak_bytes=180 * MiB,
        window_s=1200.0,
    )


def leaking(t: Target, eta: float | None, *, at: float = NOW) -> TargetState:
    return TargetState(target=t, forecast=forecast(eta, t=at))


def memory(
    t: Target, usages: Sequence[tuple[float, int]], limit: int | None = 1000 * MiB
) -> TargetState:
    return TargetState(
        target=t, memory=tuple(MemoryPoint(at, usage, limit) for at, usage in usages)
    )


def kill(t: Target, *, at: float = NOW - 1, scope: str | None = "cgroup") -> KillEvent:
    record = KillRecord(pid=4242, comm="java", global_=scope == "host" if scope else None)
    return KillEvent(target=t, t=at, scope=scope, record=record)


def state(*targets: TargetState, history: History | None = None) -> State:
    return State(targets=tuple(targets), history=history or History())


def kinds(decisions: Iterable[Decision]) -> list[tuple[str, str, str]]:
    return [(d.rule, d.target.name, d.kind) for d in decisions]


def run(
    p: Policy,
    targets: Sequence[TargetState],
    events: Sequence[KillEvent] = (),
    *,
    now: float = NOW,
    history: History | None = None,
) -> list[Decision]:
    return evaluate(p, state(*targets, history=history), events, now)
