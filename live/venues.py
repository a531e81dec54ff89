"""A session's instruments on several venues: each is named by its *key*, the symbol as the
session lists it.

Rules:

* A key is ``SYMBOL`` (the lake's symbol, e.g. ``BTC-BUSD``) on the session's own exchange, or
  ``venue:SYMBOL`` (``okx:BTC-USDT``) on another venue, ``venue`` a ccxt exchange id. A single
  venue session is what it always was: plain symbols, nothing renamed.
* Keys name an instrument wherever the engine names a symbol: candles, the rolling window,
  signals, orders and fills (``orders.symbol``), the engine's positions by symbol and the
  broker calls. ``InstrumentId(venue, SYMBOL)`` (:func:`instrument_of`) names it where the
  venue matters: positions are stored under it (``positions.venue``, ``positions.symbol``:
  migration 0005's key) and the portfolio, the risk engine's market rules and the router
  (``live.brokers.router``) work on it. :func:`key_of` is its inverse.
* A perpetual's ccxt symbol also holds a colon (``BTC/USDT:USDT``): only a prefix that is a ccxt
  exchange id names a venue.
* An order is stored with the venue it was sent to (``orders.venue``): the broker's (the
  paper broker's book, ``paper``), or, through a router, the instrument's venue (:func:`sent_to`).
"""

from __future__ import annotations

from collections.abc import Iterable

from tradeloop.instrument_keys import instrument_of, key_of, split_key
from tradeloop.trading import InstrumentId

__all__ = ["instrument_of", "key_of", "sent_to", "split_key", "venues_of"]


def venues_of(default_venue: str, keys: Iterable[str]) -> dict[str, list[str]]:
    """The session's keys by venue, each venue's keys in the session's order."""
    out: dict[str, list[str]] = {}
    for key in keys:
        out.setdefault(instrument_of(default_venue, key).venue, []).append(key)
    return out


def sent_to(broker: object, instrument: InstrumentId) -> str:
    """The venue an order of ``instrument`` is stored as sent to: a router's venue for it, else
    the broker's own (``paper`` for the paper broker's book)."""
    route = getattr(broker, "venue_for", None)
    return route(instrument) if route is not None else str(broker.venue)  # type: ignore[attr-defined]
