"""The pure Event correlator: dedupe, the per-object spam filter, names, limits (no I/O)."""

from __future__ import annotations

import pytest

from sentinel.kube.events import (
    BURST,
    NOTE_MAX_BYTES,
    REFILL_SECONDS,
    EventCorrelator,
    EventSpec,
    ObjectRef,
    truncate_utf8,
)

T0 = 1_714_557_600.0  # 2024-05-01T10:00:00Z
POD = ObjectRef(kind="Pod", name="web-5d8f7-abcde", namespace="shop", uid="uid-1")
OTHER = ObjectRef(kind="Pod", name="db-0", namespace="shop", uid="uid-2")


def spec(note: str = "killed python (pid 42), RSS 250 MiB", *, on: ObjectRef = POD) -> EventSpec:
    return EventSpec(
        regarding=on,
        reason="OOMKilled",
        note=note,
        type="Warning",
        action="Killed",
        reporting_instance="node-1",
    )


def test_the_same_event_again_updates_one_event_with_its_count() -> None:
    c = EventCorrelator()
    first = c.observe(spec(), T0)
    again = c.observe(spec(), T0 + 7)
    assert (first.outcome, first.count) == ("create", 1)
    assert (again.outcome, again.count) == ("update", 2)
    assert again.name == first.name
    assert (again.first_seen, again.last_seen) == (T0, T0 + 7)


def test_a_different_note_reason_or_object_is_a_new_event() -> None:
    c = EventCorrelator()
    names = {
        c.observe(spec(), T0).name,
        c.observe(spec("killed java (pid 7)"), T0).name,
        c.observe(spec(on=OTHER), T0).name,
        c.observe(EventSpec(regarding=POD, reason="OOMPredicted", note="x"), T0).name,
    }
    assert len(names) == 4


def test_names_follow_client_go_and_stay_unique_within_a_nanosecond() -> None:
    c = EventCorrelator()
    a = c.observe(spec("one"), T0).name
    b = c.observe(spec("two"), T0).name
    assert a == f"web-5d8f7-abcde.{int(T0 * 1e9):x}"
    assert b != a
    assert b.startswith("web-5d8f7-abcde.")


def test_the_26th_write_about_one_object_within_the_burst_is_dropped() -> None:
    c = EventCorrelator()
    outcomes = [c.observe(spec(f"kill {i}"), T0 + i).outcome for i in range(BURST + 1)]
    assert outcomes[:BURST] == ["create"] * BURST
    assert outcomes[BURST] == "drop"
    # Another object has its own bucket.
    assert c.observe(spec("kill 0", on=OTHER), T0 + 30).outcome == "create"


def test_one_token_comes_back_every_five_minutes() -> None:
    c = EventCorrelator()
    for i in range(BURST):
        assert c.observe(spec(f"kill {i}"), T0).outcome == "create"
    assert c.observe(spec("early"), T0 + REFILL_SECONDS - 1).outcome == "drop"
    assert c.observe(spec("on time"), T0 + REFILL_SECONDS).outcome == "create"
    assert c.observe(spec("right after"), T0 + REFILL_SECONDS + 1).outcome == "drop"


def test_updates_take_tokens_too_and_dropped_repeats_still_count() -> None:
    c = EventCorrelator()
    decisions = [c.observe(spec(), T0 + i) for i in range(BURST + 1)]
    assert [d.outcome for d in decisions] == ["create"] + ["update"] * (BURST - 1) + ["drop"]
    assert decisions[-1].count == BURST + 1
    later = c.observe(spec(), T0 + BURST + REFILL_SECONDS)
    assert (later.outcome, later.count) == ("update", BURST + 2)


def test_a_warning_and_a_normal_event_have_separate_buckets() -> None:
    c = EventCorrelator(burst=1)
    assert c.observe(spec("a"), T0).outcome == "create"
    assert c.observe(spec("b"), T0).outcome == "drop"
    normal = EventSpec(regarding=POD, reason="PreemptiveRestart", note="ok", type="Normal")
    assert c.observe(normal, T0).outcome == "create"


def test_a_forgotten_event_is_created_again() -> None:
    c = EventCorrelator()
    first = c.observe(spec(), T0)
    c.forget(spec())
    again = c.observe(spec(), T0 + 60)
    assert again.outcome == "create"
    assert again.count == 1
    assert again.name != first.name


def test_caches_are_bounded() -> None:
    c = EventCorrelator(max_keys=2)
    c.observe(spec("a"), T0)
    c.observe(spec("b"), T0)
    c.observe(spec("c"), T0)  # "a" is the least recently used: forgotten
    assert c.observe(spec("a"), T0 + 1).outcome == "create"
    assert c.observe(spec("c"), T0 + 1).outcome == "update"


def test_time_going_backwards_grants_no_tokens() -> None:
    c = EventCorrelator(burst=1)
    assert c.observe(spec("a"), T0).outcome == "create"
    assert c.observe(spec("b"), T0 - 10_000).outcome == "drop"
    assert c.observe(spec("c"), T0 + 1).outcome == "drop"


@pytest.mark.parametrize("char", ["x", "é", "€", "🙂"])
def test_the_note_fits_1024_bytes_without_cutting_a_character(char: str) -> None:
    s = EventSpec(regarding=POD, reason="OOMKilled", note=char * 2000)
    data = s.note.encode()
    assert len(data) <= NOTE_MAX_BYTES
    assert s.note.endswith("...")
    assert s.note[:-3] == char * len(s.note[:-3])
    assert truncate_utf8("short", NOTE_MAX_BYTES) == "short"


def test_spec_defaults_and_references() -> None:
    node = ObjectRef.of({"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n1"}})
    s = EventSpec(regarding=node, reason="OOMKilled", note="x", reporting_instance="n1")
    assert s.namespace == "default"  # a Node's Events live in "default", as kubelet's
    assert s.action == "OOMKilled"
    assert s.reporting_controller == "sentinel"
    assert node.as_api() == {"apiVersion": "v1", "kind": "Node", "name": "n1"}
    pod = ObjectRef.of({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}})
    assert pod == ObjectRef(kind="Pod", name="p", namespace="ns", uid="u", api_version="v1")
    assert pod.as_api()["namespace"] == "ns"
