"""The candle schema, series identity and timeframe arithmetic.

Identity rules (a series is a folder name, so aliases and odd characters are refused):

- timeframe: ccxt's grammar ``<amount><unit>``, ASCII digits only, no leading zero, no
  whitespace or control characters (``1h``, ``15m``, ``4h``, ``1d``, ``1w``; not ``01h``,
  ``1h\\n``, ``\\u0661h``). Months and years have no fixed length and are refused; so is
  anything longer than ``MAX_TIMEFRAME_MS`` (365 days: ``52w`` is the longest week count).
- exchange: an id from ``ccxt.exchanges``, plus the closed venues in ``RETIRED_EXCHANGES``
  whose history is still real data (ccxt dropped their classes; nothing can trade there).
- symbol: upper-case ASCII ``BASE-QUOTE`` (``BTC-USDT``, ``BTC-USDT-PERP``). A ccxt
  perpetual swap ``BASE/QUOTE:SETTLE`` is stored as ``BASE-QUOTE-PERP``; ``SETTLE`` must be a
  currency code (ASCII letters and digits, like the base and quote), so ``:../x`` or a
  dated future's ``:USDT-240329`` is refused, never folded into a perp name.

Candle schema rules (``coerce_candles``): ``ts`` may be an integer (ms), a float, text, a
datetime of any unit and zone or a date (both become epoch ms); prices and volume may be
integers, floats, decimals or text. Text that does not parse becomes null, which validation
rejects as ``missing``. Any other type (boolean, struct, list, binary, object, duration,
categorical...) is a ``CandleValidationError`` naming the source, the column, its type and
the fix: it is never cast silently (a boolean volume is not 1.0).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import polars as pl

from tradeloop.errors import ConfigError, DataError

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
_CURRENCY_RE = re.compile(r"[A-Z0-9]+", re.ASCII)
MAX_TIMEFRAME_MS = 365 * 86_400_000
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
        raise ConfigError(f"timeframe={timeframe!r} has no fixed length; use minutes, hours, days or weeks")
    length = amount * _UNIT_MS[unit]
    if length > MAX_TIMEFRAME_MS:
        raise ConfigError(
            f"timeframe={timeframe!r} is longer than a year; candles are at most 365 days long "
            "(e.g. 1d or 1w): use a timeframe the exchange offers"
        )
    return length


def lake_symbol(symbol: str) -> str:
    """File-safe symbol: ``BTC/USDT`` -> ``BTC-USDT``, ``BTC/USDT:USDT`` -> ``BTC-USDT-PERP``.

    The settle part after ``:`` must be a currency code; anything else is a ``ConfigError``."""
    symbol = symbol.strip().upper()
    if ":" in symbol:
        pair, settle = symbol.split(":", 1)
        if not _CURRENCY_RE.fullmatch(settle):
            raise ConfigError(
                f"symbol={symbol!r} has {settle!r} where the settle currency goes; a perpetual swap is "
                "BASE/QUOTE:SETTLE with a currency code after the colon, e.g. BTC/USDT:USDT "
                "(dated futures are not supported)"
            )
        symbol = pair + "-PERP"
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


def earliest(times: pl.Series) -> int:
    """The smallest epoch-ms time of an integer time column (``ts``, ``t1``...), nulls skipped.

    Raises
    ------
    DataError
        The column has no time (empty or all null) or is not an integer column.
    """
    return _epoch_ms(times, times.min(), "earliest")


def latest(times: pl.Series) -> int:
    """The largest epoch-ms time of an integer time column (``ts``, ``t1``...), nulls skipped.

    Raises
    ------
    DataError
        The column has no time (empty or all null) or is not an integer column.
    """
    return _epoch_ms(times, times.max(), "latest")


def _epoch_ms(times: pl.Series, value: object, which: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise DataError(
        f"column {times.name!r} ({times.dtype}, {times.len()} rows, {times.null_count()} null) has no {which} "
        "time: it needs at least one non-null epoch-ms integer; check the frame is not empty before asking"
    )


_INTEGERS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
_NUMBERS = (*_INTEGERS, pl.Float32, pl.Float64, pl.Decimal, pl.String, pl.Null)
_TIMES = (*_INTEGERS, pl.Float32, pl.Float64, pl.String, pl.Null, pl.Datetime, pl.Date)


def coerce_candles(frame: pl.DataFrame, *, source: str) -> pl.DataFrame:
    """Select and cast the candle columns; a missing or non-numeric column is a clear error.

    Values that do not cast (text, say) become nulls, which validation rejects as ``missing``;
    a datetime or date ``ts`` becomes epoch milliseconds whatever its unit. A column of any
    other type (see the module docstring) is refused by name.
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
    for name in CANDLE_COLUMNS:
        dtype = frame.schema[name]
        allowed = _TIMES if name == "ts" else _NUMBERS
        if not isinstance(dtype, allowed):
            need = (
                "an integer (ms since the epoch, UTC) or a datetime"
                if name == "ts"
                else "a number (float, integer or decimal)"
            )
            raise CandleValidationError(
                f"{source}: column {name!r} has type {dtype}, not {need}; convert it to "
                f"{CANDLE_SCHEMA[name]} (candles are {', '.join(f'{c}: {t}' for c, t in CANDLE_SCHEMA.items())})",
                source=source,
                violations=[],
            )
    exprs = []
    for name, dtype in CANDLE_SCHEMA.items():
        col = pl.col(name)
        if isinstance(frame.schema[name], pl.Date):
            col = col.cast(pl.Datetime("ms"))
        if isinstance(frame.schema[name], (pl.Datetime, pl.Date)):
            col = col.dt.epoch("ms")
        exprs.append(col.cast(dtype, strict=False))
    try:
        out = frame.select(exprs)
    except pl.exceptions.PolarsError as exc:
        kinds = {c: str(frame.schema[c]) for c in CANDLE_COLUMNS}
        raise CandleValidationError(
            f"{source}: the candle columns cannot be read as numbers (types {kinds}; {exc}); "
            "ts must be an integer (ms UTC) and the prices and volume numbers",
            source=source,
            violations=[],
        ) from None
    if out.schema != pl.Schema(CANDLE_SCHEMA):  # the guarantee every reader relies on
        raise CandleValidationError(
            f"{source}: the candle columns came out as {dict(out.schema)}, not {CANDLE_SCHEMA}; convert them "
            "and import again",
            source=source,
            violations=[],
        )
    return out
