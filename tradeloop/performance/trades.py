"""The trade list as people read it (times as UTC datetimes, durations in days) and its export.

Exports are CSV or Parquet, chosen by the file's extension, and written atomically.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tradeloop.data.atomic import write_bytes_atomic, write_parquet_atomic
from tradeloop.data.schema import timeframe_ms
from tradeloop.errors import ConfigError

EXPORT_FORMATS = (".csv", ".parquet")
DAY_MS = 86_400_000


def trade_list(trades: pl.DataFrame, *, timeframe: str) -> pl.DataFrame:
    """A ledger (``BacktestResult.trades``) with ``entry_time``/``exit_time`` (UTC) and ``duration_days``."""
    utc = pl.Datetime("ms", "UTC")
    return trades.select(
        "symbol",
        "side",
        pl.from_epoch("entry_ts", time_unit="ms").cast(utc).alias("entry_time"),
        pl.from_epoch("exit_ts", time_unit="ms").cast(utc).alias("exit_time"),
        (pl.col("bars_held") * (timeframe_ms(timeframe) / DAY_MS)).alias("duration_days"),
        *[c for c in trades.columns if c not in {"symbol", "side"}],
    )


def export_format(path: str | Path, *, option: str = "path") -> str:
    """``'csv'`` or ``'parquet'`` from the extension; anything else is a ConfigError naming the fix."""
    suffix = Path(path).suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ConfigError(
            f"{option}={str(path)!r} has extension {suffix or '(none)'!r}; the trades export is "
            "CSV or Parquet: end the file name in .csv or .parquet, e.g. trades.csv"
        )
    return suffix[1:]


def export_trades(trades: pl.DataFrame, path: str | Path, *, timeframe: str, option: str = "path") -> Path:
    """Write the trade list to ``path`` (``.csv`` or ``.parquet``); returns the path written."""
    target = Path(path)
    kind = export_format(target, option=option)
    frame = trade_list(trades, timeframe=timeframe)
    if kind == "parquet":
        write_parquet_atomic(frame, target)
    else:
        write_bytes_atomic(frame.write_csv().encode(), target)
    return target
