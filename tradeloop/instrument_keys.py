"""A session's instrument keys (``live.venues`` has the rules): ``SYMBOL`` on the session's own
exchange, ``venue:SYMBOL`` on another; only a prefix that is a ccxt exchange id names a venue
(a perpetual's ccxt symbol holds a colon too: ``BTC/USDT:USDT``). Here so that the engine and
the readers (the API, the dashboard, the CLI) name instruments one way."""

from __future__ import annotations

import ccxt

from tradeloop.errors import ConfigError
from tradeloop.trading import InstrumentId

__all__ = ["instrument_of", "key_of", "split_key"]


def split_key(key: str) -> tuple[str | None, str]:
    """``'okx:BTC-USDT'`` -> ``('okx', 'BTC-USDT')``; a key without a venue -> ``(None, key)``."""
    venue, sep, symbol = key.partition(":")
    if sep and venue in ccxt.exchanges:
        if not symbol:
            raise ConfigError(f"symbol {key!r} names venue {venue!r} but no symbol; write it as {venue}:BTC-USDT")
        return venue, symbol
    return None, key


def instrument_of(default_venue: str, key: str) -> InstrumentId:
    """The instrument a session key names."""
    venue, symbol = split_key(key)
    return InstrumentId(venue or default_venue, symbol)


def key_of(default_venue: str, instrument: InstrumentId) -> str:
    """The session key of ``instrument``: its symbol on the session's exchange, else ``venue:symbol``."""
    return instrument.symbol if instrument.venue == default_venue else str(instrument)
