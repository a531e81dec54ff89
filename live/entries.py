"""From one bar's decided signals to order intents, with the backtest kernel's entry rules.

The engine's decide stage (``LiveEngine._decide_intents``) hands every bar's signals to an
:class:`EntryPlanner` built from the session's ``BacktestConfig``. Rules (the kernel's
numbers are ``tradeloop.backtest.kernel``'s):

1. **Exits and entries** (``live.signal_intents.intents``, kernel rule 1): an exit flag closes the
   whole position at the next open; an entry on a flat symbol (or one exiting on the same
   bar: a reversal) opens the other side; the side already held does nothing (no
   pyramiding). Exits fill before entries (the paper broker's order).
2. **Size** (rule 2): an entry asks for ``f * equity`` at the close, ``f`` = ``fraction``, or
   with ``sizing='vol_target'`` ``min(vol_target / annualised volatility, fraction)``, or with
   ``sizing='correlation'`` the symbol's weight from the Ledoit-Wolf covariance
   (``tradeloop.risk.sizing``), both from the backtest's own ``size_fractions`` over the
   last ``vol_window + 1`` timestamps of
   the rolling window (every symbol's candles on one grid, as the backtest lays them out; a
   symbol without a candle on one of them gets 0). ``f * equity = 0`` places no entry (the
   kernel's entry of size 0 does nothing).
3. **Limit entries** (rule 4, ``entry_order='limit'``): a limit order at
   ``limit_price(side, close, limit_offset)`` for ``f * equity / price`` units fixed at the
   decision; the paper broker rests it ``limit_ttl_bars`` of the symbol's candles. A new
   signal of the symbol (any non-zero flag) cancels it at the symbol's next candle.
4. **Protection** (rule 5): every entry carries the legs of ``live.protection`` (its rules).
5. **Shorts** only on a derivative market: a perpetual, by its ccxt symbol
   (``BTC/USDT:USDT``, ``InstrumentId.is_perpetual``), its lake spelling (``BTC-USDT-PERP``,
   ``tradeloop.data.schema.lake_symbol``) or its venue (``binanceusdm``: every market there
   is a perpetual, whatever the symbol's spelling). Spot sessions stay long only:
   the engine refuses a rule with ``allow_short=True`` on spot symbols (``ConfigError``), and
   a model swapped in later that asks for a short on a spot symbol gets no short entry (the
   exit part of its reversal still goes; logged).
6. **ATR** (the stops' ``atr_stop``/``atr_trailing``): Wilder's (``WilderAtr``), one per
   symbol, fed every closed candle of the rolling window once, in time order, from the first
   window on. Its seed is that window's first candle: a backtest started at the same candle
   gives the same numbers; one started earlier differs by a factor ``(1 - 1/atr_window)``
   per candle since (1e-13 after 400 candles at 14).
7. **The paper broker hears each decision** (:class:`DecisionListener`): the ATR at the
   close of every symbol (its stops use it at the next bar; an entry keeps the value of its
   decision bar) and the symbols that had a signal (rule 3's cancel). A venue broker does
   not: there the engine arms an entry's legs itself (``live.venue_protection``), with the
   decision bar's ATR each leg carries (``ProtectiveLeg.entry_atr``, stored on its row), and
   cancels a limit entry after ``limit_ttl_bars`` or a new signal (``live.order_manager`` rule 6).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl

from live.protection import protection_legs
from live.signal_intents import intents
from live.venues import instrument_of
from tradeloop.backtest import BacktestConfig, PriceArrays, WilderAtr, size_fractions
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, ENTRIES
from tradeloop.trading import InstrumentId, OrderIntent

log = logging.getLogger(__name__)


def can_short(instrument: InstrumentId) -> bool:
    """True for a derivative the session may short: a perpetual (rule 5), by its symbol or its
    venue (``tradeloop.trading.PERPETUAL_VENUES``). Example: ``InstrumentId("binance", "BTC/USDT")`` -> False,
    ``InstrumentId("coinbase", "BTC-USD-PERP")`` -> True."""
    return instrument.is_derivative


@runtime_checkable
class DecisionListener(Protocol):
    """A broker that replays the kernel's stops and limit entries itself (the paper broker)."""

    def on_decision(self, *, atr: Mapping[str, float | None], signalled: Iterable[str]) -> None:
        """After a bar's decision: each symbol's ATR at the close and the symbols with a signal."""
        ...


class DustCheck(Protocol):
    """What the planner asks every broker: is a remainder too small to sell (``Broker.is_dust``)."""

    def is_dust(self, symbol: str, quantity: float) -> bool: ...


class AtrBook:
    """Wilder's ATR of every symbol, fed each closed candle once (rule 6)."""

    def __init__(self, *, window: int):
        self.window = window
        self._atr: dict[str, WilderAtr] = {}
        self._fed: dict[str, int] = {}  # the last candle's ts fed, per symbol

    def update(self, frame: pl.DataFrame) -> dict[str, float | None]:
        """Feed the candles of ``frame`` (``symbol, ts, high, low, close``) not fed yet; the ATR
        of every symbol seen so far at its last candle (``None`` while it warms up)."""
        if self._fed and set(frame["symbol"].unique()) <= set(self._fed):
            frame = frame.filter(pl.col("ts") > min(self._fed.values()))
        rows = frame.select("symbol", "ts", "high", "low", "close").sort("ts", "symbol").rows()
        for symbol, ts, high, low, close in rows:
            if ts <= self._fed.get(symbol, -1):
                continue
            atr = self._atr.get(symbol)
            if atr is None:
                atr = self._atr[symbol] = WilderAtr(window=self.window)
            atr.update(high=high, low=low, close=close)
            self._fed[symbol] = ts
        return {symbol: atr.value for symbol, atr in self._atr.items()}


def model_sizes(window: pl.DataFrame, config: BacktestConfig, *, timeframe: str) -> dict[str, float]:
    """Each symbol's fraction of equity at the window's last timestamp (rule 2: vol_target or
    correlation sizing, by the backtest's own ``size_fractions``)."""
    wide = (
        window.select("ts", "symbol", "close")
        .pivot(on="symbol", index="ts", values="close")
        .sort("ts")
        .tail(config.vol_window + 1)
    )
    symbols = tuple(sorted(c for c in wide.columns if c != "ts"))
    close = wide.select(pl.col(s).cast(pl.Float64).fill_null(np.nan) for s in symbols).to_numpy()
    prices = PriceArrays(
        ts=wide["ts"].to_numpy(),
        symbols=symbols,
        open=close,
        high=close,
        low=close,
        close=close,
        signal=np.zeros(close.shape, dtype=np.int8),
    )
    fractions = size_fractions(prices, config, timeframe)
    assert fractions is not None  # only called for a sizing that computes fractions
    last = fractions[-1]
    return {s: float(f) for s, f in zip(symbols, last, strict=True)}


class EntryPlanner:
    """A session's entry rules (module rules), holding the ATR between bars.

    Parameters
    ----------
    config
        The session's backtest config (sizing, entry order, stops).
    venue
        The session's exchange: instruments are ``InstrumentId(venue, symbol)``.
    timeframe
        The session's bar, e.g. ``"4h"`` (annualises the volatility of ``vol_target``).
    """

    def __init__(self, config: BacktestConfig, *, venue: str, timeframe: str):
        self.config, self.venue, self.timeframe = config, venue, timeframe
        uses_atr = config.atr_stop is not None or config.atr_trailing is not None
        self.atr_book = AtrBook(window=config.atr_window) if uses_atr else None
        self._refused: set[str] = set()  # spot symbols already logged for a short entry

    def decide(
        self,
        signals: list[tuple[str, int]],
        *,
        window: pl.DataFrame,
        positions: Mapping[str, float],
        equity: float,
        last: Mapping[str, float],
        broker: DustCheck,
    ) -> list[OrderIntent]:
        """The bar's intents (exits, then entries per symbol) for ``signals`` decided on
        ``window`` whose last bar just closed; tells a :class:`DecisionListener` broker."""
        cfg = self.config
        atr = self.atr_book.update(window) if self.atr_book is not None else {}
        if isinstance(broker, DecisionListener):
            broker.on_decision(atr=atr, signalled=[s for s, _ in signals])
        vol: dict[str, float] = {}
        sized = cfg.sizing in ("vol_target", "correlation")
        if sized and any(flags & ENTRIES for _, flags in signals):
            vol = model_sizes(window, cfg, timeframe=self.timeframe)
        limit = cfg.limit_offset if cfg.entry_order == "limit" else None
        out: list[OrderIntent] = []
        for symbol, flags in signals:
            instrument = instrument_of(self.venue, symbol)  # live.venues: okx:BTC-USDT is on OKX
            held = positions.get(symbol, 0.0)
            held = 0.0 if broker.is_dust(symbol, abs(held)) else held  # an unsellable remainder
            shorts = can_short(instrument)
            for intent in intents(
                flags,
                instrument=instrument,
                position=held,
                equity=equity,
                fraction=vol.get(symbol, 0.0) if sized else cfg.fraction,
                price=last[symbol],
                limit_offset=limit,
                shorts=shorts,
            ):
                if intent.kind.reduces:
                    out.append(intent)
                    continue
                legs = protection_legs(cfg, intent.side, close=last[symbol], atr=atr.get(symbol))
                out.append(replace(intent, protection=legs) if legs else intent)
            asks_short = flags & ENTER_SHORT and not flags & ENTER_LONG
            if asks_short and not shorts and symbol not in self._refused:
                self._refused.add(symbol)
                log.error(
                    "%s is spot: the short entry the model asks for is not sent (shorts need a perpetual, "
                    "e.g. BTC/USDT:USDT); promote a long-only model",
                    instrument,
                )
        return out
