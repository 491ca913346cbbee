"""Slack injection: text from outside (process and container names, images, hosts, labels,
kernel lines, cgroup paths, rule names, reasons, action outcomes) can neither mention, link
nor format anything, in any field of any message, while a person still reads it as it was.

Driven through the renderer, ``sentinel render`` (from a kernel log with a hostile command
name) and the real ``slack_sdk`` to the local Slack-compatible server (token and webhook,
and a storm grouped by the outbox). The oracle for formatting: a message built from hostile
values has, field by field, exactly the formatting characters of the same message built
from plain placeholders, so every ``*``, ``_``, ``~`` and backtick in it is sentinel's own.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.notifiers.delivery import deliver
from sentinel.notifiers.slack import SlackSender
from sentinel.notifiers.slack_render import MAX_BLOCKS, render
from sentinel.policy.model import SlackNotifier
from sentinel.store import Store
from slack_server import CHANNEL, TOKEN, SlackServer, message_problem, slack_server

SENTINEL = Path(sys.executable).parent / "sentinel"
DATA = Path(__file__).parent / "data" / "oom-logs"
MIB = 1 << 20

HOSTILE = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U0123ABC>",
    "<#C0123ABC>",
    "<!subteam^S0123|@oncall>",
    "<https://evil.example/login|click here>",
    "<!date^1392734382^{date}|today>",
    "*bold*",
    "_italic_",
    "~struck~",
    "`code`",
    "```",
    "``` <!channel> ```",
    "&lt;!channel&gt;",
    "AT&T &amp;",
    "@channel",
    "hey @here",
    "@Everyone!",
    "> quoted",
    "web\n> *fake line* <!here>",
    "\u202egnp.exe",
    "ünïcødé 名前 🔥",
    "my_app_1",
]
LONG = ["<" * 5000, "&" * 3100, "<!channel>" * 10_000, "*_~`" * 1500]
BACK = str.maketrans({"∗": "*", "ˍ": "_", "∼": "~", "ˋ": "`", "＠": "@"})
FORMATTING = "*_~`"
BROADCAST = re.compile(r"@(channel|here|everyone|group)\b", re.IGNORECASE)
LOOSE_AMP = re.compile(r"&(?!(?:amp|lt|gt);)")
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

Build = Callable[[Callable[[str], str]], dict[str, Any]]


# --- notifications with one value in every outside field ---------------------------------


def kill(v: str, at: float = 1_760_000_000.0) -> dict[str, Any]:
    return {
        "kind": "kill",
        "rule": v,
        "reason": v,
        "host": v,
        "at": at,
        "target": {
            "id": v,
            "name": v,
            "runtime": "docker",
            "image": v,
            "labels": {v: v},
        },
        "evidence": {"condition": "oom_killed", "killed_at": at},
        "record": {
            "pid": v,
            "comm": v,
            "global": False,
            "constraint": v,
            "oom_memcg": v,
            "task_memcg": "/kubepods.slice/pod_1",
            "invoker": v,
            "gfp_mask": v,
            "host": v,
            "anon_rss_kb": 60_000,
        },
        "top_tasks": [{"pid": v, "name": v, "rss_bytes": 400 * MIB}],
        "memory": {"usage_bytes": 500 * MIB, "limit_bytes": 512 * MIB, "history": [1, 5, 9]},
        "actions": [{"action": v, "outcome": v}, {"action": "restart", "outcome": v}],
    }


def action(v: str, condition: str) -> dict[str, Any]:
    return {
        "kind": "action",
        "rule": v,
        "reason": v,
        "host": v,
        "target": {"id": v, "name": v, "runtime": "docker", "image": v},
        "evidence": {
            "condition": condition,
            "constraint": v,
            "usage_percent": v,
            "projected_oom_in_s": 540,
            "usage_bytes": 900 * MIB,
            "limit_bytes": 1024 * MIB,
        },
        "actions": [{"action": "restart", "outcome": v}],
        "after": {"running": True, "usage_bytes": 100 * MIB},
    }


def builds(v: Callable[[str], str]) -> dict[str, dict[str, Any]]:
    """Every kind of message, ``v(slot)`` in each outside field (slots keep storm kills
    apart)."""
    return {
        "kill": kill(v("a")),
        "process kill": {**kill(v("a")), "target": {"id": v("a"), "name": v("a")}},
        "forecast action": action(v("a"), "projected_oom_within"),
        "threshold action": action(v("a"), "memory_above"),
        "escalation": {
            **action(v("a"), "restarts"),
            "kind": "escalation",
            "evidence": {"restarts_at": [1.0, 2.0]},
        },
        "test": {"kind": "test", "host": v("a"), "notifier": v("a")},
        "storm": {
            "kind": "storm",
            "kills": [kill(v(s), 1_760_000_000.0 + i) for i, s in enumerate("abc")],
            "earlier": 1,
        },
    }


# --- what must hold in every field --------------------------------------------------------


def texts(message: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where, text) for every text Slack shows: the fallback and each block's texts."""
    out = [("text", message["text"])]
    for i, block in enumerate(message["blocks"]):
        if "text" in block:
            out.append((f"blocks[{i}].text", block["text"]["text"]))
        for j, f in enumerate(block.get("fields") or []):
            out.append((f"blocks[{i}].fields[{j}]", f["text"]))
        for j, e in enumerate(block.get("elements") or []):
            out.append((f"blocks[{i}].elements[{j}]", e["text"]))
    return out


def visible(text: str) -> str:
    """What a person reads: Slack's entities decoded, the lookalikes read as what they show."""
    decoded = re.sub(r"&(amp|lt|gt);", lambda m: {"amp": "&", "lt": "<", "gt": ">"}[m[1]], text)
    return decoded.translate(BACK).replace("\u00ad", "")


def formatting(text: str) -> tuple[int, ...]:
    """Counts of Slack's formatting characters outside code blocks, and of backticks
    inside them (a single one there could pair with a fence)."""
    parts = text.split("```")
    outside = "".join(parts[0::2])
    inside = "".join(parts[1::2])
    return (len(parts), *(outside.count(c) for c in FORMATTING), inside.count("`"))


def assert_inert(message: Mapping[str, Any], plain: Mapping[str, Any] | None = None) -> None:
    """No control sequence in any field; with ``plain`` (the same message from
    placeholders), no formatting character that sentinel did not write."""
    assert message_problem(message) is None
    assert len(message["blocks"]) <= MAX_BLOCKS
    for where, text in texts(message):
        assert "<" not in text, (where, text)
        assert ">" not in text, (where, text)
        assert not LOOSE_AMP.search(text), (where, text)
        assert not BROADCAST.search(text), (where, text)
        assert not CONTROL.search(text), (where, text)
        assert not any(line.lstrip().startswith("&gt;") for line in text.splitlines()), (
            where,
            text,
        )
    if plain is not None:
        ours = dict(texts(plain))
        assert [w for w, _ in texts(message)] == list(ours)
        for where, text in texts(message):
            assert formatting(text) == formatting(ours[where]), (where, text, ours[where])


def assert_auto_parsing_off(blocks: list[dict[str, Any]]) -> None:
    for block in blocks:
        objects = [block.get("text"), *(block.get("fields") or []), *block.get("elements", [])]
        for obj in objects:
            if obj is None:
                continue
            if obj["type"] == "mrkdwn":
                assert obj.get("verbatim") is True, block
            else:
                assert obj.get("emoji") is False, block


# --- the renderer -------------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
@pytest.mark.parametrize("kind", list(builds(lambda s: s)))
def test_hostile_text_is_inert_in_every_field_and_reads_as_it_was(kind: str, value: str) -> None:
    message = render(builds(lambda s: value)[kind])
    plain = render(builds(lambda s: f"v{s}")[kind])
    assert_inert(message, plain)
    assert_auto_parsing_off(message["blocks"])
    shown = value.replace("\n", " ").replace("\u202e", "\ufffd")
    if kind == "test":  # the host is all there is
        assert shown in visible(message["text"])
        return
    assert shown in visible(message["text"]), message["text"]
    body = " ".join(visible(t) for w, t in texts(message) if w != "text")
    assert shown in body


def test_the_name_is_still_bold_and_the_command_still_code() -> None:
    message = render(kill("*bold* <!channel>"))
    first = message["blocks"][1]["text"]["text"]
    assert "killed `∗bold∗ &lt;!channel&gt;` (pid" in first
    assert "in container *∗bold∗ &lt;!channel&gt;*" in first
    assert message["blocks"][0]["text"]["text"].startswith("OOM kill: ∗bold∗ &lt;!channel&gt; on")


def test_the_policys_own_mention_still_pings() -> None:
    message = render(kill("<!channel>"), mention="<!subteam^S0123>")
    assert message["text"].startswith("<!subteam^S0123> ")
    assert message["blocks"][1]["text"]["text"].startswith("<!subteam^S0123> ")
    assert "<!channel>" not in json.dumps(message)


def test_code_blocks_keep_the_kernels_words_and_cannot_be_closed_from_inside() -> None:
    message = render(kill("a```b`c"))
    lines = next(t for _, t in texts(message) if t.startswith("*The kernel's lines*"))
    assert lines.count("```") == 2
    assert lines.endswith("```")
    assert "oom-kill:constraint=aˋˋˋbˋc,oom_memcg=aˋˋˋbˋc" in lines  # `_` kept in code
    assert "Out of memory: Killed process aˋˋˋbˋc (aˋˋˋbˋc)" in lines


@pytest.mark.parametrize("value", LONG, ids=lambda v: f"{v[:4]!r}x{len(v)}")
@pytest.mark.parametrize("kind", list(builds(lambda s: s)))
def test_very_long_hostile_text_stays_within_limits_and_inert(kind: str, value: str) -> None:
    message = render(builds(lambda s: value)[kind])
    same_length = "v" * len(value)  # escapes to as many characters as a lookalike run
    assert_inert(message, render(builds(lambda s: same_length)[kind]) if "*" in value else None)
    assert len(message["blocks"][0]["text"]["text"]) <= 150
    assert len(message["text"]) <= 3000


def test_a_storm_of_hostile_names_lists_every_one_inert() -> None:
    names = HOSTILE[:20]
    storm = {
        "kind": "storm",
        "kills": [{**kill(n, 1_760_000_000.0 + i), "host": "node-7"} for i, n in enumerate(names)],
    }
    message = render(storm)
    assert_inert(message)
    body = visible(" ".join(t for w, t in texts(message) if w != "text"))
    for n in names:
        assert n.replace("\n", " ").replace("\u202e", "\ufffd") in body, n


_clean = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), min_size=1, max_size=30
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(list(builds(lambda s: s))), st.dictionaries(st.sampled_from("abc"), _clean))
def test_any_text_in_any_field_is_inert(kind: str, values: dict[str, str]) -> None:
    def hostile(slot: str) -> str:
        return values.get(slot, "x")

    message = render(builds(hostile)[kind])
    assert_inert(message, render(builds(lambda s: f"v{s}")[kind]))
    name = hostile("a")
    if kind not in ("test", "storm") and len(name) <= 20:
        assert name.translate(BACK) in visible(message["text"])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_any_text_at_all_cannot_mention_link_or_break_a_line(value: str) -> None:
    for notification in builds(lambda s: value).values():
        assert_inert(render(notification))


def test_text_where_numbers_belong_is_shown_as_unknown() -> None:
    v = "<!channel> 1e400"
    n = {
        **action("web", "projected_oom_within"),
        "evidence": {
            "condition": "projected_oom_within",
            "projected_oom_in_s": v,
            "usage_bytes": v,
            "limit_bytes": 10**400,
        },
        "forecast": {"at": v, "eta_seconds": 10**400, "rate_bytes_per_s": v},
        "memory": {"history": [v, 10**400, 1, 2], "history_span_s": v, "usage_bytes": v},
    }
    message = render(n)
    assert_inert(message)
    assert "would kill it in ? (? limit): ? of ?." in message["blocks"][1]["text"]["text"]
    storm = render({"kind": "storm", "kills": [kill(v, at=10**400), kill("b", at=float("nan"))]})
    assert_inert(storm)
    assert "2 kills within 0s" in storm["text"]


# --- sentinel render ----------------------------------------------------------------------


def hostile_log() -> str:
    text = (DATA / "000-aws-5.11-docker-global-oom-below-limit-syslog.log").read_text()
    text = text.replace("(python)", "(<!channel>*x*```)")
    text = text.replace("docker invoked", "<!here>_i_ invoked")
    return re.sub(r" python$", " <@U0123>~y~`", text, flags=re.MULTILINE)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SENTINEL), *args], capture_output=True, text=True, check=False, timeout=60
    )


def test_sentinel_render_of_a_kernel_log_with_a_hostile_command_name(tmp_path: Path) -> None:
    (tmp_path / "kern.log").write_text(hostile_log())
    parsed = run("parse", str(tmp_path / "kern.log"), "--format", "json")
    assert parsed.returncode == 0, parsed.stderr
    (tmp_path / "record.json").write_text(parsed.stdout.splitlines()[0])
    rendered = run("render", str(tmp_path / "record.json"))
    assert rendered.returncode == 0, rendered.stderr
    message = json.loads(rendered.stdout)
    assert_inert(message)
    assert_auto_parsing_off(message["blocks"])
    shown = visible(json.dumps(message, ensure_ascii=False))
    for name in ("<!channel>*x*```", "<!here>_i_", "<@U0123>~y~`"):
        assert name in shown, name


def test_sentinel_render_of_a_hostile_notification(tmp_path: Path) -> None:
    path = tmp_path / "n.json"
    path.write_text(json.dumps(kill("<https://evil.example|click> @here *x*")))
    rendered = run("render", str(path))
    assert rendered.returncode == 0, rendered.stderr
    message = json.loads(rendered.stdout)
    assert_inert(message, render(kill("va")))
    assert "<https://evil.example|click> @here *x*" in visible(message["text"])


# --- on the wire: the real slack_sdk to the local Slack server ---------------------------


@pytest.fixture
def server() -> Iterator[SlackServer]:
    with slack_server() as s:
        yield s


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


def sender(server: SlackServer, store: Store, how: str) -> SlackSender:
    if how == "token":
        config = SlackNotifier(
            type="slack", channel=CHANNEL, token_env="SLACK", api_url=server.api_url
        )
        env = {"SLACK": TOKEN}
    else:
        config = SlackNotifier(type="slack", webhook_url_env="SLACK")
        env = {"SLACK": server.webhook_url}
    return SlackSender("team", config, store, environ=env, clock=lambda: 0.0)


@pytest.mark.parametrize("how", ["token", "webhook"])
def test_every_kind_arrives_inert_through_slack_sdk(
    server: SlackServer, store: Store, how: str
) -> None:
    team = sender(server, store, how)
    value = "``` <!channel> *x* @here <https://evil.example|y> &lt;"
    kinds = builds(lambda s: value)
    for notification in kinds.values():
        team.send(notification)
    arrived = server.wait_messages(len(kinds))
    assert [m.via for m in arrived] == ["api" if how == "token" else "webhook"] * len(kinds)
    for m, kind in zip(arrived, kinds, strict=True):
        message = {"text": m.text, "blocks": m.blocks}
        assert_inert(message, render(builds(lambda s: f"v{s}")[kind]))
        assert_auto_parsing_off(m.blocks)
        assert value in visible(m.text), kind
        # and the top-level text: Slack links and pings nothing it finds in it by itself
        assert m.parse == "none", kind
        assert m.link_names in (False, "false", "0", 0), kind


def test_a_storm_grouped_by_the_outbox_arrives_inert(server: SlackServer, store: Store) -> None:
    senders = {"team": sender(server, store, "token")}
    names = ["<!channel>", "*a*", "_b_", "`c`", "<@U1>"]
    for i, n in enumerate(names):
        store.enqueue(dedupe_key=f"k{i}", notifier="team", payload=kill(n, 1000.0 + i), now=1000.0)
    assert deliver(store, senders, 1100.0) == (len(names), 0)
    (m,) = server.messages
    assert m.text.startswith(f"OOM kill storm on {len(names)} hosts: {len(names)} kills")
    message = {"text": m.text, "blocks": m.blocks}
    assert_inert(message)
    body = visible(json.dumps(m.blocks, ensure_ascii=False))
    assert all(n in body for n in names)
