"""The backtest's input: candles in long format turned into wide (bars x symbols) arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from tradeloop.errors import BacktestError

__all__ = ["PriceArrays"]

_DUPLICATE = "backtest input has two candles for one (symbol, ts); deduplicate it"


@dataclass(frozen=True)
class PriceArrays:
    """Wide (bars x symbols) float64 arrays aligned on ``ts``; NaN where a symbol has no candle."""

    ts: np.ndarray
    symbols: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    signal: np.ndarray  # int8

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> PriceArrays:
        needed = {"ts", "symbol", "open", "high", "low", "close", "signal"}
        missing = sorted(needed - set(frame.columns))
        if missing:
            raise BacktestError(
                f"backtest input lacks column(s) {missing}; pass candles with a 'signal' column "
                "(Strategy.signals adds it) and a 'symbol' column"
            )
        symbols = tuple(sorted(frame["symbol"].unique().to_list()))
        one = _one_series(frame) if len(symbols) == 1 else None
        if one is not None:  # one symbol, ts increasing: its own bars are the grid, no join (the same arrays)

            def column(col: str, dtype: type, fill: float | int) -> np.ndarray:
                return np.ascontiguousarray(one[col].fill_null(fill).to_numpy(), dtype=dtype).reshape(-1, 1)

            return cls(
                ts=one["ts"].to_numpy(),
                symbols=symbols,
                open=column("open", np.float64, np.nan),
                high=column("high", np.float64, np.nan),
                low=column("low", np.float64, np.nan),
                close=column("close", np.float64, np.nan),
                signal=column("signal", np.int8, 0),
            )
        dup = frame.select(pl.struct("symbol", "ts").is_duplicated().any()).item()
        if dup:
            raise BacktestError(_DUPLICATE)
        ts = frame["ts"].unique().sort()
        grid = pl.DataFrame({"ts": ts})

        def wide(col: str, dtype: type, fill: float | int) -> np.ndarray:
            out: np.ndarray = np.full((ts.len(), len(symbols)), fill, dtype=dtype)
            for j, sym in enumerate(symbols):
                part = grid.join(frame.filter(pl.col("symbol") == sym).select("ts", col), on="ts", how="left")
                out[:, j] = part[col].fill_null(fill).to_numpy()
            return out

        return cls(
            ts=ts.to_numpy(),
            symbols=symbols,
            open=wide("open", np.float64, np.nan),
            high=wide("high", np.float64, np.nan),
            low=wide("low", np.float64, np.nan),
            close=wide("close", np.float64, np.nan),
            signal=wide("signal", np.int8, 0),
        )


def _one_series(frame: pl.DataFrame) -> pl.DataFrame | None:
    """One symbol's rows in ts order when every ts is present and distinct (``None``: use the grid path).

    Raises ``BacktestError`` for a ts seen twice, as the grid path does."""
    ts = frame["ts"]
    if ts.null_count():
        return None
    one = frame if ts.is_sorted() else frame.sort("ts")
    if one.height > 1 and not bool((one["ts"].diff().drop_nulls() > 0).all()):
        raise BacktestError(_DUPLICATE)
    return one
