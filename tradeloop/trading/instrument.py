"""``InstrumentId``: what is traded, named by venue and ccxt symbol."""

from __future__ import annotations

from dataclasses import dataclass

from tradeloop.errors import ConfigError

PERPETUAL_VENUES = ("binanceusdm",)  # ccxt ids whose every market is a perpetual (live.brokers.perps)


@dataclass(frozen=True, order=True, slots=True)
class InstrumentId:
    """An instrument on one venue: ``venue`` is the ccxt exchange id (``binance``,
    ``binanceusdm``, or ``paper`` for the paper broker's book), ``symbol`` the ccxt unified
    symbol (``BTC/USDT``; perpetuals carry their settle asset: ``BTC/USDT:USDT``).

    Its text form is ``venue:symbol`` (``binanceusdm:BTC/USDT:USDT``): the venue never
    holds a colon, so the first one splits it back (:meth:`parse`).
    """

    venue: str
    symbol: str

    def __post_init__(self) -> None:
        if not self.venue or ":" in self.venue or self.venue != self.venue.strip():
            raise ConfigError(
                f"InstrumentId venue={self.venue!r} is not a venue id; use a ccxt exchange id such as 'binance'"
            )
        if not self.symbol or self.symbol != self.symbol.strip():
            raise ConfigError(f"InstrumentId symbol={self.symbol!r} is empty or padded; use e.g. 'BTC/USDT'")

    @classmethod
    def parse(cls, text: str) -> InstrumentId:
        """``'binance:BTC/USDT'`` -> ``InstrumentId('binance', 'BTC/USDT')``."""
        venue, sep, symbol = text.partition(":")
        if not sep:
            raise ConfigError(f"instrument {text!r} has no venue; write it as venue:symbol, e.g. 'binance:BTC/USDT'")
        return cls(venue, symbol)

    @property
    def is_perpetual(self) -> bool:
        """A linear perpetual (``BASE/QUOTE:SETTLE`` without an expiry), by ccxt's symbol rule."""
        _, sep, settle = self.symbol.partition(":")
        return bool(sep) and "-" not in settle

    @property
    def is_derivative(self) -> bool:
        """A derivative (a margin position, shortable): any ccxt symbol with a settle currency
        (``BTC/USDT:USDT``, a dated future ``BTC/USDT:USDT-250328``), a perpetual's lake spelling
        (``BTC-USDT-PERP``) or its venue (``PERPETUAL_VENUES``); ``InstrumentId("binance",
        "BTC/USDT")`` is spot."""
        return ":" in self.symbol or self.symbol.upper().endswith("-PERP") or self.venue in PERPETUAL_VENUES

    def __str__(self) -> str:
        return f"{self.venue}:{self.symbol}"
