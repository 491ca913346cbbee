"""Send what the outbox holds; keep what was not accepted, and try again later.

A sender raises :class:`~sentinel.errors.TemporaryError` (its ``delay`` honoured, e.g. a
``Retry-After``) for what may work later, and any other
:class:`~sentinel.errors.SentinelError` for what will not (a bad token): that item is
retried at the slowest pace rather than dropped, so that fixing the configuration and
restarting delivers it.

**Storms.** A sender with a ``storm_window`` (Slack: 60 s) gets kills grouped: a kill
with no other kill told to that notifier within the window goes out at once, alone (the
latency goal holds for the kill that matters most: the first). Kills that come due within
the window after one was told, or several due at once (after an outage), are held until
no new kill has come for ``STORM_QUIET`` seconds (at most ``STORM_HOLD_MAX``), then go out
as one ``storm`` notification listing the whole storm: ``{"kind": "storm", "kills":
[...], "earlier": N}`` where the first ``N`` kills were already told one by one. The
group is accepted or retried as a whole. A group of one is sent as a plain kill.

**Outcomes.** A notify (or escalate) decision is recorded ``queued``; it becomes ``sent``
when every notifier it names has accepted its notification, and ``failed`` when one
refused it for good (a permanent error, or no such notifier): the store does both in the
transaction that marks the outbox item (:meth:`~sentinel.store.Store.mark_sent_all`,
:meth:`~sentinel.store.Store.mark_failed`). A temporary failure leaves it ``queued``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from sentinel import redact
from sentinel.errors import SentinelError, TemporaryError
from sentinel.store import OutboxItem, Store

log = logging.getLogger(__name__)

BACKOFF_START = 1.0
BACKOFF_MAX = 300.0
STORM_QUIET = 3.0
"""A held storm goes out once no new kill has come for this long (seconds)."""
STORM_HOLD_MAX = 30.0
"""... or once its first held kill has waited this long."""


class Sender(Protocol):
    name: str

    def send(self, notification: Mapping[str, Any]) -> None: ...


def _storm_window(sender: Sender) -> float:
    return float(getattr(sender, "storm_window", 0.0) or 0.0)


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: 1, 2, 4 ... 300."""
    return float(min(BACKOFF_MAX, BACKOFF_START * 2 ** max(0, attempts)))


def deliver(store: Store, senders: Mapping[str, Sender], now: float) -> tuple[int, int]:
    """Send every due notification once; returns (sent, failed)."""
    sent = failed = 0
    blocked: set[str] = set()  # a notifier that failed now is not tried again this round
    due = store.due(now)
    grouped: set[int] = set()
    for notifier, group in _storms(store, senders, due, now).items():
        grouped.update(i.id for i in group.held)
        if not group.ready:
            continue
        s, f = _send_storm(store, senders[notifier], group, now)
        sent += s
        failed += f
        if f:
            blocked.add(notifier)
    for item in due:
        if item.notifier in blocked or item.id in grouped:
            continue
        sender = senders.get(item.notifier)
        if sender is None:
            store.mark_failed(
                item.id,
                error=f"no notifier named {item.notifier!r}",
                retry_at=now + BACKOFF_MAX,
                permanent=True,
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
            store.mark_failed(item.id, error=str(e), retry_at=now + BACKOFF_MAX, permanent=True)
            blocked.add(item.notifier)
            failed += 1
            log.error("notifier %s: %s (retry in %.0fs)", item.notifier, e, BACKOFF_MAX)
            continue
        except Exception as e:  # a bug in a sender: keep the item, say so, go on
            error = redact.scrub(f"{type(e).__name__}: {e}")
            store.mark_failed(item.id, error=error, retry_at=now + BACKOFF_MAX, permanent=True)
            failed += 1
            log.error("notifier %s: outbox item %d: %s (a bug)", item.notifier, item.id, error)
            log.debug("notifier %s: the traceback", item.notifier, exc_info=True)
            continue
        store.mark_sent(item.id, now)
        sent += 1
    return sent, failed


class _Storm:
    def __init__(self, held: list[OutboxItem], earlier: list[OutboxItem], ready: bool) -> None:
        self.held = held
        self.earlier = earlier
        self.ready = ready


def _storms(
    store: Store, senders: Mapping[str, Sender], due: list[OutboxItem], now: float
) -> dict[str, _Storm]:
    """Per grouping notifier: the kills to hold as a storm (and whether to send it now)."""
    kills: dict[str, list[OutboxItem]] = {}
    for item in due:
        sender = senders.get(item.notifier)
        if sender is not None and _storm_window(sender) > 0 and item.payload.get("kind") == "kill":
            kills.setdefault(item.notifier, []).append(item)
    out: dict[str, _Storm] = {}
    for notifier, items in kills.items():
        window = _storm_window(senders[notifier])
        recent = [
            i for i in store.sent_since(notifier, now - window) if i.payload.get("kind") == "kill"
        ]
        if not recent and len(items) == 1:
            continue  # a lone kill: at once
        newest = max(i.created_at for i in items)
        oldest = min(i.created_at for i in items)
        ready = now - newest >= STORM_QUIET or now - oldest >= STORM_HOLD_MAX
        # kills told one by one (alone at their time) open the storm's list
        times = [i.sent_at for i in recent]
        alone = [i for i in recent if times.count(i.sent_at) == 1]
        out[notifier] = _Storm(items, alone, ready)
    return out


def _send_storm(store: Store, sender: Sender, group: _Storm, now: float) -> tuple[int, int]:
    items = group.held
    if len(items) == 1:
        notification: Mapping[str, Any] = items[0].payload
    else:
        notification = {
            "kind": "storm",
            "kills": [dict(i.payload) for i in [*group.earlier, *items]],
            "earlier": len(group.earlier),
            "host": items[0].payload.get("host"),
            "at": now,
        }
    try:
        sender.send(notification)
    except TemporaryError as e:
        delay = max(e.delay, backoff(max(i.attempts for i in items)))
        for i in items:
            store.mark_failed(i.id, error=str(e), retry_at=now + delay)
        log.warning("notifier %s: %s (retry in %.0fs)", sender.name, e, delay)
        return 0, len(items)
    except SentinelError as e:
        for i in items:
            store.mark_failed(i.id, error=str(e), retry_at=now + BACKOFF_MAX, permanent=True)
        log.error("notifier %s: %s (retry in %.0fs)", sender.name, e, BACKOFF_MAX)
        return 0, len(items)
    store.mark_sent_all([i.id for i in items], now)
    return len(items), 0
