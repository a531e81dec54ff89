"""The event bus's shared vocabulary (stream names, keys, entry encoding): ``live`` writes it,
``api`` reads it."""

from tradeloop.bus.streams import (
    MAX_STREAM_LEN,
    PRICES,
    STREAMS,
    StreamEntry,
    decode,
    encode,
    entry_order,
    market_stream,
    price_key,
    quotes_stream,
    redis_client,
    stream_key,
)

__all__ = [
    "MAX_STREAM_LEN",
    "PRICES",
    "STREAMS",
    "StreamEntry",
    "decode",
    "encode",
    "entry_order",
    "market_stream",
    "price_key",
    "quotes_stream",
    "redis_client",
    "stream_key",
]
