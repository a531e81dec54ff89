"""The research universe: which series of one exchange and timeframe research trades.

Two forms, exactly one per :class:`UniverseConfig`:

- an explicit list (``symbols``): every symbol must be stored in the lake; the list is the
  universe, in its own order;
- the top N by dollar volume (``top_n``, ``lookback_days``, optionally ``quote``): among
  the stored series of the exchange and timeframe (whose quote currency is ``quote``, when
  given), the N with the largest ``sum(close * volume)`` over the candles opened in
  ``(until - lookback, until]``. ``until`` defaults to the latest candle of those series,
  so every series is judged over the same window and one that stopped trading ranks by
  what it traded in it; a series with no candle in the window is not ranked. Ties go to
  the symbol that sorts first. It is one DuckDB query over the lake's views
  (``tradeloop.data.sql``), which hold the candles every reader uses.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.schema import check_exchange, lake_symbol, timeframe_ms
from tradeloop.data.sql import LakeSQL
from tradeloop.errors import ConfigError, DataError, SeriesNotFoundError, config_error

DAY_MS = 86_400_000
_CURRENCY = re.compile(r"[A-Z0-9]+", re.ASCII)
_LISTED = 12


class UniverseConfig(BaseModel):
    """Which symbols of ``exchange``/``timeframe`` research uses (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exchange: str = Field(description="ccxt exchange id of the series, e.g. 'binance'")
    timeframe: str = Field(description="candle timeframe of the series, e.g. '1h'")
    symbols: tuple[str, ...] | None = Field(
        default=None, description="explicit list, e.g. ['BTC-USDT', 'ETH-USDT'] (not with top_n)"
    )
    top_n: int | None = Field(
        default=None, ge=1, le=10_000, description="the N series with the largest dollar volume (not with symbols)"
    )
    lookback_days: int = Field(
        default=30, ge=1, le=3650, description="top_n: days of candles whose dollar volume is summed"
    )
    quote: str | None = Field(default=None, description="top_n: only series quoted in this currency, e.g. 'USDT'")

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, value: str) -> str:
        return check_exchange(value)

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        timeframe_ms(value)
        return value

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("the list is empty; list at least one symbol, e.g. ['BTC-USDT'], or use top_n")
        if not {"exchange", "timeframe"} <= set(info.data):  # already refused: their errors say why
            return value
        names = tuple(SeriesKey(info.data["exchange"], s, info.data["timeframe"]).symbol for s in value)
        repeated = sorted({s for s in names if names.count(s) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once; list each symbol once")
        return names

    @field_validator("quote")
    @classmethod
    def _quote(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _CURRENCY.fullmatch(value.strip().upper()):
            raise ValueError("is not a currency code; use letters and digits, e.g. 'USDT' or 'USD'")
        return value.strip().upper()

    @model_validator(mode="after")
    def _one_form(self) -> UniverseConfig:
        if (self.symbols is None) == (self.top_n is None):
            got = (
                f"both symbols={list(self.symbols or ())} and top_n={self.top_n}"
                if self.symbols is not None
                else "neither"
            )
            raise ValueError(
                f"set exactly one of symbols (an explicit list) or top_n (the top N by dollar volume); got {got}"
            )
        if self.symbols is not None:
            extra = [f for f in ("lookback_days", "quote") if f in self.model_fields_set]
            if extra:
                verb = "apply" if len(extra) > 1 else "applies"
                raise ValueError(
                    f"{' and '.join(extra)} {verb} to top_n only; with an explicit symbols list, "
                    "leave them out (or replace symbols with top_n)"
                )
        return self

    @property
    def lookback_ms(self) -> int:
        return self.lookback_days * DAY_MS

    def keys(self, symbols: list[str] | tuple[str, ...]) -> list[SeriesKey]:
        return [SeriesKey(self.exchange, s, self.timeframe) for s in symbols]


def universe_config(**values: Any) -> UniverseConfig:
    """A :class:`UniverseConfig`, or one :class:`ConfigError` naming each bad field."""
    try:
        return UniverseConfig(**values)
    except ValidationError as exc:
        raise config_error(exc, what="research universe", model=UniverseConfig) from None


def select_universe(lake: CandleLake, config: UniverseConfig, *, until_ms: int | None = None) -> list[str]:
    """The universe's symbols (lake names): the explicit list, or the top N by dollar volume.

    Parameters
    ----------
    lake:
        Where the candles are.
    config:
        The universe.
    until_ms:
        End of the dollar-volume window (inclusive candle open time, epoch ms); default: the
        latest candle of the candidate series. Ignored by an explicit list.

    Raises
    ------
    SeriesNotFoundError
        A listed symbol is not stored (all missing ones are named), or no series of the
        exchange/timeframe (and quote) is stored.
    DataError
        No candidate series has a candle in the window, or a stored file is damaged.
    """
    if config.symbols is not None:
        missing = [
            s for s, key in zip(config.symbols, config.keys(config.symbols), strict=True) if not lake.exists(key)
        ]
        if missing:
            raise SeriesNotFoundError(
                f"research universe: symbols={list(config.symbols)} names series not stored for "
                f"{config.exchange} {config.timeframe}: {', '.join(missing)} ({_stored(lake, config)}); import or "
                "ingest them (`tradeloop data import` / `tradeloop data ingest`), or take them off the list"
            )
        return list(config.symbols)
    ranked = rank_universe(lake, config, until_ms=until_ms)
    assert config.top_n is not None  # the config takes symbols or top_n; rank_universe checked it
    return ranked["symbol"].head(config.top_n).to_list()


def rank_universe(lake: CandleLake, config: UniverseConfig, *, until_ms: int | None = None) -> pl.DataFrame:
    """Every candidate series ranked by dollar volume over the window (``top_n`` form):
    columns ``symbol``, ``dollar_volume`` (sum of close * volume) and ``candles`` (how
    many candles of the window it has), best first."""
    if config.top_n is None:
        raise ConfigError("rank_universe needs a top_n universe; an explicit symbols list is not ranked")
    candidates = [
        k
        for k in lake.list_series()
        if k.exchange == config.exchange
        and k.timeframe == config.timeframe
        and (config.quote is None or quote_of(k.symbol) == config.quote)
    ]
    if not candidates:
        quoted = f" quoted in {config.quote}" if config.quote else ""
        raise SeriesNotFoundError(
            f"research universe: no {config.exchange} {config.timeframe} series{quoted} stored under {lake.root} "
            f"to pick the top_n={config.top_n} from ({_stored(lake, config)}); import or ingest candles first, "
            "or change exchange, timeframe or quote"
        )
    with LakeSQL(lake, keys=candidates) as sql:
        end = until_ms if until_ms is not None else sql.query("SELECT max(ts) AS t FROM candles")["t"].item()
        if end is None:
            raise DataError(f"research universe: the {len(candidates)} candidate series hold no valid candles")
        start = int(end) - config.lookback_ms
        # integers only, so inlined (DuckDB's parameter binding would import pandas)
        ranked = sql.query(
            "SELECT symbol, fsum(close * volume) AS dollar_volume, count(*) AS candles "
            f"FROM candles WHERE ts > {start} AND ts <= {int(end)} GROUP BY symbol "
            "ORDER BY dollar_volume DESC, symbol ASC"
        )
    if not ranked.height:
        raise DataError(
            f"research universe: none of the {len(candidates)} {config.exchange} {config.timeframe} series has a "
            f"candle in the {config.lookback_days} days up to ts={int(end)}; raise lookback_days or pass an "
            "until_ms inside the stored history"
        )
    return ranked


def quote_of(symbol: str) -> str:
    """Quote currency of a lake symbol: ``BTC-USDT`` and ``BTC-USDT-PERP`` -> ``USDT``."""
    return lake_symbol(symbol).split("-")[1]


def _stored(lake: CandleLake, config: UniverseConfig) -> str:
    every = lake.list_series()
    if not every:  # the wrong folder, more often than missing data: say where it looked
        return lake.where_empty()
    stored = [k.symbol for k in every if k.exchange == config.exchange and k.timeframe == config.timeframe]
    if not stored:
        return f"none stored for {config.exchange} {config.timeframe}"
    more = f" and {len(stored) - _LISTED} more" if len(stored) > _LISTED else ""
    return f"stored: {', '.join(stored[:_LISTED])}{more}"
