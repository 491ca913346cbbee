"""Kubernetes Events, the pure half: what an Event says, and whether to write it.

An :class:`EventSpec` is one occurrence (an ``OOMKilled``, an ``OOMPredicted``, a
``PreemptiveRestart``) about one object, the Pod or the Node it ``regarding``.
:class:`EventCorrelator` decides, with an explicit ``now``, what the adapter in
``sentinel.clients.kubernetes`` writes for it, the way client-go's ``EventCorrelator``
(``tools/record/events_cache.go``) does for kubelet:

* **deduplicated**: the same (regarding uid, reason, note) again is not a new Event but an
  update of the one already written: ``series.count`` and ``series.lastObservedTime`` in
  ``events.k8s.io/v1``, ``count`` and ``lastTimestamp`` in core ``v1``. Every occurrence is
  counted, also one the rate limit drops, so the next write carries the true count.
* **rate-limited** per regarding object (with the reporter and the type, as client-go's
  ``getSpamKey``): a token bucket of :data:`BURST` tokens refilled with one token every
  :data:`REFILL_SECONDS` (client-go's defaults: 25, and 1/300 qps). A write, new or update,
  takes a token; without one the occurrence is dropped.
* **bounded**: both caches keep the :data:`MAX_KEYS` most recently used keys (client-go's
  ``maxLruCacheEntries``).

An Event's name is client-go's: ``<regarding name>.<hex of the first time in ns>``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

BURST = 25
"""Writes allowed at once about one object (client-go ``defaultSpamBurst``)."""
REFILL_SECONDS = 300.0
"""One more write allowed per this many seconds (client-go ``defaultSpamQPS`` = 1/300)."""
MAX_KEYS = 4096
"""Objects and distinct events remembered (client-go ``maxLruCacheEntries``)."""
NOTE_MAX_BYTES = 1024
"""``events.k8s.io/v1`` rejects a longer ``note`` (``NoteLengthLimit``)."""
FIELD_MAX = 128
"""``reason``, ``action``, ``reportingController`` and ``reportingInstance`` at most."""
NAME_MAX = 253
"""An object name is a DNS subdomain: at most this many characters."""
CONTROLLER = "sentinel"

EventType = Literal["Normal", "Warning"]
Outcome = Literal["create", "update", "drop"]
K = TypeVar("K")
V = TypeVar("V")


def truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character; a cut one
    ends with ``...``."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: max(0, limit - 3)].decode(errors="ignore") + "..."


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The object an Event is about (``regarding`` / ``involvedObject``)."""

    kind: str
    name: str
    namespace: str = ""
    """Empty for a cluster-scoped object (a Node)."""
    uid: str = ""
    api_version: str = "v1"

    @classmethod
    def of(cls, obj: Mapping[str, Any], *, kind: str | None = None) -> ObjectRef:
        """The reference to an object as the API returns it (a pod or node dict)."""
        meta = obj.get("metadata") or {}
        return cls(
            kind=str(kind or obj.get("kind") or "Pod"),
            name=str(meta.get("name") or ""),
            namespace=str(meta.get("namespace") or ""),
            uid=str(meta.get("uid") or ""),
            api_version=str(obj.get("apiVersion") or "v1"),
        )

    def as_api(self) -> dict[str, str]:
        """The ``ObjectReference`` JSON (the same in both Events APIs)."""
        out = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.uid:
            out["uid"] = self.uid
        return out


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One occurrence to report as a Kubernetes Event (pure: no client objects).

    ``note`` is cut to :data:`NOTE_MAX_BYTES` UTF-8 bytes and ``reason``/``action`` to
    :data:`FIELD_MAX` characters, so that the API never rejects the Event for its length.
    """

    regarding: ObjectRef
    reason: str
    note: str
    type: EventType = "Warning"
    action: str = ""
    """What was done or seen, e.g. ``Killed``, ``Predicted``, ``Restarted`` (required by
    ``events.k8s.io``; the reason when empty)."""
    reporting_instance: str = ""
    """The node this sentinel runs on."""
    reporting_controller: str = CONTROLLER

    def __post_init__(self) -> None:
        object.__setattr__(self, "note", truncate_utf8(self.note, NOTE_MAX_BYTES))
        object.__setattr__(self, "reason", self.reason[:FIELD_MAX])
        object.__setattr__(self, "action", (self.action or self.reason)[:FIELD_MAX])
        object.__setattr__(self, "reporting_instance", self.reporting_instance[:FIELD_MAX])

    @property
    def namespace(self) -> str:
        """Where the Event lives: the object's namespace, ``default`` for a Node's (as
        kubelet posts them)."""
        return self.regarding.namespace or "default"

    @property
    def _source_and_object(self) -> tuple[str, ...]:
        ref = self.regarding
        return (
            self.reporting_controller,
            self.reporting_instance,
            ref.kind,
            ref.namespace,
            ref.name,
            ref.uid,
        )

    @property
    def dedupe_key(self) -> tuple[str, ...]:
        """Occurrences with this key are one Event (its count grows)."""
        return (*self._source_and_object, self.type, self.reason, self.note)

    @property
    def spam_key(self) -> tuple[str, ...]:
        """Occurrences with this key share one token bucket (client-go ``getSpamKey``)."""
        return (*self._source_and_object, self.regarding.api_version, self.type)


@dataclass(frozen=True, slots=True)
class EventDecision:
    """What to write for one occurrence.

    ``create``: a new Event named ``name``; ``update``: set the count of the Event ``name``
    (written before) to ``count``; ``drop``: write nothing (rate-limited).
    """

    outcome: Outcome
    name: str
    count: int
    first_seen: float
    last_seen: float


class _Lru(Generic[K, V]):
    """A dict that forgets its least recently used keys beyond ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


@dataclass(slots=True)
class _Seen:
    name: str
    count: int
    first_seen: float
    last_seen: float


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass
class EventCorrelator:
    """Dedupe and spam filter for Events (see the module). Not thread-safe: one owner."""

    burst: int = BURST
    refill_seconds: float = REFILL_SECONDS
    max_keys: int = MAX_KEYS
    _seen: _Lru[tuple[str, ...], _Seen] = field(init=False, repr=False)
    _buckets: _Lru[tuple[str, ...], _Bucket] = field(init=False, repr=False)
    _stamps: _Lru[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._seen = _Lru(self.max_keys)
        self._buckets = _Lru(self.max_keys)
        self._stamps = _Lru(self.max_keys)

    def observe(self, spec: EventSpec, now: float) -> EventDecision:
        """Count one occurrence of ``spec`` at ``now`` (seconds since the epoch) and say
        what to write for it."""
        seen = self._seen.get(spec.dedupe_key)
        if seen is None:
            seen = _Seen(self._new_name(spec, now), 0, now, now)
            self._seen.put(spec.dedupe_key, seen)
        seen.count += 1
        seen.last_seen = max(seen.last_seen, now)
        if not self._take_token(spec.spam_key, now):
            outcome: Outcome = "drop"
        else:
            outcome = "create" if seen.count == 1 else "update"
        return EventDecision(outcome, seen.name, seen.count, seen.first_seen, seen.last_seen)

    def forget(self, spec: EventSpec) -> None:
        """The Event written for ``spec`` is gone (expired from the API): the next
        occurrence creates a new one."""
        self._seen.pop(spec.dedupe_key)

    def _take_token(self, key: tuple[str, ...], now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets.put(key, bucket)
        elapsed = max(0.0, now - bucket.at)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed / self.refill_seconds)
        bucket.at = max(bucket.at, now)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _new_name(self, spec: EventSpec, now: float) -> str:
        base = spec.regarding.name[: NAME_MAX - 17]
        stamp = max(0, int(now * 1e9))
        last = self._stamps.get(base)
        if last is not None and stamp <= last:
            stamp = last + 1  # two events about one object in one nanosecond
        self._stamps.put(base, stamp)
        return f"{base}.{stamp:x}"
