"""Events (candles, signals, orders, fills) and the latest-price cache, behind one interface.

``RedisBus`` publishes to Redis streams (XADD, consumer groups with XREADGROUP/XACK: at
least once) and caches latest prices in a Redis hash; ``InProcessBus`` does the same in
memory for the embedded default. Both redeliver an event whose consumer did not ack it
within ``claim_idle_ms`` (to whichever consumer of the group reads next), and move an event
delivered ``max_deliveries`` times without an ack to the ``<stream>:dead`` stream. Redis is
never the system of record: the operational
database is. ``make_bus(REDIS_URL or None)`` picks one.

``publish_once`` is how the engine's outbox relay (``live.outbox``) publishes: events of one
``mark`` (a trading session) carry increasing sequence numbers (outbox ids); the bus keeps the
highest one it published per mark, in the same atomic step as the append (a Lua script on
Redis), and ignores a number it has seen. A relay that died after publishing and before
recording that it did therefore publishes nothing twice. An event of a session names it in
the entry's ``session`` field (``tradeloop.bus``: stream names, keys and the entry encoding that
readers such as the API share).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from tradeloop.bus import MAX_STREAM_LEN, PRICES, STREAMS, decode, encode, redis_client, stream_key
from tradeloop.errors import ConfigError
from tradeloop.redaction import mask_url

__all__ = ["MAX_STREAM_LEN", "STREAMS", "EventBus", "InProcessBus", "RedisBus", "check_redis", "make_bus"]

# KEYS: the mark, the stream; ARGV: seq, maxlen, the entry's fields (name, value, ...).
# Atomic: the append and the mark.
PUBLISH_ONCE = """
local seen = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) <= seen then return false end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[1], ARGV[1])
return id
"""


class EventBus(Protocol):
    async def publish(self, stream: str, event: dict) -> str: ...

    async def publish_once(
        self, stream: str, event: dict, *, mark: str, seq: int, session_id: int | None = None
    ) -> str | None:
        """Publish unless ``seq`` is at most the highest number published under ``mark``;
        the new entry's id, or None when it was a repeat. ``session_id``: the session the
        event belongs to, for readers outside the engine."""
        ...

    async def read(
        self, stream: str, *, group: str, consumer: str, count: int = 100, block_ms: int | None = None
    ) -> list[tuple[str, dict]]: ...

    async def ack(self, stream: str, group: str, *ids: str) -> None: ...

    async def set_prices(self, prices: dict[str, tuple[float, int]]) -> None: ...

    async def price(self, symbol: str) -> tuple[float, int] | None: ...

    async def close(self) -> None: ...


@dataclass
class InProcessBus:
    """Streams as in-memory lists; a group remembers its next index and unacked ids."""

    claim_idle_ms: int = 60_000
    max_deliveries: int = 5
    events: dict[str, list[tuple[str, dict]]] = field(default_factory=lambda: defaultdict(list))
    _cursor: dict[tuple[str, str], int] = field(default_factory=dict)
    # (stream, group) -> id -> [event, last delivery (monotonic s), deliveries]
    _pending: dict[tuple[str, str], dict[str, list]] = field(default_factory=lambda: defaultdict(dict))
    _prices: dict[str, tuple[float, int]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _marks: dict[str, int] = field(default_factory=dict)

    async def publish(self, stream: str, event: dict) -> str:
        event_id = f"{next(self._ids)}-0"
        log = self.events[stream]
        log.append((event_id, dict(event)))
        if len(log) > MAX_STREAM_LEN:
            drop = len(log) - MAX_STREAM_LEN
            del log[:drop]
            for key in [k for k in self._cursor if k[0] == stream]:
                self._cursor[key] = max(0, self._cursor[key] - drop)
        return event_id

    async def publish_once(
        self, stream: str, event: dict, *, mark: str, seq: int, session_id: int | None = None
    ) -> str | None:
        # in memory there is no entry envelope: a reader in this process knows its session
        if seq <= self._marks.get(mark, 0):
            return None
        self._marks[mark] = seq
        return await self.publish(stream, event)

    async def read(
        self, stream: str, *, group: str, consumer: str, count: int = 100, block_ms: int | None = None
    ) -> list[tuple[str, dict]]:
        pending = self._pending[(stream, group)]
        now = time.monotonic()
        idle = [i for i, (_, at, _) in pending.items() if (now - at) * 1000 >= self.claim_idle_ms]
        for event_id in idle:
            entry = pending[event_id]
            if entry[2] >= self.max_deliveries:  # poison: out of the way, kept for inspection
                await self.publish(f"{stream}:dead", {"id": event_id, "group": group, "event": entry[0]})
                del pending[event_id]
        redelivered = [(i, pending[i][0]) for i in idle if i in pending][:count]
        if redelivered:
            batch = redelivered
        else:
            start = self._cursor.get((stream, group), 0)
            batch = self.events[stream][start : start + count]
            self._cursor[(stream, group)] = start + len(batch)
        for event_id, event in batch:
            deliveries = pending[event_id][2] if event_id in pending else 0
            pending[event_id] = [event, now, deliveries + 1]
        return batch

    async def ack(self, stream: str, group: str, *ids: str) -> None:
        for event_id in ids:
            self._pending[(stream, group)].pop(event_id, None)

    async def set_prices(self, prices: dict[str, tuple[float, int]]) -> None:
        self._prices.update(prices)

    async def price(self, symbol: str) -> tuple[float, int] | None:
        return self._prices.get(symbol)

    async def close(self) -> None:
        return None


def _text(reply: bytes | str) -> str:
    """A reply as text: ``decode_responses=True`` makes it str, though redis-py types it bytes | str."""
    return reply.decode() if isinstance(reply, bytes) else reply


class RedisBus:
    """Redis streams under ``prefix:stream`` and the price hash ``prefix:prices``.

    Every command has a 5 s socket timeout and retries connection errors three times with
    exponential backoff: publishing is idempotent enough for at-least-once delivery.
    """

    def __init__(self, url: str, *, prefix: str = "tradeloop", claim_idle_ms: int = 60_000, max_deliveries: int = 5):
        self.prefix = prefix
        self.claim_idle_ms, self.max_deliveries = claim_idle_ms, max_deliveries
        self.client = redis_client(url)
        self._groups: set[tuple[str, str]] = set()
        self._publish_once = self.client.register_script(PUBLISH_ONCE)

    def key(self, name: str) -> str:
        return stream_key(self.prefix, name)

    async def publish(self, stream: str, event: dict) -> str:
        fields: dict[Any, Any] = encode(event)  # redis-py types fields as a dict of unions (invariant)
        event_id = await self.client.xadd(self.key(stream), fields, maxlen=MAX_STREAM_LEN, approximate=True)
        return _text(event_id)

    async def publish_once(
        self, stream: str, event: dict, *, mark: str, seq: int, session_id: int | None = None
    ) -> str | None:
        fields = [part for item in encode(event, session_id=session_id).items() for part in item]
        return await self._publish_once(
            keys=[self.key(f"outbox-mark:{mark}"), self.key(stream)], args=[seq, MAX_STREAM_LEN, *fields]
        )

    async def _ensure_group(self, stream: str, group: str) -> None:
        if (stream, group) in self._groups:
            return
        try:
            await self.client.xgroup_create(self.key(stream), group, id="0", mkstream=True)
        except ResponseError as exc:  # BUSYGROUP: it exists already
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add((stream, group))

    async def read(
        self, stream: str, *, group: str, consumer: str, count: int = 100, block_ms: int | None = None
    ) -> list[tuple[str, dict]]:
        await self._ensure_group(stream, group)
        key = self.key(stream)
        _, claimed, _ = await self.client.xautoclaim(key, group, consumer, self.claim_idle_ms, count=count)
        if claimed:
            return await self._without_poison(stream, group, claimed)
        reply = await self.client.xreadgroup(group, consumer, {key: ">"}, count=count, block=block_ms)
        if isinstance(reply, dict):  # RESP3's shape: from_url speaks it only when the URL asks
            raise ConfigError("REDIS_URL asks for protocol=3 (RESP3); the bus reads RESP2 replies: drop protocol=3")
        # RESP2: [[stream, [(id, fields), ...]]], or nothing when block_ms ran out
        return [(event_id, decode(event_id, fields).data) for _, entries in reply or [] for event_id, fields in entries]

    async def _without_poison(self, stream: str, group: str, claimed: list) -> list[tuple[str, dict]]:
        """Claimed (redelivered) entries, minus those past ``max_deliveries``: dead-lettered."""
        key = self.key(stream)
        out = []
        for event_id, fields in claimed:
            info = await self.client.xpending_range(key, group, min=event_id, max=event_id, count=1)
            if info and int(info[0]["times_delivered"]) > self.max_deliveries:
                await self.publish(
                    f"{stream}:dead", {"id": event_id, "group": group, "event": decode(event_id, fields).data}
                )
                await self.client.xack(key, group, event_id)
                continue
            out.append((event_id, decode(event_id, fields).data))
        return out

    async def ack(self, stream: str, group: str, *ids: str) -> None:
        if ids:
            await self.client.xack(self.key(stream), group, *ids)

    async def set_prices(self, prices: dict[str, tuple[float, int]]) -> None:
        if prices:
            await self.client.hset(self.key(PRICES), mapping={s: json.dumps(v) for s, v in prices.items()})

    async def price(self, symbol: str) -> tuple[float, int] | None:
        raw = await self.client.hget(self.key(PRICES), symbol)
        if raw is None:
            return None
        value, ts = json.loads(raw)
        return float(value), int(ts)

    async def close(self) -> None:
        await self.client.aclose()


async def check_redis(url: str, *, timeout_s: float = 5.0) -> None:
    """PING ``url`` within ``timeout_s``: ConfigError (exit 2) naming REDIS_URL, password masked."""
    try:
        client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    except ValueError as exc:
        raise ConfigError(
            f"REDIS_URL={mask_url(url)} is not a Redis URL ({exc}); use e.g. redis://127.0.0.1:6379/0"
        ) from None
    try:
        await client.ping()
    except RedisError as exc:
        raise ConfigError(
            f"REDIS_URL={mask_url(url)} is unreachable: {exc}; start Redis or fix "
            "REDIS_URL (unset it for the in-process bus)"
        ) from None
    finally:
        await client.aclose()


def make_bus(redis_url: str | None, *, prefix: str = "tradeloop") -> EventBus:
    """Redis streams when a URL is given, the in-process bus otherwise."""
    return RedisBus(redis_url, prefix=prefix) if redis_url else InProcessBus()
