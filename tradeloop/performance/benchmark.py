"""Buy and hold of the same symbols over the same bars: the benchmark beside every backtest.

Rules (equal terms with the strategy it is compared to):

* equal weight: the capital is split equally among the symbols, and each share buys its
  symbol at the open of the symbol's first bar (the strategy can be in the market from the
  same bar on); a symbol without candles yet keeps its share in cash until its first bar;
* the purchase pays the backtest's slippage (price ``open * (1 + slippage)``) and fee
  (``fee_rate * notional``), sized like the kernel: ``qty = cash / (price * (1 + fee_rate))``;
* the position is then held and marked at each close (a missing close keeps the last one),
  without an exit fee, as the backtest marks positions still open at its end;
* the result has the shape of ``BacktestResult.equity``: ``ts``, ``portfolio`` (the symbol),
  ``equity``; sum it per bar for the account (``series.equity_frame`` does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from tradeloop.errors import ConfigError

if TYPE_CHECKING:
    from tradeloop.backtest.engine import BacktestResult


def hold_equity(
    open_: np.ndarray, close: np.ndarray, *, cash_per_symbol: float, fee_rate: float, slippage: float = 0.0
) -> np.ndarray:
    """Equity (bars x symbols) of buying each column at its first open and holding it."""
    open_ = np.asarray(open_, dtype=np.float64)
    close = np.asarray(close, dtype=np.float64)
    bars, k = close.shape
    has_open = np.isfinite(open_)
    first = np.where(has_open.any(axis=0), has_open.argmax(axis=0), bars)  # bars: never bought
    price = open_[np.minimum(first, bars - 1), np.arange(k)] * (1.0 + slippage) if bars else np.zeros(k)
    with np.errstate(invalid="ignore", divide="ignore"):
        qty = np.where(first < bars, cash_per_symbol / (price * (1.0 + fee_rate)), 0.0)
    leftover = cash_per_symbol - np.where(first < bars, qty * price * (1.0 + fee_rate), 0.0)
    marks = (
        pl.DataFrame(close, schema=[f"c{j}" for j in range(k)], orient="row")
        .select(pl.all().fill_nan(None).forward_fill())
        .to_numpy()
        .astype(np.float64)
        if k
        else close
    )
    held = np.arange(bars)[:, None] >= first[None, :]
    return np.where(held, leftover + qty * np.nan_to_num(marks, nan=0.0), cash_per_symbol)


def buy_and_hold(
    candles: pl.DataFrame, *, init_cash: float, fee_rate: float = 0.0, slippage: float = 0.0
) -> pl.DataFrame:
    """Equal-weight buy and hold of the symbols in ``candles`` (``ts``, ``symbol``, ``open``, ``close``).

    Parameters
    ----------
    init_cash
        The whole capital, split equally among the symbols.
    fee_rate, slippage
        As in ``BacktestConfig``: paid once, on the purchase.

    Returns
    -------
    ``ts``, ``portfolio`` (symbol), ``equity``: one row per symbol and bar of the union of bars.
    """
    missing = sorted({"ts", "open", "close"} - set(candles.columns))
    if missing:
        raise ConfigError(f"candles lack column(s) {missing}; pass ts, open, close (and symbol for several)")
    if init_cash <= 0:
        raise ConfigError(f"init_cash={init_cash} must be positive, e.g. 10000")
    frame = candles if "symbol" in candles.columns else candles.with_columns(symbol=pl.lit("SYMBOL"))
    symbols = sorted(frame["symbol"].unique().to_list())
    grid = frame.select(pl.col("ts").unique().sort())

    def wide(col: str) -> np.ndarray:
        parts = [
            grid.join(frame.filter(pl.col("symbol") == s).select("ts", col), on="ts", how="left")[col]
            .cast(pl.Float64)
            .fill_null(np.nan)
            .to_numpy()
            for s in symbols
        ]
        return np.column_stack(parts) if parts else np.empty((grid.height, 0))

    equity = hold_equity(
        wide("open"),
        wide("close"),
        cash_per_symbol=init_cash / max(len(symbols), 1),
        fee_rate=fee_rate,
        slippage=slippage,
    )
    return _long(grid["ts"].to_numpy(), tuple(symbols), equity)


def result_benchmark(result: BacktestResult) -> pl.DataFrame:
    """Buy and hold of a backtest's symbols over its bars, with its capital, fee and slippage.

    With shared cash the capital ``init_cash`` is split among the symbols; with one portfolio
    per symbol each symbol holds its own ``init_cash``, as the strategy did.
    """
    prices = result.prices
    if prices is None:
        raise ConfigError("this BacktestResult carries no prices; run it with run_backtest or backtest_strategy")
    config = result.config
    per_symbol = config.init_cash / len(prices.symbols) if config.cash_sharing else config.init_cash
    equity = hold_equity(
        prices.open, prices.close, cash_per_symbol=per_symbol, fee_rate=config.fee_rate, slippage=config.slippage
    )
    return _long(prices.ts, prices.symbols, equity)


def _long(ts: np.ndarray, symbols: tuple[str, ...], equity: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": np.repeat(np.asarray(ts, dtype=np.int64), len(symbols)),
            "portfolio": list(symbols) * len(ts),
            "equity": equity.reshape(-1),
        }
    )
