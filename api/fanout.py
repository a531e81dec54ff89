"""The fan-out of the engine's events to WebSocket connections: one :class:`Hub` per API process.

Rules:

* Events come from *sources*, each owning one or more cursor keys: the Redis streams the engine
  writes (``api.event_sources.RedisStreams``: keys ``candles``, ``signals``, ``orders``,
  ``fills``, ``risk``), or, without Redis, the outbox table (key ``outbox``); and the audit log
  for session status (key ``audit``). A source runs one reader task per process and hands the
  hub every new event in order per key; the hub resolves each event's session owner and offers
  it to every connection.
* Offering never waits: a connection keeps a bounded queue, and one whose queue is full is
  dropped (it is too slow), never waited for. The others do not notice.
* ``positions`` hold, per key, the id of the last event offered. A connection that joins gets a
  copy: every later event reaches its queue, and what lies between a client's cursor and that
  copy is replayed from the source (:meth:`Hub.replay`). A connection sends an event only when
  its id is past the connection's own position for that key, so a replayed event that is also
  queued, or an event the source delivers twice (at least once), reaches the client once.
* A cursor names a position per key (``orders:1700000000000-0,fills:...,audit:42``): every event
  message carries the connection's cursor after it, and resuming from it misses nothing and
  repeats nothing. Ids of one key compare as numbers (:func:`position`).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, get_args

from sqlalchemy import select

from tradeloop.bus import entry_order
from tradeloop.errors import ConfigError
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.retry import backoff_delay

log = logging.getLogger(__name__)

#: what a client may subscribe to
Channel = Literal["prices", "signals", "orders", "fills", "risk", "sessions"]
CHANNELS: tuple[str, ...] = get_args(Channel)
#: the channel of each engine stream (a candle carries the bar's closes: prices)
CHANNEL_OF_STREAM = {"candles": "prices", "signals": "signals", "orders": "orders", "fills": "fills", "risk": "risk"}
PUBLIC_CHANNELS = frozenset({"prices"})  # any signed-in user; the others: the session's owner and admins
ROW_KEYS = frozenset({"outbox", "audit"})  # keys whose ids are table row ids (integers)


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """One event as clients see it. ``source``: its cursor key; ``id``: its id there."""

    source: str
    id: str
    stream: str  # the engine's stream (candles, orders, ...), or "audit"
    channel: str
    session_id: int | None
    data: dict
    owner_id: int | None = None
    text: str = ""  # the message without its cursor, encoded once for every connection

    def message_head(self) -> str:
        """The JSON message up to (not including) its closing brace; the cursor goes after."""
        body: dict[str, Any] = {
            "type": "event",
            "channel": self.channel,
            "stream": self.stream,
            "id": self.id,
            "data": self.data,
        }
        if self.channel not in PUBLIC_CHANNELS:
            body["session_id"] = self.session_id
        return json.dumps(body, separators=(",", ":"), default=str)[:-1]


def channel_data(stream: str, payload: dict) -> dict:
    """What a client receives of an engine event: a candle event becomes the bar's prices
    (``{"ts": ..., "prices": {symbol: close}}``), the others are sent as the engine wrote them."""
    if stream == "candles" and "symbols" in payload and "close" in payload:
        return {"ts": payload.get("ts"), "prices": dict(zip(payload["symbols"], payload["close"], strict=False))}
    return payload


def channels_of(key: str) -> frozenset[str]:
    """The channels whose events a cursor key holds."""
    if key in CHANNEL_OF_STREAM:
        return frozenset({CHANNEL_OF_STREAM[key]})
    return frozenset({"sessions"}) if key == "audit" else frozenset(CHANNELS) - {"sessions"}


def position(event_id: str) -> tuple[int, int]:
    """The order of an id within its key: a stream entry id ``ms-seq`` or a row id."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def check_id(key: str, event_id: str) -> str:
    """``event_id`` when it can be a position of ``key``; ConfigError naming the fix otherwise."""
    if key in ROW_KEYS:
        if not event_id.isdigit() or len(event_id) > 20:
            raise ConfigError(f"last_id {key}:{event_id!r} is not a row id; send the cursor of a message received")
        return event_id
    entry_order(event_id)  # raises with the expected shape
    return event_id


def encode_cursor(positions: dict[str, str]) -> str:
    return ",".join(f"{key}:{value}" for key, value in positions.items())


def parse_cursor(text: str, keys: Iterable[str]) -> dict[str, str]:
    """Positions from a message's ``cursor`` (``key:id,...``), or from a bare stream event id
    (applied to every event key: stream ids of one Redis server follow its clock, so this is
    the same point in time on each stream, to the millisecond). Keys this server does not serve
    are refused: the cursor came from another deployment."""
    known = tuple(keys)
    text = text.strip()
    if ":" not in text:
        targets = [k for k in known if k != "audit"]
        return {k: check_id(k, text) for k in targets}
    out: dict[str, str] = {}
    for part in text.split(","):
        key, _, value = part.partition(":")
        if key not in known:
            raise ConfigError(
                f"last_id names {key!r}, which this server does not serve (it serves {', '.join(known)}); "
                "resume with the cursor of a message from this server"
            )
        out[key] = check_id(key, value)
    return out


class Subscriber(Protocol):
    def offer(self, event: Event) -> None:
        """Take ``event`` or drop it; never wait."""
        ...


Emit = Callable[[list[Event]], Awaitable[None]]


class EventSource(Protocol):
    """One reader of events; see the module rules."""

    keys: tuple[str, ...]

    async def start(self) -> dict[str, str]:
        """Prepare to read (consumer groups, ...); the position of each key now."""
        ...

    async def run(self, emit: Emit) -> None:
        """Read new events for ever and ``await emit(batch)``, in order per key."""
        ...

    async def replay(self, key: str, *, after: str, upto: str, limit: int) -> tuple[list[Event], str | None]:
        """The events of ``key`` with ids in (``after``, ``upto``], oldest first, from at most
        ``limit`` entries read; and the id to read on from, or None when none is left."""
        ...

    async def close(self) -> None: ...


class Owners:
    """Who owns each session (``sessions.owner_id``), cached for ``ttl_s``."""

    def __init__(self, store: OpsStore, *, ttl_s: float = 60.0):
        self.store, self.ttl_s = store, ttl_s
        self._known: dict[int, tuple[int | None, float]] = {}

    def cached(self, session_id: int | None) -> int | None:
        return None if session_id is None else self._known.get(session_id, (None, 0.0))[0]

    async def load(self, session_ids: Iterable[int | None]) -> None:
        now = time.monotonic()
        wanted = {s for s in session_ids if s is not None and now - self._known.get(s, (None, -1e18))[1] > self.ttl_s}
        if wanted:
            found = await asyncio.to_thread(self._query, wanted)
            self._known.update({s: (found.get(s), now) for s in wanted})

    def _query(self, ids: set[int]) -> dict[int, int | None]:
        with self.store.transaction() as db:
            rows = db.execute(select(TradingSession.id, TradingSession.owner_id).where(TradingSession.id.in_(ids)))
            return {row.id: row.owner_id for row in rows}

    async def exists(self, session_ids: Iterable[int]) -> set[int]:
        """The ids among ``session_ids`` that are sessions (their owners loaded)."""
        ids = set(session_ids)
        found = await asyncio.to_thread(self._query, ids) if ids else {}
        now = time.monotonic()
        self._known.update({s: (owner, now) for s, owner in found.items()})
        return set(found)


class Hub:
    """Events from ``sources`` offered to every joined subscriber (see the module rules)."""

    def __init__(self, sources: list[EventSource], *, owners: Owners, retry_cap_s: float = 10.0):
        self.sources, self.owners, self.retry_cap_s = sources, owners, retry_cap_s
        self.subscribers: set[Subscriber] = set()
        self.positions: dict[str, str] = {}
        self._by_key = {key: source for source in sources for key in source.keys}
        self._tasks: list[asyncio.Task] = []

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._by_key)

    async def start(self) -> None:
        for source in self.sources:
            self.positions.update(await source.start())
        # a fresh context: the readers act for every user, whoever's request started the hub
        # (no caller's row scope: tradeloop.ops.row_security keeps its scope in a ContextVar)
        self._tasks = [asyncio.create_task(self._read(s), context=contextvars.Context()) for s in self.sources]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for source in self.sources:
            try:
                await source.close()
            except Exception:  # best effort at shutdown
                log.warning("closing event source %s failed", type(source).__name__, exc_info=True)

    def join(self, subscriber: Subscriber) -> dict[str, str]:
        """Offer ``subscriber`` every event after now; the positions now."""
        self.subscribers.add(subscriber)
        return dict(self.positions)

    def leave(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    async def replay(self, key: str, *, after: str, upto: str, limit: int = 500) -> tuple[list[Event], str | None]:
        """A page of ``key``'s events in (``after``, ``upto``] and where the next page starts
        (None: the last page); see :meth:`EventSource.replay`."""
        events, more = await self._by_key[key].replay(key, after=after, upto=upto, limit=limit)
        return await self._prepared(events), more

    async def _prepared(self, events: list[Event]) -> list[Event]:
        await self.owners.load(e.session_id for e in events)
        out = []
        for event in events:
            event = replace(event, owner_id=self.owners.cached(event.session_id))
            out.append(replace(event, text=event.message_head()))
        return out

    async def _emit(self, events: list[Event]) -> None:
        for event in await self._prepared(events):
            known = self.positions.get(event.source)
            if known is not None and position(event.id) <= position(known):
                continue  # delivered again by the source (at least once): every subscriber had it
            self.positions[event.source] = event.id
            for subscriber in tuple(self.subscribers):
                subscriber.offer(event)

    async def _read(self, source: EventSource) -> None:
        """Run ``source`` for ever: after a failure (Redis or the database away), again after a
        backoff; subscribers stay connected meanwhile and resume loses nothing."""
        failures, rng = 0, random.Random()
        while True:
            try:
                await source.run(self._emit)  # returns only when it has nothing more to read
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged, retried
                failures += 1
                wait = backoff_delay(failures, base=0.2, cap=self.retry_cap_s, rng=rng)
                log.warning(
                    "event source %s failed (%s: %s); again in %.1fs",
                    type(source).__name__,
                    type(exc).__name__,
                    str(exc)[:200],
                    wait,
                )
                await asyncio.sleep(wait)
