"""What the event bus's writers (``live.bus``) and readers (``api``) agree on.

Rules:

* An event lives on a Redis stream named ``<prefix>:<stream>`` (:func:`stream_key`), one of
  :data:`STREAMS`; its dead letters on ``<prefix>:<stream>:dead``; the latest-price cache is the
  hash ``<prefix>:prices``. The prefix is ``TRADELOOP_REDIS_PREFIX``.
* An entry's fields are ``data`` (the event as JSON) and, for an event of a trading session,
  ``session`` (its id): readers outside the engine decide with it who may see the event,
  without a field inside the event that writers would have to remember.
* Entry ids (``<ms>-<seq>``) order the entries of one stream; :func:`entry_order` compares
  them as numbers (``"10-0"`` sorts after ``"9-0"``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tradeloop.errors import ConfigError

#: the streams the live engine writes (``live.outbox``): a bar's candles, its signals, the
#: orders it decided, their fills, and the risk stage's denials and kill-switch trips
STREAMS = ("candles", "signals", "orders", "fills", "risk")
MAX_STREAM_LEN = 100_000  # events kept per stream (approximate trim)
PRICES = "prices"
ENTRY_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")


def market_stream(venue: str, timeframe: str) -> str:
    """The stream of ``venue``'s closed ``timeframe`` candles, which the market-data service
    (``live.marketdata``) publishes."""
    return f"market:{venue}:{timeframe}"


def quotes_stream(venue: str) -> str:
    """The stream of ``venue``'s top of book (best bid and ask per symbol, throttled), which the
    market-data service publishes with ``--quotes`` (``live.marketdata.quotes``)."""
    return f"quotes:{venue}"


def price_key(venue: str, symbol: str) -> str:
    """An instrument's field in the latest-price cache (the hash ``<prefix>:prices``)."""
    return f"{venue}:{symbol}"


def stream_key(prefix: str, name: str) -> str:
    """The Redis key of stream (or hash) ``name`` under ``prefix``."""
    return f"{prefix}:{name}"


def encode(event: dict, *, session_id: int | None = None) -> dict[str, str]:
    """An entry's fields: the event as JSON, and the session it belongs to (if any)."""
    fields = {"data": json.dumps(event)}
    if session_id is not None:
        fields["session"] = str(session_id)
    return fields


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamEntry:
    """A decoded stream entry."""

    id: str
    data: dict
    session_id: int | None


def decode(entry_id: str, fields: Mapping[str, str]) -> StreamEntry:
    """The entry ``entry_id`` with ``fields`` as read from Redis (``decode_responses=True``)."""
    session = fields.get("session")
    return StreamEntry(id=entry_id, data=json.loads(fields["data"]), session_id=int(session) if session else None)


def entry_order(entry_id: str) -> tuple[int, int]:
    """The position of ``entry_id`` in its stream, as numbers; ConfigError when it is no id."""
    match = ENTRY_ID.match(entry_id)
    if match is None:
        raise ConfigError(f"{entry_id!r} is not a stream entry id; one looks like 1700000000000-0")
    return int(match[1]), int(match[2])


def redis_client(url: str, *, socket_timeout: float = 5.0) -> aioredis.Redis:
    """A client that answers text, times out after ``socket_timeout`` seconds and retries a
    lost connection three times with exponential backoff."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=5,
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
