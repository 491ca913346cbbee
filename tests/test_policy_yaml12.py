"""Policies are read as YAML 1.2, as the README says, and a hostile file cannot make the
loader build a huge structure: alias bombs, merge-key bombs, deep nesting and large files
are refused with one line naming the file, and no traceback."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel.policy import PolicyError, effective_document, load_policy
from sentinel.policy.load import MAX_VALUES, parse_yaml, render_yaml
from sentinel.policy.model import NotifyAction, RunAction, WebhookNotifier

POLICIES = Path(__file__).parent / "data" / "policies"


def problems(text: str, name: str = "p.yaml") -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy(text, name)
    return [str(p) for p in info.value.problems]


def scalar(text: str) -> object:
    data, doc = parse_yaml(f"v: {text}\n", "p.yaml")
    assert doc.problems == []
    return data["v"]


# --- the YAML 1.2 core schema ------------------------------------------------------------


YAML_12_CORE = [
    ("true", True),
    ("False", False),
    ("TRUE", True),
    ("yes", "yes"),
    ("no", "no"),
    ("on", "on"),
    ("off", "off"),
    ("y", "y"),
    ("n", "n"),
    ('"true"', "true"),
    ("~", None),
    ("null", None),
    ("", None),
    ("010", 10),  # decimal in 1.2 (YAML 1.1 read octal 8)
    ("017", 17),
    ("0o17", 15),
    ("0x1F", 31),
    ("-42", -42),
    ("1:30", "1:30"),  # YAML 1.1 sexagesimal 90
    ("1_000", "1_000"),
    ("0b101", "0b101"),
    ("1e3", 1000.0),
    (".5", 0.5),
    ("1.10", 1.1),
    ("-.Inf", -math.inf),
    ("2001-12-14", "2001-12-14"),  # no implicit timestamps
    ('"5"', "5"),
    ("'010'", "010"),
]


def test_scalars_resolve_by_the_yaml_12_core_schema() -> None:
    wrong = [
        (text, value, scalar(text))
        for text, value in YAML_12_CORE
        if scalar(text) != value or type(scalar(text)) is not type(value)
    ]
    assert wrong == []
    nan = scalar(".NaN")
    assert isinstance(nan, float)
    assert math.isnan(nan)


# --- booleans are true and false ---------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", "no", "on", "off", "y", "Y", "1", "0", '"true"', '"yes"'])
def test_only_true_and_false_are_booleans(value: str) -> None:
    (problem,) = problems(f"version: 1\nsettings:\n  dry_run: {value}\n")
    assert problem.startswith("p.yaml:3:12: settings.dry_run: expected a boolean; found ")
    assert "only true and false are booleans" in problem


@pytest.mark.parametrize("value", ["yes", "on", "1", '"true"'])
def test_oom_killed_shorthand_is_true_only(value: str) -> None:
    (problem,) = problems(
        f"rules:\n  - name: r\n    when: {{oom_killed: {value}}}\n    do: [{{oom_score_adj: 1}}]\n"
    )
    assert problem.startswith("p.yaml:3:24: rules[0].when.oom_killed: expected true or {scope:")


# --- quoted numbers are text -------------------------------------------------------------


QUOTED_NUMBERS = [
    ('settings: {max_actions_per_minute: "5"}', "1:36", "settings.max_actions_per_minute"),
    (
        "rules: [{name: r, when: {oom_killed: true}, max_restarts: {count: '3', per: 1h},"
        " do: [{restart: {}}]}]",
        "1:67",
        "rules[0].max_restarts.count",
    ),
    ("rules: [{name: r, do: [{oom_score_adj: '-900'}]}]", "1:40", "rules[0].do[0].oom_score_adj"),
    (
        "rules: [{name: r, when: {memory_above: {percent: '80'}}, do: [{oom_score_adj: 1}]}]",
        "1:50",
        "rules[0].when.memory_above.percent",
    ),
]


@pytest.mark.parametrize(("text", "where", "path"), QUOTED_NUMBERS)
def test_a_quoted_number_is_not_a_number(text: str, where: str, path: str) -> None:
    (problem,) = problems(text + "\n")
    assert problem.startswith(f"p.yaml:{where}: {path}: expected a"), problem
    assert "(quoted, so text: write the number without quotes)" in problem


def test_yaml_11_number_forms_are_not_numbers() -> None:
    found = problems("settings: {max_actions_per_minute: 1:30}\n")
    assert found == [
        'p.yaml:1:36: settings.max_actions_per_minute: expected an integer; found "1:30"'
    ]
    for text, value in (("010", 10), ("0o17", 15), ("0x1F", 31)):
        policy = load_policy(f"settings: {{max_actions_per_minute: {text}}}\n", "p")
        assert policy.settings.max_actions_per_minute == value


# --- text keeps its text -----------------------------------------------------------------


def test_numbers_written_as_text_keep_their_text() -> None:
    policy = load_policy((POLICIES / "yaml12.yaml").read_text(), "yaml12.yaml")
    assert policy.settings.max_actions_per_minute == 16
    assert list(policy.notifiers) == ["010"]
    hook = policy.notifiers["010"]
    assert isinstance(hook, WebhookNotifier)
    assert hook.headers == {"X-Retry": "3", "X-Version": "1.10"}
    (rule,) = policy.rules
    assert rule.name == "2024.1"
    assert rule.match.image == "1e3"
    assert rule.match.labels == {
        "version": "1.10",
        "build": "010",
        "enabled": "yes",
        "region": "on",
        "zone": "1:30",
    }
    assert rule.match.exclude[0].labels == {"canary": "true"}
    notify, run = rule.do
    assert isinstance(notify, NotifyAction)
    assert notify.notify == "010"
    assert isinstance(run, RunAction)
    assert run.run.command == ["/usr/local/bin/dump", "--seconds", "10"]


def test_the_effective_policy_quotes_what_a_yaml_reader_would_misread() -> None:
    policy = load_policy((POLICIES / "yaml12.yaml").read_text(), "yaml12.yaml")
    text = render_yaml(effective_document(policy))
    for line in ("image: '1e3'", "version: '1.10'", "enabled: 'yes'", "zone: '1:30'"):
        assert line in text
    assert load_policy(text, "effective.yaml") == policy


def test_text_takes_numbers_as_written_never_null_or_booleans() -> None:
    policy = load_policy(
        "rules: [{name: r, match: {labels: {v: 1.10}, image: ~, name: null},"
        " do: [{oom_score_adj: 1}]}]",
        "p",
    )
    match = policy.rules[0].match
    assert (match.labels, match.image, match.name) == ({"v": "1.10"}, None, None)
    assert problems("rules: [{name: r, match: {labels: {team: ~}}, do: [{oom_score_adj: 1}]}]") == [
        "p.yaml:1:42: rules[0].match.labels.team: expected a string; found null"
    ]
    assert problems("settings: {state: null}") == [
        "p.yaml:1:19: settings.state: expected a string; found null"
    ]
    assert problems(
        "rules: [{name: r, match: {labels: {canary: true}}, do: [{oom_score_adj: 1}]}]"
    ) == ["p.yaml:1:44: rules[0].match.labels.canary: expected a string; found true"]


# --- tags, overflow ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!timestamp 2001-12-14", "expected a plain value (YAML 1.2 core schema)"),
        ("!!binary aGVsbG8=", "expected a plain value (YAML 1.2 core schema)"),
        ("!!python/object:os.system ls", "expected a plain value (YAML 1.2 core schema)"),
        ("!!bool maybe", "expected a YAML bool; found 'maybe'"),
        ("!!int 1e3", "expected a YAML int; found '1e3'"),
    ],
)
def test_other_tags_are_errors_with_a_place(value: str, message: str) -> None:
    (problem,) = problems(f"settings:\n  state: {value}\n")
    assert problem.startswith(f"p.yaml:2:10: settings.state: {message}")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (".inf", "at most 100 years; found .inf"),
        ("1e400", "at most 100 years; found 1e400"),
        (".nan", "at most 100 years; found .nan"),
        ("1e20", "at most 100 years; found 1e20"),
        ("99999999999999999999d", "at most 100 years"),
    ],
)
def test_durations_that_overflow_are_errors(value: str, expected: str) -> None:
    (problem,) = problems(f"settings: {{sample_interval: {value}}}\n")
    assert problem.startswith("p.yaml:1:29: settings.sample_interval: expected a duration of")
    assert expected in problem


@pytest.mark.parametrize("value", ["99999999999999999999999", "9999999999999P"])
def test_sizes_that_overflow_are_errors(value: str) -> None:
    (problem,) = problems(
        f"rules: [{{name: r, when: {{memory_above: {{bytes: {value}}}}}, "
        "do: [{oom_score_adj: 1}]}]\n"
    )
    assert problem.startswith("p.yaml:1:48: rules[0].when.memory_above.bytes: expected a size")


# --- bombs and sizes, run under a 512 MiB address-space limit ----------------------------

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""

MERGE_BOMB = (
    "a0: &a0 {"
    + ", ".join(f"k{i}: v" for i in range(10))
    + "}\n"
    + "".join(
        f"a{n}: &a{n} {{" + ", ".join(f"m{i}: {{<<: *a{n - 1}}}" for i in range(10)) + "}\n"
        for n in range(1, 9)
    )
)

ALIAS_CHAIN = "b0: &b0 [x]\n" + "".join(f"b{n}: &b{n} [*b{n - 1}]\n" for n in range(1, 60))

_LIMITED = """\
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))
from sentinel.cli import main
sys.exit(main(sys.argv[1:]))
"""


def check_limited(path: str) -> subprocess.CompletedProcess[str]:
    """``sentinel check PATH`` in a process that cannot grow past 512 MiB."""
    return subprocess.run(
        [sys.executable, "-c", _LIMITED, "check", path],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_billion_laughs_is_refused_small_and_fast(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 400
    done = check_limited(str(path))
    assert "Traceback" not in done.stderr
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        f"{path}:5:4: expected a policy of at most {MAX_VALUES} values, aliases (*name) and "
        "merge keys (<<) expanded; found more here (an alias bomb?)\n"
    ), done.stderr
    assert done.stdout == ""


def test_merge_key_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(MERGE_BOMB)
    done = check_limited(str(path))
    assert "Traceback" not in done.stderr
    assert done.returncode == 2, done.stderr
    assert f"expected a policy of at most {MAX_VALUES} values" in done.stderr
    assert done.stderr.startswith(f"{path}:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000, "1:51: expected values nested at most 50 levels deep"),
        ("rules: [" + ",".join(["1"] * 50_000) + "]", "expected a policy of at most"),
        (ALIAS_CHAIN, "levels deep"),
    ],
    ids=["deep", "wide", "alias-chain"],
)  # fmt: skip
def test_deep_or_wide_documents_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text + "\n")
    done = check_limited(str(path))
    assert "Traceback" not in done.stderr
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"{path}:"), done.stderr
    assert message in done.stderr.splitlines()[0]


@pytest.mark.parametrize("source", ["large", "/dev/zero"])
def test_a_file_over_1_mib_is_refused_unread(tmp_path: Path, source: str) -> None:
    if source == "large":
        path = tmp_path / "large.yaml"
        path.write_text("# " + "x" * (1 << 20) + "\nversion: 1\n")
        source = str(path)
    done = check_limited(source)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        f"{source}:1:1: expected a policy of at most 1 MiB (1048576 bytes); found a larger file\n"
    )


def test_in_process_the_loader_refuses_the_bomb_at_its_line(tmp_path: Path) -> None:
    """The same through the API, only once a limited process showed it stays small (a
    loader that expands the bomb would take this test process to 1.2 GB)."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    proof = check_limited(str(path))
    assert proof.returncode == 2, "not run in-process: the limited process did not refuse it"
    with pytest.raises(PolicyError) as info:
        load_policy(BILLION_LAUGHS, "bomb.yaml")
    ((file, line, column, path),) = [
        (p.file, p.line, p.column, p.path) for p in info.value.problems
    ]
    assert (file, line, column, path) == ("bomb.yaml", 5, 4, "")
    # and a policy just under the limit is no bomb
    labels = ", ".join(f"l{i}: v" for i in range(MAX_VALUES // 2 - 20))
    policy = load_policy(
        f"rules: [{{name: r, match: {{labels: {{{labels}}}}}, do: [{{oom_score_adj: 1}}]}}]\n", "p"
    )
    assert len(policy.rules[0].match.labels) == MAX_VALUES // 2 - 20


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("\x00" * 64, "1:1"),
        ('version: 1\nsettings:\n  state: "a\x00b"\n', "3:12"),
        ("a: \x07\n", "1:4"),
    ],
    ids=["nuls", "nul-in-a-string", "bell"],
)
def test_control_characters_are_yaml_errors_with_a_place(text: str, where: str) -> None:
    (problem,) = problems(text)
    assert problem.startswith(f"p.yaml:{where}: YAML syntax error: special characters"), problem
