"""Slack messages: the words, and Slack's limits on any input (hypothesis)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.notifiers.slack_render import (
    MAX_BLOCKS,
    cut,
    human_bytes,
    render,
    render_storm,
    sparkline,
    top_tasks,
)
from slack_server import message_problem

DATA = Path(__file__).parent / "data" / "oom-logs"
SENTINEL = Path(sys.executable).parent / "sentinel"
GIB = 1 << 30
MIB = 1 << 20


def kill(global_: bool, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "pid": 4242,
        "comm": "java",
        "anon_rss_kb": int(1.47 * GIB) // 1024,
        "file_rss_kb": 0,
        "shmem_rss_kb": 0,
        "global": global_,
        "constraint": "CONSTRAINT_NONE" if global_ else "CONSTRAINT_MEMCG",
        "task_memcg": "/system.slice/docker-abc.scope",
    }
    if not global_:
        record["oom_memcg"] = record["task_memcg"]
        record["mem_info"] = {"memory_usage_kb": 512 * 1024, "memory_limit_kb": 512 * 1024}
    return {
        "kind": "kill",
        "rule": "report",
        "target": {"id": "abc", "name": "billing-api", "runtime": "docker", "image": "acme/b:2"},
        "reason": "the kernel killed it",
        "evidence": {"condition": "oom_killed", "killed_at": 1_760_000_000.0},
        "text": "x",
        "at": 1_760_000_000.0,
        "host": "node-7",
        "record": record,
        **extra,
    }


def test_host_out_of_memory_in_plain_words() -> None:
    n = kill(True, memory={"usage_bytes": int(1.47 * GIB), "limit_bytes": 2 * GIB})
    message = render(n)
    assert (
        "the host ran out of memory; the container was at 1.47 GiB of its 2 GiB limit"
        in message["text"]
    )
    assert "billing-api" in message["text"]
    assert "RSS at the kill 1.47 GiB" in message["text"]
    assert message_problem(message) is None


def test_own_limit_in_plain_words() -> None:
    message = render(kill(False))
    assert "it reached its own 512 MiB limit" in message["text"]
    assert message["blocks"][0]["text"]["text"] == "OOM kill: billing-api on node-7"


def test_kill_message_has_tasks_sparkline_forecast_actions_and_kernel_lines() -> None:
    n = kill(
        False,
        top_tasks=[{"pid": 1, "name": "java", "rss_bytes": 400 * MIB}],
        memory={"usage_bytes": 500 * MIB, "limit_bytes": 512 * MIB, "history": [1, 2, 3, 9]},
        forecast={"at": 1_759_999_000.0, "eta_seconds": 900.0, "rate_bytes_per_s": 1000.0},
        actions=[{"action": "restart", "outcome": "done"}],
    )
    text = json.dumps(render(n, mention="<!subteam^S1>"), ensure_ascii=False)
    assert "java" in text
    assert "400 MiB" in text
    assert "▁" in text
    assert "█" in text
    assert "sentinel had forecast it at 2025-10-09 08:36:40 UTC" in text
    assert "restart (done)" in text
    assert "Out of memory: Killed process 4242 (java)" in text
    assert "<!subteam^S1>" in text


def test_escalation_and_action_messages() -> None:
    escalation = render(
        {
            "kind": "escalation",
            "rule": "restart-leaky",
            "target": {"id": "a", "name": "web", "runtime": "docker"},
            "evidence": {"restarts_at": [1.0, 2.0, 3.0]},
            "forecast": {"eta_seconds": 60.0, "rate_bytes_per_s": 2 * MIB / 3600},
            "reason": "restarts are not helping",
        }
    )
    assert "Restarts are not helping: likely leak" in escalation["text"]
    assert "3 restarts" in escalation["text"]
    assert "memory grows 2 MiB/h" in escalation["text"]
    action = render(
        {
            "kind": "action",
            "rule": "pre",
            "target": {"id": "a", "name": "web", "runtime": "docker"},
            "reason": "projected OOM kill in 9m",
            "evidence": {
                "condition": "projected_oom_within",
                "projected_oom_in_s": 540,
                "constraint": "cgroup",
                "usage_bytes": 900 * MIB,
                "limit_bytes": GIB,
            },
            "memory": {"usage_bytes": 900 * MIB},
            "actions": [{"action": "restart", "outcome": "done"}],
            "after": {"running": True, "usage_bytes": 100 * MIB},
        }
    )
    body = json.dumps(action)
    assert action["text"].startswith("Restarted web before an OOM kill")
    assert "would kill it in 9m" in body
    assert "it is running again, 800 MiB freed" in body
    for message in (escalation, action):
        assert message_problem(message) is None


def test_storm_is_one_message_naming_every_kill() -> None:
    kills = [
        kill(i % 2 == 0, target={"id": str(i), "name": f"c{i}", "runtime": "docker"})
        for i in range(10)
    ]
    message = render({"kind": "storm", "kills": kills, "earlier": 1})
    assert message["text"].startswith("OOM kill storm on node-7: 10 kills")
    assert all(f"c{i}" in json.dumps(message) for i in range(10))
    assert "reported on its own above" in json.dumps(message)
    assert message_problem(message) is None


def test_a_storm_of_thousands_stays_within_limits() -> None:
    kills = [
        kill(True, target={"id": str(i), "name": "n" * 300, "runtime": "docker"})
        for i in range(2000)
    ]
    message = render_storm(kills)
    assert message_problem(message) is None
    assert len(message["blocks"]) <= MAX_BLOCKS


def test_every_real_record_renders_within_limits() -> None:
    for path in sorted(DATA.glob("*.expected.json")):
        for record in json.loads(path.read_text()):
            tasks = record.get("tasks") or []
            n = {
                "kind": "kill",
                "target": {"id": "x", "name": "x", "runtime": "docker"},
                "record": {k: v for k, v in record.items() if k != "tasks"},
                "top_tasks": top_tasks(tasks),
            }
            assert message_problem(render(n)) is None, path.name


def test_helpers() -> None:
    assert human_bytes(512 * MIB) == "512 MiB"
    assert human_bytes(int(1.47 * GIB)) == "1.47 GiB"
    assert human_bytes(None) == "?"
    assert sparkline([0, 1, 2, 3]) == "▁▃▆█"
    assert len(sparkline(list(range(1000)))) == 48
    assert cut("```" + "x" * 100 + "```", 20).endswith("…```")
    assert len(cut("```" + "x" * 100 + "```", 20)) <= 20
    assert cut("x" * 10 + "&amp;" * 10, 14) == "x" * 10 + "…"  # no entity cut in two
    assert cut("x" * 10 + "&lt;" * 10, 16) == "x" * 10 + "&lt;…"


_text = st.text(min_size=0, max_size=5000)
_any_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _text)
_record = st.fixed_dictionaries(
    {"pid": st.integers(min_value=-5, max_value=1 << 40)},
    optional={
        "comm": _text,
        "global": st.one_of(st.none(), st.booleans()),
        "anon_rss_kb": st.integers(min_value=0, max_value=1 << 45),
        "file_rss_kb": st.integers(min_value=0, max_value=1 << 45),
        "oom_memcg": _text,
        "task_memcg": _text,
        "invoker": _text,
        "gfp_mask": _text,
        "host": _text,
        "mem_info": st.dictionaries(
            st.sampled_from(["memory_limit_kb", "pages_ram"]), st.integers()
        ),
    },
)
_notification = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["kill", "action", "escalation", "test", "other"]),
        "target": st.fixed_dictionaries(
            {"id": _text, "name": _text, "runtime": st.sampled_from(["docker", "process"])},
            optional={"image": _text},
        ),
    },
    optional={
        "rule": _text,
        "reason": _text,
        "host": _text,
        "record": _record,
        "evidence": st.dictionaries(
            st.sampled_from(
                ["condition", "killed_at", "restarts_at", "constraint", "usage_percent"]
            ),
            _any_scalar,
        ),
        "top_tasks": st.lists(
            st.fixed_dictionaries(
                {"pid": st.integers(), "name": _text, "rss_bytes": st.integers()}
            ),
            max_size=50,
        ),
        "memory": st.fixed_dictionaries(
            {},
            optional={
                "history": st.lists(st.integers(), max_size=5000),
                "usage_bytes": st.integers(),
                "limit_bytes": st.integers(),
            },
        ),
        "forecast": st.fixed_dictionaries(
            {},
            optional={
                "at": st.floats(),
                "eta_seconds": st.floats(),
                "rate_bytes_per_s": st.floats(),
            },
        ),
        "actions": st.lists(
            st.fixed_dictionaries({"action": _text, "outcome": _text}), max_size=100
        ),
    },
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_notification, st.one_of(st.none(), _text))
def test_any_notification_fits_slack_limits(
    notification: dict[str, Any], mention: str | None
) -> None:
    message = render(notification, mention=mention)
    assert message_problem(message) is None, message


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_notification, max_size=200))
def test_any_storm_fits_slack_limits(kills: list[dict[str, Any]]) -> None:
    assert message_problem(render_storm(kills)) is None


def test_sentinel_render_prints_block_kit_for_a_parsed_record(tmp_path: Path) -> None:
    log = DATA / "000-aws-5.11-docker-global-oom-below-limit-syslog.log"
    parsed = subprocess.run(
        [str(SENTINEL), "parse", str(log), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    line = parsed.stdout.splitlines()[0]
    (tmp_path / "record.json").write_text(line)
    result = subprocess.run(
        [str(SENTINEL), "render", str(tmp_path / "record.json")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    message = json.loads(result.stdout)
    assert message_problem(message) is None
    assert "the host ran out of memory" in message["text"]
    assert "RSS at the kill 1.47 GiB" in message["text"]


POD_TARGET = {
    "id": "c0ffee" * 10 + "abcd",
    "name": "prod/scheduler-7d9f8-abcde/app",
    "runtime": "kubernetes",
    "node": "node-7",
    "namespace": "prod",
    "pod": "scheduler-7d9f8-abcde",
    "container": "app",
    "owner_kind": "Deployment",
    "owner_name": "scheduler",
}


def test_a_host_oom_of_a_pod_says_the_pod_was_below_its_limit_and_names_it() -> None:
    n = kill(
        True,
        target=POD_TARGET,
        memory={"usage_bytes": int(1.47 * GIB), "limit_bytes": 2 * GIB},
    )
    message = render(n)
    text = message["text"]
    assert "host OOM: the node ran out of memory; the pod was below its limit" in text
    assert "(1.47 GiB of its 2 GiB limit)" in text
    assert "in pod prod/scheduler-7d9f8-abcde" in text
    first = message["blocks"][1]
    assert (
        "in container *app* of pod *prod/scheduler-7d9f8-abcde* (Deployment/scheduler)"
        in (first["text"]["text"])
    )
    fields = [f["text"] for f in first["fields"]]
    assert "*Pod*\nprod/scheduler-7d9f8-abcde" in fields
    assert "*Owner*\nDeployment/scheduler" in fields
    assert "*Node*\nnode-7" in fields
    assert message_problem(message) is None


def test_an_eviction_is_titled_as_such_and_names_the_pod() -> None:
    n = {
        "kind": "action",
        "rule": "evict-leakers",
        "target": POD_TARGET,
        "reason": "the forecast says the kernel kills it in 4m",
        "evidence": {"condition": "projected_oom_within", "projected_oom_in_s": 240},
        "actions": [{"action": "evict", "outcome": "done"}],
        "host": "node-7",
        "at": 1_760_000_000.0,
    }
    message = render(n)
    assert message["text"].startswith("Evicted prod/scheduler-7d9f8-abcde before an OOM kill")
    assert "of pod *prod/scheduler-7d9f8-abcde*" in message["blocks"][1]["text"]["text"]
    assert message_problem(message) is None
