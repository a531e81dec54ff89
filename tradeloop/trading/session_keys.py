"""A session's instruments on several venues: each is named by its *key*, the symbol as the
session lists it (the rules are ``live.venues``'); here, below every layer, so that the API can
judge a session's venues without the engine.

* A key is ``SYMBOL`` on the session's own exchange, or ``venue:SYMBOL`` (``okx:BTC-USDT``) on
  another venue, ``venue`` a ccxt exchange id; only a prefix that is a ccxt id names a venue (a
  perpetual's ccxt symbol ``BTC/USDT:USDT`` holds a colon too).
* A session is on **several venues** (:func:`several_venues`) when the venues of its keys are
  anything but its own exchange alone: ``--exchange binance --symbol okx:BTC-USDT`` trades on
  OKX only, and is routed as a session on several venues is, never through the Binance account.
"""

from __future__ import annotations

from collections.abc import Iterable

import ccxt

from tradeloop.errors import ConfigError
from tradeloop.trading.instrument import InstrumentId


def split_key(key: str) -> tuple[str | None, str]:
    """``'okx:BTC-USDT'`` -> ``('okx', 'BTC-USDT')``; a key without a venue -> ``(None, key)``."""
    venue, sep, symbol = key.partition(":")
    if sep and venue in ccxt.exchanges:
        if not symbol:
            raise ConfigError(f"symbol {key!r} names venue {venue!r} but no symbol; write it as {venue}:BTC-USDT")
        return venue, symbol
    return None, key


def instrument_of(default_venue: str, key: str) -> InstrumentId:
    """The instrument a session key names (module rules)."""
    venue, symbol = split_key(key)
    return InstrumentId(venue or default_venue, symbol)


def key_of(default_venue: str, instrument: InstrumentId) -> str:
    """The session key of ``instrument``: its symbol on the session's exchange, else ``venue:symbol``."""
    return instrument.symbol if instrument.venue == default_venue else str(instrument)


def venues_of(default_venue: str, keys: Iterable[str]) -> dict[str, list[str]]:
    """The session's keys by venue, each venue's keys in the session's order."""
    out: dict[str, list[str]] = {}
    for key in keys:
        out.setdefault(instrument_of(default_venue, key).venue, []).append(key)
    return out


def several_venues(default_venue: str, keys: Iterable[str]) -> bool:
    """Whether the keys trade anywhere but on ``default_venue`` alone (module rules)."""
    return set(venues_of(default_venue, keys)) != {default_venue}
