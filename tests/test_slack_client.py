"""sentinel.clients.slack against a local Slack-compatible server, through the real slack_sdk."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from sentinel.clients.slack import REDACTED, SlackClient, SlackRejected, redact
from sentinel.errors import TemporaryError
from slack_server import CHANNEL, TOKEN, SlackServer, slack_server

BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]


@pytest.fixture
def server() -> Iterator[SlackServer]:
    with slack_server() as s:
        yield s


def client(server: SlackServer, token: str = TOKEN) -> SlackClient:
    return SlackClient(token=token, api_url=server.api_url, timeout=5)


def test_post_message_reaches_the_server_with_the_token(server: SlackServer) -> None:
    ts = client(server).post_message(channel=CHANNEL, text="hello", blocks=BLOCKS)
    (message,) = server.messages
    assert message.ts == ts
    assert message.text == "hello"
    assert message.blocks == BLOCKS
    assert server.requests[-1]["authorization"] == f"Bearer {TOKEN}"


def test_thread_reply_and_broadcast(server: SlackServer) -> None:
    c = client(server)
    ts = c.post_message(channel=CHANNEL, text="a", blocks=BLOCKS)
    c.post_message(channel=CHANNEL, text="b", blocks=BLOCKS, thread_ts=ts, reply_broadcast=True)
    assert server.messages[1].thread_ts == ts
    assert server.messages[1].reply_broadcast


def test_rate_limit_is_temporary_with_retry_after(server: SlackServer) -> None:
    server.fail_next(429, retry_after=7)
    with pytest.raises(TemporaryError) as info:
        client(server).post_message(channel=CHANNEL, text="x", blocks=BLOCKS)
    assert info.value.delay == 7
    assert "rate limited" in str(info.value)
    assert not server.messages


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_temporary(server: SlackServer, status: int) -> None:
    server.fail_next(status, retry_after=3)
    with pytest.raises(TemporaryError) as info:
        client(server).post_message(channel=CHANNEL, text="x", blocks=BLOCKS)
    assert info.value.delay == 3


def test_bad_token_is_permanent_and_redacted(server: SlackServer) -> None:
    bad = "xoxb-9999-8888-NOTtheRIGHTtoken"
    with pytest.raises(SlackRejected) as info:
        client(server, bad).post_message(channel=CHANNEL, text="x", blocks=BLOCKS)
    assert info.value.error == "invalid_auth"
    assert not isinstance(info.value, TemporaryError)
    assert bad not in str(info.value)
    assert bad not in repr(client(server, bad))


def test_unknown_channel_is_permanent(server: SlackServer) -> None:
    with pytest.raises(SlackRejected) as info:
        client(server).post_message(channel="C0NOPE", text="x", blocks=BLOCKS)
    assert info.value.error == "channel_not_found"


def test_broken_limits_are_rejected_like_slack_does(server: SlackServer) -> None:
    huge = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    with pytest.raises(SlackRejected) as info:
        client(server).post_message(channel=CHANNEL, text="x", blocks=huge)
    assert info.value.error == "invalid_blocks"


def test_server_away_is_temporary(server: SlackServer) -> None:
    c = client(server)
    server.down()
    with pytest.raises(TemporaryError) as info:
        c.post_message(channel=CHANNEL, text="x", blocks=BLOCKS)
    assert "cannot reach Slack" in str(info.value)
    assert TOKEN not in str(info.value)


def test_debug_logging_never_shows_the_token(
    server: SlackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.fail_next(500)
    c = client(server)
    with pytest.raises(TemporaryError):
        c.post_message(channel=CHANNEL, text="x", blocks=BLOCKS)
    c.post_message(channel=CHANNEL, text="x", blocks=BLOCKS)
    assert TOKEN not in caplog.text


def test_incoming_webhook(server: SlackServer) -> None:
    hook = SlackClient(webhook_url=server.webhook_url, timeout=5)
    assert not hook.threads
    assert hook.post_message(channel=None, text="hi", blocks=BLOCKS) is None
    assert server.messages[0].via == "webhook"
    server.fail_next(429, retry_after=4)
    with pytest.raises(TemporaryError) as info:
        hook.post_message(channel=None, text="hi", blocks=BLOCKS)
    assert info.value.delay == 4
    wrong = SlackClient(webhook_url=server.webhook_url + "x", timeout=5)
    with pytest.raises(SlackRejected) as rejected:
        wrong.post_message(channel=None, text="hi", blocks=BLOCKS)
    assert "WEBHOOKsecret" not in str(rejected.value)


def test_auth_test(server: SlackServer) -> None:
    assert client(server).auth_test()["team"] == "sentinel-test"


def test_redact_hides_token_shapes_and_given_secrets() -> None:
    text = "token xoxb-123-456-abc and https://hooks.slack.com/services/T/B/X and s3cret"
    out = redact(text, "s3cret")
    assert "xoxb-123" not in out
    assert "services/T/B/X" not in out
    assert "s3cret" not in out
    assert out.count(REDACTED) == 3
