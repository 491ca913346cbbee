"""Send what the outbox holds; keep what was not accepted, and try again later.

A sender raises :class:`~sentinel.errors.TemporaryError` (its ``delay`` honoured, e.g. a
``Retry-After``) for what may work later, and any other
:class:`~sentinel.errors.SentinelError` for what will not (a bad token): that item is
retried at the slowest pace rather than dropped, so that fixing the configuration and
restarting delivers it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from sentinel.errors import SentinelError, TemporaryError
from sentinel.store import Store

log = logging.getLogger(__name__)

BACKOFF_START = 1.0
BACKOFF_MAX = 300.0


class Sender(Protocol):
    name: str

    def send(self, notification: Mapping[str, Any]) -> None: ...


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: 1, 2, 4 ... 300."""
    return float(min(BACKOFF_MAX, BACKOFF_START * 2 ** max(0, attempts)))


def deliver(store: Store, senders: Mapping[str, Sender], now: float) -> tuple[int, int]:
    """Send every due notification once; returns (sent, failed)."""
    sent = failed = 0
    blocked: set[str] = set()  # a notifier that failed now is not tried again this round
    for item in store.due(now):
        if item.notifier in blocked:
            continue
        sender = senders.get(item.notifier)
        if sender is None:
            store.mark_failed(
                item.id, error=f"no notifier named {item.notifier!r}", retry_at=now + BACKOFF_MAX
            )
            failed += 1
            continue
        try:
            sender.send(item.payload)
        except TemporaryError as e:
            delay = max(e.delay, backoff(item.attempts))
            store.mark_failed(item.id, error=str(e), retry_at=now + delay)
            blocked.add(item.notifier)
            failed += 1
            log.warning("notifier %s: %s (retry in %.0fs)", item.notifier, e, delay)
            continue
        except SentinelError as e:
            store.mark_failed(item.id, error=str(e), retry_at=now + BACKOFF_MAX)
            blocked.add(item.notifier)
            failed += 1
            log.error("notifier %s: %s (retry in %.0fs)", item.notifier, e, BACKOFF_MAX)
            continue
        store.mark_sent(item.id, now)
        sent += 1
    return sent, failed
