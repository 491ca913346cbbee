"""The ``slack`` notifier: renders a notification and posts it (the outbox retries).

The secret is read when a message is sent (from the environment or a file), never earlier
and never kept anywhere but in the client in memory: the outbox holds the neutral payload.
With ``thread_per_target``, the first message about a target starts its thread (its ``ts``
is kept in the state) and later ones reply there; kills and escalations are also shown in
the channel (``reply_broadcast``). Storms are posted at the top level.

Building a sender tells :mod:`sentinel.redact` which variable (and file contents) holds its
secret: from then on it is scrubbed from every error and hook output, and kept from hooks'
environments. A secret with a line break or space inside, or a webhook URL that is not
http(s), is refused with one line naming the notifier and where the secret came from.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sentinel import redact
from sentinel.clients.slack import SlackClient, problem
from sentinel.errors import SentinelError
from sentinel.notifiers.slack_render import render
from sentinel.policy.model import SlackNotifier
from sentinel.store import Store

STORM_WINDOW = 60.0
"""Kills within this many seconds of one told are grouped (see notifiers.delivery)."""

ClientFactory = Callable[..., SlackClient]


class SlackSender:
    storm_window = STORM_WINDOW

    def __init__(
        self,
        name: str,
        config: SlackNotifier,
        store: Store | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        client_factory: ClientFactory = SlackClient,
    ) -> None:
        self.name = name
        self.config = config
        self.store = store
        self.environ = environ if environ is not None else os.environ
        self.clock = clock
        self._factory = client_factory
        self._client: SlackClient | None = None
        self._secret: str | None = None
        redact.remember_env([config.token_env or "", config.webhook_url_env or ""], self.environ)
        if config.token_file is not None:
            # known from the start, so that a hook run before the first message cannot show
            # it; a file that cannot be read is reported when a message is sent
            with contextlib.suppress(OSError, UnicodeDecodeError):
                redact.remember(Path(config.token_file).read_text(encoding="utf-8"))

    def _read_secret(self) -> tuple[str, str]:
        """``("token" | "webhook_url", value)``, read now (a rotated secret is picked up)."""
        c = self.config
        if c.token_file is not None:
            try:
                value = Path(c.token_file).read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise SentinelError(
                    f"notifier {self.name}: token_file {c.token_file} is not UTF-8 text"
                ) from None
            except OSError as e:
                raise SentinelError(
                    f"notifier {self.name}: cannot read token_file {c.token_file}: "
                    f"{e.strerror or e}"
                ) from None
            redact.remember(value)
            value = value.strip()
            if not value:
                raise SentinelError(f"notifier {self.name}: token_file {c.token_file} is empty")
            return "token", self._checked("token", value, f"token_file {c.token_file}")
        env = c.token_env or c.webhook_url_env
        assert env is not None
        value = self.environ.get(env, "")
        redact.remember(value)
        value = value.strip()
        if not value:
            raise SentinelError(
                f"notifier {self.name}: environment variable {env} is not set (or empty)"
            )
        kind = "token" if c.token_env else "webhook_url"
        return kind, self._checked(kind, value, f"environment variable {env}")

    def _checked(self, kind: str, value: str, where: str) -> str:
        why = problem(kind, value)
        if why is not None:
            what = "a Slack token" if kind == "token" else "a Slack webhook URL"
            raise SentinelError(f"notifier {self.name}: {where} holds {what} that {why}")
        return value

    def client(self) -> SlackClient:
        kind, secret = self._read_secret()
        if self._client is None or secret != self._secret:
            args: dict[str, Any] = {kind: secret}
            self._client = self._factory(
                **args, api_url=self.config.api_url, timeout=float(self.config.timeout)
            )
            self._secret = secret
        return self._client

    def send(self, notification: Mapping[str, Any]) -> None:
        message = render(notification, mention=self.config.mention)
        client = self.client()
        channel = self.config.channel
        kind = notification.get("kind")
        target_id = (notification.get("target") or {}).get("id")
        thread: tuple[Store, str, str] | None = None  # where this target's thread is kept
        if (
            self.config.thread_per_target
            and client.threads
            and self.store is not None
            and channel is not None
            and isinstance(target_id, str)
            and kind not in ("storm", "test")
        ):
            thread = (self.store, channel, target_id)
        thread_ts = thread[0].thread(self.name, thread[1], thread[2]) if thread else None
        ts = client.post_message(
            channel=channel,
            text=message["text"],
            blocks=message["blocks"],
            thread_ts=thread_ts,
            reply_broadcast=thread_ts is not None and kind in ("kill", "escalation"),
        )
        if thread is not None and thread_ts is None and ts is not None:
            now = self.clock() if self.clock is not None else float(notification.get("at") or 0)
            thread[0].set_thread(self.name, thread[1], thread[2], ts, now)
