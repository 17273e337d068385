"""The Redis event store: several replicas on several machines share one ``redis-server``.

Keys under ``<prefix>:``

* ``id:<event_id>`` — the dedupe mark, expiring after the retention period;
* ``stream`` — every new event in append order (the feed the overlays follow and the trainer reads), trimmed
  to the retention period by its entries' append time;
* ``recent:<customer_id>`` — the customer id's newest events, a list capped at ``recent_per_customer``;
* ``links`` (hash alias -> customer) and ``links:stream`` (the links in append order);
* ``served`` — the served-recommendation log in append order (stream ids are the append time, which the
  online report's ``--since`` reads by), and ``served:<recommendation_id>`` — each answer by id, both kept
  for the retention period.

Dedupe and append are ONE Lua script per call: Redis runs a script atomically, so the mark, the stream entry
and the list push of an event happen together or not at all, and two replicas racing on one ``event_id`` apply
it once (a MULTI block could not skip the append when the mark already exists). A script call returns after
Redis applied it; how durable that is on a crash of Redis itself is Redis's ``appendonly``/``appendfsync``
setting (README, Real time).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsvc.days import MS_PER_DAY
from recsvc.events.store import EventStore, FeedBatch, LiveLink, StoreUnavailable
from recsvc.events.validation import EventRecord
from recsvc.feedback.served import ServedRecommendation

_APPEND = """
local ttl, cap, minid = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local out = {}
for i = 1, #ARGV - 3 do
  local payload = ARGV[i + 3]
  if redis.call('SET', KEYS[2 * i], '1', 'NX', 'EX', ttl) then
    redis.call('XADD', KEYS[1], 'MINID', '~', minid, '*', 'e', payload)
    local recent = KEYS[2 * i + 1]
    redis.call('LPUSH', recent, payload)
    redis.call('LTRIM', recent, 0, cap - 1)
    redis.call('EXPIRE', recent, ttl)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""
_LINK = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  if current == ARGV[2] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', 'a', ARGV[1], 'c', ARGV[2])
return 1
"""
_FIELDS = ("event_id", "customer_id", "item_id", "event", "channel", "store_id", "order_id", "quantity", "price",
           "timestamp_ms", "recorded_ms", "recommendation_id", "position")
#: Failures that mean "Redis is not reachable now" (UNAVAILABLE); anything else is a bug.
_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError)


def _encode(e: EventRecord) -> str:
    values: list[Any] = [getattr(e, name) for name in _FIELDS]
    values[8] = None if math.isnan(e.price) else e.price
    return json.dumps(values, separators=(",", ":"))


def _decode(payload: bytes | str) -> EventRecord:
    decoded = json.loads(payload)
    # an entry written before issue 18 has no recommendation_id and position: the record's defaults apply
    values = dict(zip(_FIELDS[:len(decoded)], decoded, strict=True))
    values["price"] = math.nan if values["price"] is None else float(values["price"])
    values["quantity"] = float(values["quantity"])
    return EventRecord(**values)


class RedisEventStore(EventStore):
    """Events and links in the Redis at ``url`` (``redis://host:port/db``), keys under ``prefix``."""

    backend = "redis"

    def __init__(self, url: str, prefix: str = "recsvc", recent_per_customer: int = 200, retention_days: int = 90,
                 timeout_seconds: float = 1.0) -> None:
        self.url = url
        # typed Any: redis-py types every reply as a union of bytes, str and int the code below never sees
        self._client: Any = redis.Redis.from_url(url, socket_timeout=timeout_seconds,
                                            socket_connect_timeout=timeout_seconds, retry=Retry(NoBackoff(), 1))
        self._prefix = prefix
        self._cap = recent_per_customer
        self._retention_ms = retention_days * MS_PER_DAY
        self._stream = f"{prefix}:stream"
        self._links, self._link_stream = f"{prefix}:links", f"{prefix}:links:stream"
        self._served = f"{prefix}:served"
        self._append = self._client.register_script(_APPEND)
        self._link = self._client.register_script(_LINK)

    def _down(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(f"event store (redis at {self.url}) is not reachable: {exc}; retry")

    def append(self, events: Sequence[EventRecord]) -> list[bool]:
        if not events:
            return []
        keys = [self._stream]
        for e in events:
            keys += [f"{self._prefix}:id:{e.event_id}", f"{self._prefix}:recent:{e.customer_id}"]
        minid = max(0, int(time.time() * 1000) - self._retention_ms)
        try:
            out = self._append(keys=keys, args=[self._retention_ms // 1000, self._cap, str(minid),
                                                *(_encode(e) for e in events)])
        except _DOWN as exc:
            raise self._down(exc) from exc
        return [bool(flag) for flag in out]

    def link(self, link: LiveLink) -> bool:
        try:
            return bool(self._link(keys=[self._links, self._link_stream], args=[link.alias_id, link.customer_id]))
        except _DOWN as exc:
            raise self._down(exc) from exc

    def read_feed(self, cursor: str = "", limit: int = 10_000) -> FeedBatch:
        after_event, _, after_link = cursor.partition("|") if cursor else ("0-0", "", "0-0")
        try:
            answer = self._client.xread({self._stream: after_event, self._link_stream: after_link}, count=limit)
        except _DOWN as exc:
            raise self._down(exc) from exc
        events: list[EventRecord] = []
        links: list[LiveLink] = []
        for name, entries in answer or ():
            key = name.decode() if isinstance(name, bytes) else str(name)
            if not entries:
                continue
            if key == self._stream:
                events = [_decode(fields[b"e"]) for _, fields in entries]
                after_event = entries[-1][0].decode()
            else:
                links = [LiveLink(alias_id=fields[b"a"].decode(), customer_id=fields[b"c"].decode())
                         for _, fields in entries]
                after_link = entries[-1][0].decode()
        return FeedBatch(events=tuple(events), links=tuple(links), cursor=f"{after_event}|{after_link}")

    def recent(self, customer_id: str, limit: int) -> list[EventRecord]:
        try:
            rows = self._client.lrange(f"{self._prefix}:recent:{customer_id}", 0, limit - 1)
        except _DOWN as exc:
            raise self._down(exc) from exc
        return [_decode(r) for r in rows]

    def export(self, before_ms: int) -> Iterator[EventRecord]:
        start = "-"
        while True:
            try:
                entries = self._client.xrange(self._stream, min=start, count=10_000)
            except _DOWN as exc:
                raise self._down(exc) from exc
            for _, fields in entries:
                event = _decode(fields[b"e"])
                if event.timestamp_ms < before_ms:
                    yield event
            if len(entries) < 10_000:
                return
            start = "(" + entries[-1][0].decode()

    def purge(self, before_ms: int) -> int:
        """Trim the stream by append time (Redis keeps no index by event time); the dedupe marks and
        per-customer lists expire on their own after the retention period."""
        try:
            return int(self._client.xtrim(self._stream, minid=str(max(0, before_ms)), approximate=False))
        except _DOWN as exc:
            raise self._down(exc) from exc

    def log_served(self, served: Sequence[ServedRecommendation]) -> None:
        """One pipeline per batch (no transaction needed: an entry written twice is read back once by id, and
        the report dedupes the stream by id)."""
        if not served:
            return
        ttl = self._retention_ms // 1000
        minid = str(max(0, int(time.time() * 1000) - self._retention_ms))
        try:
            pipe = self._client.pipeline(transaction=False)
            for record in served:
                payload = record.encode()
                pipe.set(f"{self._served}:{record.recommendation_id}", payload, ex=ttl)
                pipe.xadd(self._served, {"s": payload}, minid=minid, approximate=True)
            pipe.execute()
        except _DOWN as exc:
            raise self._down(exc) from exc

    def served(self, since_ms: int) -> Iterator[ServedRecommendation]:
        """Read by append time, a few seconds before ``since_ms`` (the log is written in batches after the
        answer), then filtered by the answer's own time."""
        start, seen = str(max(0, since_ms - 60_000)), set()
        while True:
            try:
                entries = self._client.xrange(self._served, min=start, count=10_000)
            except _DOWN as exc:
                raise self._down(exc) from exc
            for _, fields in entries:
                record = ServedRecommendation.decode(fields[b"s"])
                if record.timestamp_ms >= since_ms and record.recommendation_id not in seen:
                    seen.add(record.recommendation_id)
                    yield record
            if len(entries) < 10_000:
                return
            start = "(" + entries[-1][0].decode()

    def served_by_id(self, ids: Sequence[str]) -> dict[str, ServedRecommendation]:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return {}
        try:
            payloads = self._client.mget([f"{self._served}:{rid}" for rid in unique])
        except _DOWN as exc:
            raise self._down(exc) from exc
        return {rid: ServedRecommendation.decode(p) for rid, p in zip(unique, payloads, strict=True)
                if p is not None}

    def count(self) -> int:
        try:
            return int(self._client.xlen(self._stream))
        except _DOWN as exc:
            raise self._down(exc) from exc

    def ping(self) -> None:
        try:
            self._client.ping()
        except _DOWN as exc:
            raise self._down(exc) from exc

    def close(self) -> None:
        self._client.close()
