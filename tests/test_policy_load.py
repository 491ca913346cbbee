"""Policy files: the issue's example, the built-in default, and bad files with their places."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sentinel.policy import PolicyError, default_policy, effective_document, load_policy
from sentinel.policy.load import DEFAULT_POLICY_YAML, render_yaml
from sentinel.policy.model import (
    NotifyAction,
    OomScoreAdjAction,
    RestartAction,
    RunAction,
    SignalAction,
)

POLICIES = Path(__file__).parent / "data" / "policies"
BAD = sorted((POLICIES / "bad").glob("*.yaml"))


def load(text: str, name: str = "policy.yaml"):  # type: ignore[no-untyped-def]
    return load_policy(text, name)


def problems(text: str, name: str = "policy.yaml") -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy(text, name)
    return [str(p) for p in info.value.problems]


# --- the example file of issue 4 ---------------------------------------------------------


def test_example_validates_and_means_what_its_comments_say() -> None:
    policy = load((POLICIES / "example.yaml").read_text(), "example.yaml")
    s = policy.settings
    assert s.sample_interval == 5.0
    assert s.state == "/var/lib/sentinel/state.db"
    assert s.dry_run is False
    assert s.listen == "127.0.0.1:9310"
    assert policy.notifiers["ops-log"].type == "log"

    restart, protect, report = policy.rules
    assert restart.name == "restart-leaking-scheduler"
    assert restart.match.name == "scheduler*"
    assert restart.match.labels == {"team": "data"}
    assert restart.when is not None
    assert restart.when.projected_oom_within == 15 * 60
    first, second = restart.do
    assert isinstance(first, RestartAction)
    assert first.restart.grace_period == 30.0
    assert isinstance(second, NotifyAction)
    assert second.notify == "ops-log"
    assert restart.cooldown == 30 * 60
    assert (restart.max_restarts.count, restart.max_restarts.per) == (3, 24 * 3600)

    assert protect.match.image == "postgres:*"
    assert protect.when is None
    (adj,) = protect.do
    assert isinstance(adj, OomScoreAdjAction)
    assert adj.oom_score_adj == -900

    assert report.when is not None
    assert report.when.oom_killed is not None
    assert report.when.oom_killed.scope == "any"
    assert report.cooldown == 0  # every kill is reported
    assert [a.notify for a in report.do if isinstance(a, NotifyAction)] == ["ops-log"]


def test_effective_policy_loads_back_to_the_same_policy() -> None:
    policy = load((POLICIES / "example.yaml").read_text())
    text = render_yaml(effective_document(policy))
    assert load(text) == policy
    assert "projected_oom_within: 15m" in text
    assert "per: 24h" in text
    assert "grace_period: 30s" in text


def test_listen_null_survives_the_effective_policy() -> None:
    policy = load("settings: {listen: null}\n")
    assert policy.settings.listen is None
    assert load(render_yaml(effective_document(policy))).settings.listen is None


def test_default_policy_reports_every_kill_and_changes_nothing() -> None:
    policy = default_policy()
    assert policy == load(DEFAULT_POLICY_YAML)
    assert list(policy.notifiers) == ["log"]
    assert policy.notifiers["log"].type == "log"
    (rule,) = policy.rules
    assert rule.when is not None
    assert rule.when.oom_killed is not None
    assert rule.when.oom_killed.scope == "any"
    assert rule.match == type(rule.match)()
    assert all(isinstance(a, NotifyAction) for a in rule.do)
    assert rule.cooldown == 0


# --- everything else the issue lists -----------------------------------------------------

FULL = """\
version: 1
settings:
  sample_interval: 10s
  dry_run: true
  listen: "[::1]:9310"
  max_actions_per_minute: 2
notifiers:
  ops: {type: log}
rules:
  - name: hot
    match:
      image: "acme/*"
      runtime: docker
      labels: {tier: 1}
      exclude: [{name: "canary-*"}, {labels: {pinned: "true"}}]
    when:
      memory_above: {bytes: 1.5Gi, for: 1h30m}
    do:
      - signal: usr2
      - run: {command: [/usr/local/bin/dump, --fast], timeout: 250ms}
    cooldown: 1h
    dry_run: true
    min_uptime: 2m
  - name: percent
    when:
      memory_above: {percent: 90, for: 5m}
      oom_killed: {scope: cgroup}
    do: [{notify: ops}, {restart: {}}]
  - name: procs
    match: {runtime: process, exclude: {name: sentinel}}
    do: [{oom_score_adj: 1000}]
"""


def test_every_key_the_issue_lists() -> None:
    policy = load(FULL)
    assert policy.settings.sample_interval == 10
    assert policy.settings.dry_run is True
    assert policy.settings.listen == "[::1]:9310"
    assert policy.settings.max_actions_per_minute == 2
    hot, percent, procs = policy.rules
    assert hot.match.image == "acme/*"
    assert hot.match.runtime == "docker"
    assert hot.match.labels == {"tier": "1"}
    assert [e.name for e in hot.match.exclude] == ["canary-*", None]
    assert hot.match.exclude[1].labels == {"pinned": "true"}
    assert hot.when is not None
    assert hot.when.memory_above is not None
    assert hot.when.memory_above.bytes == 3 * 512 * 1024**2
    assert hot.when.memory_above.for_ == 5400
    signal, run = hot.do
    assert isinstance(signal, SignalAction)
    assert signal.signal == "SIGUSR2"
    assert isinstance(run, RunAction)
    assert run.run.command == ["/usr/local/bin/dump", "--fast"]
    assert run.run.timeout == 0.25
    assert (hot.cooldown, hot.dry_run, hot.min_uptime) == (3600, True, 120)
    assert percent.when is not None
    assert percent.when.memory_above is not None
    assert percent.when.memory_above.percent == 90
    assert percent.when.oom_killed is not None
    assert percent.when.oom_killed.scope == "cgroup"
    assert percent.cooldown == 0  # oom_killed rules: every kill
    restart = percent.do[1]
    assert isinstance(restart, RestartAction)
    assert restart.restart.grace_period == 10  # Docker's default
    assert procs.match.runtime == "process"
    assert procs.match.exclude[0].name == "sentinel"
    assert procs.cooldown == 300
    assert load(render_yaml(effective_document(policy))) == policy


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5), ("15m", 900), ("24h", 86400), ("1h30m", 5400), ("250ms", 0.25), ("90", 90)],
)
def test_durations(text: str, seconds: float) -> None:
    policy = load(f"settings: {{sample_interval: {text}}}\n")
    assert policy.settings.sample_interval == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [("512Mi", 512 * 1024**2), ("1GiB", 1024**3), ("2G", 2 * 10**9), ("1048576", 1 << 20)],
)
def test_sizes(text: str, size: int) -> None:
    policy = load(
        f"rules: [{{name: r, when: {{memory_above: {{bytes: {text}}}}}, do: [{{notify: l}}]}}]\n"
        "notifiers: {l: {type: log}}\n"
    )
    cond = policy.rules[0].when
    assert cond is not None
    assert cond.memory_above is not None
    assert cond.memory_above.bytes == size


@pytest.mark.parametrize("name", ["SIGUSR2", "usr2", "SIGRTMIN+3", "SIGRTMAX-1", "HUP", "SIGPWR"])
def test_signal_names(name: str) -> None:
    policy = load(f"rules: [{{name: r, when: {{oom_killed: true}}, do: [{{signal: '{name}'}}]}}]\n")
    action = policy.rules[0].do[0]
    assert isinstance(action, SignalAction)
    assert action.signal.startswith("SIG")


@pytest.mark.parametrize("name", ["SIGFOO", "SIGRTMIN+40", "12", "KILLME"])
def test_bad_signal_names(name: str) -> None:
    (problem,) = problems(
        f"rules: [{{name: r, when: {{oom_killed: true}}, do: [{{signal: '{name}'}}]}}]\n"
    )
    assert "rules[0].do[0].signal: expected a Linux signal name" in problem


def test_yaml_12_scalars_no_norway_problem() -> None:
    policy = load(
        "notifiers: {'no': {type: log}}\n"
        "rules: [{name: r, match: {labels: {enabled: yes, v: 010}},"
        " when: {oom_killed: true}, do: [{notify: no}]}]\n"
    )
    assert list(policy.notifiers) == ["no"]
    assert policy.rules[0].match.labels == {"enabled": "yes", "v": "010"}


def test_merge_keys_and_anchors() -> None:
    policy = load(
        "notifiers: {ops: {type: log}}\n"
        "rules:\n"
        "  - &base {name: a, when: {oom_killed: true}, do: [{notify: ops}]}\n"
        "  - <<: *base\n"
        "    name: b\n"
    )
    assert [r.name for r in policy.rules] == ["a", "b"]
    assert policy.rules[0].when == policy.rules[1].when


def test_a_recursive_alias_is_an_error_not_a_hang() -> None:
    (problem,) = problems("rules: &r [*r]\n")
    assert problem.startswith("policy.yaml:1:")


# --- bad files ---------------------------------------------------------------------------

_EXPECT = re.compile(r"^# expect: (\d+):(\d+) (\S+) \| (.*)$")


def expectations(path: Path) -> list[tuple[int, int, str, list[str]]]:
    out = []
    for line in path.read_text().splitlines():
        m = _EXPECT.match(line)
        if m:
            parts = [p.strip() for p in m.group(4).split(" | ")]
            path_ = "" if m.group(3) == "(none)" else m.group(3)
            out.append((int(m.group(1)), int(m.group(2)), path_, parts))
    assert out, f"{path.name} declares no '# expect:' line"
    return out


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_file_names_file_line_column_key_expected_found(path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(path.read_text(), str(path))
    found = info.value.problems
    expected = expectations(path)
    assert len(found) == len(expected), "\n".join(map(str, found))
    for problem, (line, column, key, parts) in zip(found, expected, strict=True):
        assert problem.file == str(path)
        assert (problem.line, problem.column) == (line, column), str(problem)
        assert problem.path == key, str(problem)
        for part in parts:
            assert part in problem.message, str(problem)
        assert str(problem).startswith(f"{path}:{line}:{column}: ")


def test_the_battery_covers_what_the_brief_asks() -> None:
    names = {p.stem for p in BAD}
    assert {
        "unknown-key",
        "wrong-type",
        "bad-duration",
        "bad-signal",
        "undeclared-notifier",
        "yaml-syntax",
        "two-errors",
    } <= names


def test_several_errors_at_once_in_file_order() -> None:
    found = problems(
        "version: 1\n"
        "settings: {sample_interval: soon, bogus: 1}\n"
        "rules:\n"
        "  - name: a\n"
        "    when: {projected_oom_within: -5}\n"
        "    do: [{notify: nobody}, {oom_score_adj: 5000}]\n"
        "  - name: a\n"
        "    when: {oom_killed: false}\n"
        "    do: [{restart: {grace_period: 1 minute}}]\n"
    )
    assert [p.split(": ", 2)[:2] for p in found] == [
        ["policy.yaml:2:29", "settings.sample_interval"],
        ["policy.yaml:2:35", "settings.bogus"],
        ["policy.yaml:5:34", "rules[0].when.projected_oom_within"],
        ["policy.yaml:6:19", "rules[0].do[0].notify"],
        ["policy.yaml:6:44", "rules[0].do[1].oom_score_adj"],
        ["policy.yaml:7:11", "rules[1].name"],
        ["policy.yaml:8:24", "rules[1].when.oom_killed"],
        ["policy.yaml:9:35", "rules[1].do[0].restart.grace_period"],
    ]
    assert "expected a unique rule name (rules[0] is also named 'a')" in found[5]
    assert "found false" in found[6]


def test_not_utf8_or_tabs_are_yaml_errors_with_a_place() -> None:
    (problem,) = problems("rules:\n\t- name: x\n")
    assert problem.startswith("policy.yaml:2:1: YAML syntax error:")


def test_error_names_the_multi_document_place() -> None:
    (problem,) = problems("version: 1\n---\nversion: 1\n")
    assert problem.startswith("policy.yaml:2:1: YAML syntax error:")
