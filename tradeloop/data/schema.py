"""The candle schema, series identity and timeframe arithmetic.

Identity rules (a series is a folder name, so aliases and odd characters are refused):

- timeframe: ccxt's grammar ``<amount><unit>``, ASCII digits only, no leading zero, no
  whitespace or control characters (``1h``, ``15m``, ``4h``, ``1d``, ``1w``; not ``01h``,
  ``1h\\n``, ``\\u0661h``). Months and years have no fixed length and are refused.
- exchange: an id from ``ccxt.exchanges``, plus the closed venues in ``RETIRED_EXCHANGES``
  whose history is still real data (ccxt dropped their classes; nothing can trade there).
- symbol: upper-case ASCII ``BASE-QUOTE`` (``BTC-USDT``, ``BTC-USDT-PERP``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import polars as pl

from tradeloop.errors import ConfigError

CANDLE_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Int64(),  # candle open time, ms since epoch, UTC
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
}
CANDLE_COLUMNS: tuple[str, ...] = tuple(CANDLE_SCHEMA)

# ccxt's timeframe notation (fullmatch: ``$`` would accept a trailing newline; ASCII: ``\d``
# would accept other scripts' digits); months and years have no fixed length
_TIMEFRAME_RE = re.compile(r"([1-9][0-9]*)([smhdwMy])", re.ASCII)
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_SYMBOL_RE = re.compile(r"[A-Z0-9]+([-/][A-Z0-9]+)+(:[A-Z0-9]+)?", re.ASCII)
# closed venues ccxt no longer ships, whose recorded candles are real history
RETIRED_EXCHANGES: frozenset[str] = frozenset({"bittrex", "ftx"})


@functools.cache
def known_exchanges() -> frozenset[str]:
    """``ccxt.exchanges`` plus :data:`RETIRED_EXCHANGES` (ccxt is imported on first use only)."""
    import ccxt

    return frozenset(ccxt.exchanges) | RETIRED_EXCHANGES


def check_exchange(exchange: str) -> str:
    """``exchange`` when it is a known ccxt id, else a :class:`ConfigError` with close matches."""
    if isinstance(exchange, str) and exchange in known_exchanges():
        return exchange
    import difflib

    near = difflib.get_close_matches(str(exchange).strip().lower(), sorted(known_exchanges()), n=3)
    hint = f"did you mean {', '.join(repr(n) for n in near)}? " if near else ""
    raise ConfigError(
        f"exchange={exchange!r} is not a ccxt exchange id; {hint}"
        "use a lower-case id from ccxt.exchanges, e.g. 'binance' or 'coinbase'"
    )


def timeframe_ms(timeframe: str) -> int:
    """Length of a ccxt timeframe string (``1m``, ``4h``, ``1d``...) in milliseconds."""
    match = _TIMEFRAME_RE.fullmatch(timeframe) if isinstance(timeframe, str) else None
    if not match:
        raise ConfigError(
            f"timeframe={timeframe!r} is not a timeframe; use ASCII forms like 1m, 5m, 1h, 4h, 1d "
            "(no leading zero, no spaces)"
        )
    amount, unit = int(match.group(1)), match.group(2)
    if unit in {"M", "y"}:
        raise ConfigError(
            f"timeframe={timeframe!r} has no fixed length; use minutes, hours, days or weeks"
        )
    return amount * _UNIT_MS[unit]


def lake_symbol(symbol: str) -> str:
    """File-safe symbol: ``BTC/USDT`` -> ``BTC-USDT``, ``BTC/USDT:USDT`` -> ``BTC-USDT-PERP``."""
    symbol = symbol.strip().upper()
    if ":" in symbol:
        symbol = symbol.split(":", 1)[0] + "-PERP"
    return symbol.replace("/", "-")


def grid_offset_ms(timeframe_ms: int) -> int:
    """Where a timeframe's grid starts: candle open times satisfy ``(ts - offset) % tf == 0``.

    Weeks open on Monday 00:00 UTC (ccxt/Binance), four days after the Thursday epoch; every
    other fixed-length timeframe is aligned to the epoch.
    """
    week = _UNIT_MS["w"]
    return 4 * _UNIT_MS["d"] if timeframe_ms % week == 0 else 0


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
        check_exchange(self.exchange)
        if not isinstance(self.symbol, str):
            raise ConfigError(f"symbol={self.symbol!r} is not BASE-QUOTE; e.g. BTC-USDT or BTC/USDT")
        object.__setattr__(self, "symbol", lake_symbol(self.symbol))
        if not _SYMBOL_RE.fullmatch(self.symbol.replace("-", "/", 1)):
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
    """Select and cast the candle columns; a missing or non-numeric column is a clear error.

    Values that do not cast (text, say) become nulls, which validation rejects as ``missing``;
    a datetime ``ts`` becomes epoch milliseconds whatever its unit.
    """
    from tradeloop.errors import CandleValidationError

    missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
    if missing:
        raise CandleValidationError(
            f"{source}: missing column(s) {missing}; candles need columns {list(CANDLE_COLUMNS)} "
            "(ts = candle open time in ms UTC)",
            source=source,
            violations=[],
        )
    exprs = []
    for name, dtype in CANDLE_SCHEMA.items():
        col = pl.col(name)
        if isinstance(frame.schema[name], pl.Datetime):
            col = col.dt.epoch("ms")
        exprs.append(col.cast(dtype, strict=False))
    try:
        return frame.select(exprs)
    except pl.exceptions.PolarsError as exc:
        kinds = {c: str(frame.schema[c]) for c in CANDLE_COLUMNS}
        raise CandleValidationError(
            f"{source}: the candle columns cannot be read as numbers (types {kinds}; {exc}); "
            "ts must be an integer (ms UTC) and the prices and volume numbers",
            source=source,
            violations=[],
        ) from None
