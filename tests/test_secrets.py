"""Secrets never reach a terminal, a log, the state or a message (#9, item 1).

Real parts only: the outbox in a real SQLite state file, the real ``slack_sdk`` and urllib
against HTTP servers on 127.0.0.1, real hook processes, the real ``sentinel`` command. Each
test greps the bytes that would leak (the state files, the captured log, stderr) for the
secret itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sentinel import redact
from sentinel.actions import Clients, execute, hook
from sentinel.actions._log import action_line
from sentinel.clients.slack import SlackClient, SlackRejected
from sentinel.errors import SentinelError
from sentinel.model import Target
from sentinel.notifiers.delivery import deliver
from sentinel.notifiers.slack import SlackSender
from sentinel.notifiers.webhook import WebhookSender
from sentinel.policy import Decision
from sentinel.policy.model import RunAction, RunSpec, SlackNotifier, WebhookNotifier
from sentinel.store import Store
from slack_server import CHANNEL, TOKEN, WEBHOOK_PATH, SlackServer, slack_server

SENTINEL = Path(sys.executable).parent / "sentinel"
NOTE = {"kind": "test", "text": "hello", "at": 1000.0, "host": "node"}
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]


# -- a plain HTTP server that records every request and answers as told -----------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Http:
    """Answers every request with ``status`` (a redirect to ``location`` for a 3xx) and
    records it; 200 answers carry a Slack ``ok`` body so a followed redirect succeeds."""

    status: int = 200
    location: str = ""
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def serving(state: Http) -> Iterator[Http]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            state.seen.append(Seen(self.command, self.path, dict(self.headers.items())))
            body = json.dumps({"ok": True, "ts": "1.000001"}).encode()
            self.send_response(state.status)
            if 300 <= state.status < 400:
                self.send_header("Location", state.location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def http() -> Iterator[Http]:
    with serving(Http()) as state:
        yield state


@pytest.fixture
def target() -> Iterator[Http]:
    """Where the redirects point: must see nothing."""
    with serving(Http()) as state:
        yield state


@pytest.fixture
def server() -> Iterator[SlackServer]:
    with slack_server() as s:
        yield s


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


def state_bytes(tmp_path: Path) -> bytes:
    """Every byte of the state: the database and its WAL and SHM files."""
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("state.db*")))


def deliver_once(store: Store, sender: Any) -> tuple[int, int]:
    store.enqueue(dedupe_key="k1", notifier=sender.name, payload=NOTE, now=1000.0)
    return deliver(store, {sender.name: sender}, 1000.0)


def last_error(store: Store) -> str:
    (item,) = store.due(1e12)
    assert item.last_error is not None
    return item.last_error


def assert_nowhere(secret: str, tmp_path: Path, *texts: str) -> None:
    assert secret.encode() not in state_bytes(tmp_path), "the secret is in the state"
    for text in texts:
        assert secret not in text


# -- Slack: the secret as given, wrong -----------------------------------------------------


def test_slack_webhook_url_without_scheme_is_refused_and_kept_out_of_state_and_log(
    tmp_path: Path, state: Store, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "WEBHOOKsecretWEBHOOKsecret"
    environ = {"SLACK_WEBHOOK_URL": f"hooks.slack.com{WEBHOOK_PATH}\n"}
    config = SlackNotifier(type="slack", webhook_url_env="SLACK_WEBHOOK_URL")
    sender = SlackSender("team", config, state, environ=environ)
    caplog.set_level(logging.DEBUG)
    assert deliver_once(state, sender) == (0, 1)
    error = last_error(state)
    assert error == (
        "notifier team: environment variable SLACK_WEBHOOK_URL holds a Slack webhook URL "
        "that is not an http:// or https:// URL"
    )
    state.close()
    assert_nowhere(secret, tmp_path, caplog.text)
    assert "Traceback" not in caplog.text


def test_slack_token_file_with_two_lines_is_refused_without_its_contents(
    tmp_path: Path, state: Store, server: SlackServer, caplog: pytest.LogCaptureFixture
) -> None:
    token_file = tmp_path / "slack-token"
    token_file.write_text(f"{TOKEN}\nsecond-line-SECRETpart\n")
    config = SlackNotifier(
        type="slack", token_file=str(token_file), channel=CHANNEL, api_url=server.api_url
    )
    sender = SlackSender("team", config, state, environ={})
    caplog.set_level(logging.DEBUG)
    assert deliver_once(state, sender) == (0, 1)
    error = last_error(state)
    assert error.startswith(f"notifier team: token_file {token_file} holds a Slack token that")
    assert not server.requests, "a malformed token must not be sent"
    state.close()
    for secret in (TOKEN, "second-line-SECRETpart"):
        assert_nowhere(secret, tmp_path, caplog.text)


def test_slack_token_with_a_line_break_inside_is_refused_a_trailing_one_stripped(
    server: SlackServer,
) -> None:
    config = SlackNotifier(
        type="slack", token_env="SLACK_BOT_TOKEN", channel=CHANNEL, api_url=server.api_url
    )
    # ... and a token with a newline inside is refused, naming the variable only
    inside = SlackSender("team", config, environ={"SLACK_BOT_TOKEN": TOKEN[:9] + "\n" + TOKEN[9:]})
    with pytest.raises(SentinelError) as info:
        inside.send(NOTE)
    assert "environment variable SLACK_BOT_TOKEN" in str(info.value)
    assert TOKEN[9:] not in str(info.value)
    SlackSender("team", config, environ={"SLACK_BOT_TOKEN": TOKEN + "\n"}).send(NOTE)
    assert server.requests[-1]["authorization"] == f"Bearer {TOKEN}"


# -- redirects: a 3xx is a failure, the secret does not follow --------------------------


@pytest.mark.parametrize("status", [301, 302, 303])
def test_slack_api_redirect_fails_and_the_token_stays_home(
    http: Http, target: Http, status: int
) -> None:
    http.status, http.location = status, target.url("/api/chat.postMessage?steal=1")
    client = SlackClient(token=TOKEN, api_url=http.url("/api/"), timeout=5)
    with pytest.raises(SlackRejected) as info:
        client.post_message(channel=CHANNEL, text="x", blocks=BLOCKS)
    assert f"HTTP {status}" in str(info.value)
    assert "redirect" in str(info.value)
    assert len(http.seen) == 1
    assert target.seen == [], "the redirect was followed"


@pytest.mark.parametrize("status", [301, 302, 303])
def test_slack_incoming_webhook_redirect_fails(http: Http, target: Http, status: int) -> None:
    http.status, http.location = status, target.url(WEBHOOK_PATH)
    client = SlackClient(webhook_url=http.url(WEBHOOK_PATH), timeout=5)
    with pytest.raises(SlackRejected) as info:
        client.post_message(channel=None, text="x", blocks=BLOCKS)
    assert f"HTTP {status}" in str(info.value)
    assert "WEBHOOKsecret" not in str(info.value)
    assert target.seen == [], "the redirect was followed"


@pytest.mark.parametrize("status", [301, 302, 303])
def test_webhook_redirect_fails_and_its_headers_stay_home(
    http: Http, target: Http, status: int
) -> None:
    http.status, http.location = status, target.url("/elsewhere?session=LOCATIONsecret")
    config = WebhookNotifier(
        type="webhook", url=http.url(), headers={"Authorization": "Bearer ${PAGER_TOKEN}"}
    )
    sender = WebhookSender("pager", config, environ={"PAGER_TOKEN": "PAGERtoken12345"})
    with pytest.raises(SentinelError) as info:
        sender.send(NOTE)
    message = str(info.value)
    assert f"answered HTTP {status}, a redirect to {target.url('/elsewhere')}?***" in message
    assert "LOCATIONsecret" not in message
    assert http.seen[0].headers["Authorization"] == "Bearer PAGERtoken12345"
    assert target.seen == [], "the redirect was followed"


# -- webhooks: only http(s), variables that must be set, URLs shown redacted ------------


@pytest.mark.parametrize(
    "value",
    ["file:///etc/hostname", "example.invalid/hook?key=SCHEMELESSsecret\n"],
)
def test_webhook_url_env_must_be_http(
    tmp_path: Path, state: Store, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    config = WebhookNotifier(type="webhook", url_env="PAGER_URL")
    sender = WebhookSender("pager", config, environ={"PAGER_URL": value})
    caplog.set_level(logging.DEBUG)
    assert deliver_once(state, sender) == (0, 1)
    assert last_error(state) == (
        "notifier pager: environment variable PAGER_URL is not an http:// or https:// URL"
    )
    state.close()
    assert_nowhere(value.strip(), tmp_path, caplog.text)
    assert "Traceback" not in caplog.text


def test_webhook_header_variable_unset_is_an_error_and_nothing_is_sent(http: Http) -> None:
    config = WebhookNotifier(
        type="webhook", url=http.url(), headers={"Authorization": "Bearer ${PAGER_TOKEN}"}
    )
    with pytest.raises(SentinelError) as info:
        WebhookSender("pager", config, environ={}).send(NOTE)
    assert str(info.value) == (
        "notifier pager: header Authorization: environment variable PAGER_TOKEN is not set "
        "(or empty)"
    )
    assert http.seen == []


def test_webhook_header_secret_with_a_line_break_is_refused_unseen(
    http: Http, tmp_path: Path, state: Store, caplog: pytest.LogCaptureFixture
) -> None:
    config = WebhookNotifier(
        type="webhook", url=http.url(), headers={"Authorization": "Bearer ${PAGER_TOKEN}"}
    )
    environ = {"PAGER_TOKEN": "HEADERsecret\r\nX-Injected: yes"}
    sender = WebhookSender("pager", config, environ=environ)
    caplog.set_level(logging.DEBUG)
    assert deliver_once(state, sender) == (0, 1)
    assert "environment variable PAGER_TOKEN has a line break" in last_error(state)
    assert http.seen == []
    state.close()
    assert_nowhere("HEADERsecret", tmp_path, caplog.text)


def test_webhook_url_userinfo_and_query_are_redacted_and_userinfo_is_basic_auth(
    http: Http, tmp_path: Path, state: Store, caplog: pytest.LogCaptureFixture
) -> None:
    http.status = 500
    url = f"http://alice:PASSWORDsecret@127.0.0.1:{http.port}/hook?token=QUERYsecret"
    sender = WebhookSender("pager", WebhookNotifier(type="webhook", url=url), environ={})
    caplog.set_level(logging.DEBUG)
    assert deliver_once(state, sender) == (0, 1)
    assert last_error(state).startswith(
        f"notifier pager: http://***@127.0.0.1:{http.port}/hook?*** answered HTTP 500"
    )
    (seen,) = http.seen
    assert seen.path == "/hook?token=QUERYsecret"
    basic = base64.b64encode(b"alice:PASSWORDsecret").decode()
    assert seen.headers["Authorization"] == f"Basic {basic}"
    state.close()
    for secret in ("PASSWORDsecret", "QUERYsecret", basic):
        assert_nowhere(secret, tmp_path, caplog.text)


def test_notify_test_with_a_bad_url_env_says_one_line_without_the_value(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nnotifiers:\n  pager: {type: webhook, url_env: PAGER_URL}\n")
    env = {**os.environ, "PAGER_URL": "hooks.example.invalid/x?key=CLIsecret"}
    done = subprocess.run(
        [str(SENTINEL), "notify", "--test", "pager", "-c", str(policy)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "CLIsecret" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert "environment variable PAGER_URL is not an http:// or https:// URL" in done.stderr


def test_policy_printed_back_hides_url_userinfo_and_query(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nnotifiers:\n"
        "  pager: {type: webhook, url: 'https://bob:PWsecret1@example.invalid/h?k=Qsecret1'}\n"
        "  team: {type: slack, token_env: SLACK_BOT_TOKEN, channel: C1,"
        " api_url: 'https://proxy.invalid/api/?key=APIsecret1'}\n"
    )
    done = subprocess.run(
        [str(SENTINEL), "check", str(policy)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for secret in ("PWsecret1", "Qsecret1", "APIsecret1"):
        assert secret not in done.stdout + done.stderr
    assert "https://***@example.invalid/h?***" in done.stdout


# -- hooks: an environment without sentinel's secrets, output scrubbed -------------------

LIST_ENV = (
    "import hashlib, json, os; print(json.dumps({k: hashlib.sha256(v.encode()).hexdigest() "
    "for k, v in os.environ.items()}))"
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_hook_environment_lacks_sentinels_secrets_unless_a_rule_passes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets = {
        "SLACK_BOT_TOKEN": TOKEN,
        "HOOK_TEST_PAGER_URL": "https://pager.invalid/hook/URLsecret1",
        "HOOK_TEST_PAGER_TOKEN": "HEADERsecret2",
        "HOOK_TEST_SLACK_HOOK": f"https://hooks.slack.com{WEBHOOK_PATH}",
        "HOOK_TEST_HOLDS_A_TOKEN": "xoxp-123-456-someoneElsesToken",
    }
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HOOK_TEST_PLAIN", "nothing secret")
    WebhookSender(
        "pager",
        WebhookNotifier(
            type="webhook",
            url_env="HOOK_TEST_PAGER_URL",
            headers={"Authorization": "Bearer ${HOOK_TEST_PAGER_TOKEN}"},
        ),
    )
    SlackSender("team", SlackNotifier(type="slack", webhook_url_env="HOOK_TEST_SLACK_HOOK"))
    target = Target(id="t", name="t", runtime="process")
    command = [sys.executable, "-S", "-c", LIST_ENV]

    result = hook.run(target, command, 10.0, dry_run=False)
    assert result.ok, result
    seen = json.loads(result.detail["stdout"])
    assert seen["HOOK_TEST_PLAIN"] == sha("nothing secret")
    assert seen["SENTINEL_TARGET_ID"] == sha("t")
    leaked = sorted(set(secrets) & set(seen))
    assert leaked == [], f"the hook saw {leaked}"

    passed = hook.run(target, command, 10.0, dry_run=False, pass_env=["HOOK_TEST_PAGER_TOKEN"])
    seen = json.loads(passed.detail["stdout"])
    assert seen["HOOK_TEST_PAGER_TOKEN"] == sha("HEADERsecret2")
    assert "SLACK_BOT_TOKEN" not in seen


def test_hook_output_is_scrubbed_of_known_secrets_in_the_result_and_the_log(
    tmp_path: Path, server: SlackServer
) -> None:
    # a token that looks like no Slack token: only known because the sender read its file
    token = "corpPROXYtoken-0123456789abcdef"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    SlackSender(
        "team",
        SlackNotifier(
            type="slack", token_file=str(token_file), channel=CHANNEL, api_url=server.api_url
        ),
        environ={},
    )
    late = "PAGERsecretAcrossTheCut"  # lands across the MAX_OUTPUT cut
    WebhookSender(
        "pager",
        WebhookNotifier(type="webhook", url="http://127.0.0.1:9/", headers={"X": "${LATE}"}),
        environ={"LATE": late},
    )
    said = tmp_path / "said"  # what the hook prints, kept out of its command line
    said.write_text("see https://u:USERINFOsecret@example.invalid/x?sig=QUERYsecret3")
    tail = tmp_path / "tail"
    tail.write_text("x" * (hook.MAX_OUTPUT - 10) + late)
    code = (
        "import sys; "
        f"print(open({str(token_file)!r}).read()); "
        f"print(open({str(said)!r}).read()); "
        f"sys.stderr.write(open({str(tail)!r}).read())"
    )
    target = Target(id="t", name="t", runtime="process")
    result = hook.run(target, [sys.executable, "-S", "-c", code], 10.0, dry_run=False)
    assert result.ok, result
    line = action_line(result, target)
    assert "https://***@example.invalid/x?***" in result.detail["stdout"]
    assert len(result.detail["stderr"]) == hook.MAX_OUTPUT
    for secret in (token, "USERINFOsecret", "QUERYsecret3", late[:10]):
        assert secret not in line
        assert secret not in result.detail["stdout"] + result.detail["stderr"]


# -- the helper itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("https://u:p4ss@h.example:8443/a/b?x=1#f", "https://***@h.example:8443/a/b?***#***"),
        ("http://[::1]:99/x?key=k", "http://[::1]:99/x?***"),
        ("https://h.example/plain", "https://h.example/plain"),
        ("hooks.slack.com/services/T1/B1/x", redact.REDACTED),  # no scheme: not shown at all
        ("http://h.example:port/", redact.REDACTED),  # does not parse
    ],
)
def test_url_is_shown_without_userinfo_query_or_fragment(given: str, shown: str) -> None:
    assert redact.url(given) == shown


def test_scrub_keeps_text_and_hides_what_it_knows() -> None:
    redact.remember("  KNOWNsecret-42\n")
    text = (
        "(see https://a:PWsecret@h.example/x?q=QSsecret). token xoxb-1-2-abc, "
        "KNOWNsecret-42 and https://h.example/fine."
    )
    assert redact.scrub(text) == (
        "(see https://***@h.example/x?***). token [redacted], [redacted] and "
        "https://h.example/fine."
    )


def test_a_rules_pass_env_reaches_the_hook_the_daemon_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The daemon runs hooks through sentinel.actions.execute: the rule's pass_env must
    # travel that way too, or a rule can never hand its hook the secret it names.
    monkeypatch.setenv("HOOK_TEST_PAGER_TOKEN", "HEADERsecret2")
    WebhookSender(
        "pager",
        WebhookNotifier(
            type="webhook",
            url="https://pager.invalid/hook",
            headers={"Authorization": "Bearer ${HOOK_TEST_PAGER_TOKEN}"},
        ),
    )
    target = Target(id="t", name="t", runtime="process")
    command = [sys.executable, "-S", "-c", LIST_ENV]

    def seen(pass_env: list[str]) -> dict[str, Any]:
        action = RunAction(run=RunSpec(command=command, timeout=10.0, pass_env=pass_env))
        decision = Decision(
            rule="page",
            target=target,
            action=action,
            at=0.0,
            reason="test",
            evidence={},
            dry_run=False,
        )
        result = execute(decision, target, clients=Clients(), dry_run=False, recheck=lambda: True)
        assert result.ok, result
        out: dict[str, Any] = json.loads(result.detail["stdout"])
        return out

    assert "HOOK_TEST_PAGER_TOKEN" not in seen([])
    assert seen(["HOOK_TEST_PAGER_TOKEN"])["HOOK_TEST_PAGER_TOKEN"] == sha("HEADERsecret2")
