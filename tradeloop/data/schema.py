"""The candle schema, series identity and timeframe arithmetic."""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from tradeloop.errors import ConfigError, UnsupportedTimeframeError

CANDLE_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Int64(),  # candle open time, ms since epoch, UTC
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
}
CANDLE_COLUMNS: tuple[str, ...] = tuple(CANDLE_SCHEMA)

# ccxt's timeframe notation; months and years have no fixed length
_TIMEFRAME_RE = re.compile(r"^(\d+)([smhdwMy])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_EXCHANGE_RE = re.compile(r"^[a-z0-9]+$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]+([-/][A-Z0-9]+)+(:[A-Z0-9]+)?$")


def timeframe_ms(timeframe: str) -> int:
    """Length of a ccxt timeframe string (``1m``, ``4h``, ``1d``...) in milliseconds."""
    match = _TIMEFRAME_RE.match(timeframe)
    if not match or int(match.group(1)) == 0:
        raise UnsupportedTimeframeError(
            f"timeframe={timeframe!r} is not a timeframe; use forms like 1m, 5m, 1h, 4h, 1d"
        )
    amount, unit = int(match.group(1)), match.group(2)
    if unit in {"M", "y"}:
        raise UnsupportedTimeframeError(
            f"timeframe={timeframe!r} has no fixed length; use minutes, hours, days or weeks"
        )
    return amount * _UNIT_MS[unit]


def lake_symbol(symbol: str) -> str:
    """File-safe symbol: ``BTC/USDT`` -> ``BTC-USDT``, ``BTC/USDT:USDT`` -> ``BTC-USDT-PERP``."""
    symbol = symbol.strip().upper()
    if ":" in symbol:
        symbol = symbol.split(":", 1)[0] + "-PERP"
    return symbol.replace("/", "-")


def ccxt_symbol(symbol: str) -> str:
    """Unified ccxt symbol for a lake symbol: ``BTC-USDT`` -> ``BTC/USDT``."""
    symbol = symbol.strip().upper()
    if "/" in symbol:
        return symbol
    parts = symbol.split("-")
    if parts[-1] == "PERP" and len(parts) == 3:
        return f"{parts[0]}/{parts[1]}:{parts[1]}"
    if len(parts) != 2:
        raise ConfigError(f"symbol={symbol!r} is not BASE-QUOTE or BASE/QUOTE; e.g. BTC/USDT")
    return f"{parts[0]}/{parts[1]}"


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """One candle series: exchange id (ccxt), lake symbol and timeframe."""

    exchange: str
    symbol: str
    timeframe: str

    def __post_init__(self) -> None:
        if not _EXCHANGE_RE.match(self.exchange):
            raise ConfigError(
                f"exchange={self.exchange!r} is not a ccxt exchange id; use lower case like 'binance'"
            )
        object.__setattr__(self, "symbol", lake_symbol(self.symbol))
        if not _SYMBOL_RE.match(self.symbol.replace("-", "/", 1)):
            raise ConfigError(f"symbol={self.symbol!r} is not BASE-QUOTE; e.g. BTC-USDT or BTC/USDT")
        timeframe_ms(self.timeframe)

    @property
    def timeframe_ms(self) -> int:
        return timeframe_ms(self.timeframe)

    @property
    def label(self) -> str:
        return f"{self.exchange}:{self.symbol}:{self.timeframe}"

    @property
    def filename_stem(self) -> str:
        """``<exchange>__<SYMBOL>__<timeframe>``: the inverse of :meth:`from_filename`."""
        return f"{self.exchange}__{self.symbol}__{self.timeframe}"

    @classmethod
    def from_filename(cls, stem: str) -> SeriesKey:
        """Parse ``<exchange>__<SYMBOL>__<timeframe>[__tag]`` (the sample/shared convention)."""
        parts = stem.split("__")
        if len(parts) < 3:
            raise ConfigError(
                f"file name {stem!r} does not say exchange__SYMBOL__timeframe; "
                "rename it or pass --exchange, --symbol and --timeframe"
            )
        return cls(parts[0], parts[1], parts[2])


def empty_candles() -> pl.DataFrame:
    return pl.DataFrame(schema=CANDLE_SCHEMA)


def coerce_candles(frame: pl.DataFrame, *, source: str) -> pl.DataFrame:
    """Select and cast the candle columns; a missing column is a clear error."""
    missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
    if missing:
        from tradeloop.errors import CandleValidationError

        raise CandleValidationError(
            f"{source}: missing column(s) {missing}; candles need columns {list(CANDLE_COLUMNS)} "
            "(ts = candle open time in ms UTC)",
            source=source,
            violations=[],
        )
    return frame.select(pl.col(c).cast(t, strict=False) for c, t in CANDLE_SCHEMA.items())
