"""Backtest API: strategies and candles in, trade ledger and equity curve (polars) out.

With ``risk`` (a ``tradeloop.risk.RiskConfig``, as a trading session stores it beside its
``BacktestConfig``), the compiled kernel applies the risk engine bar by bar as the live engine
does (``tradeloop.backtest.kernel_risk``): the result lists what it refused
(``BacktestResult.risk_denials``) and when the kill switch tripped (``kill_switch_trips``).
``risk=None`` (research's default) and ``RiskConfig(bypass=True)`` run no risk pass
(``tradeloop.backtest.guard``).

Here: the sizing of each entry (``size_fractions``) and the runs of the compiled kernel
(``simulate_arrays``, blocks of symbols on threads; the plain case, market entries without
stops or risk and one symbol per portfolio, runs ``tradeloop.backtest.kernel_plain``'s loop,
the same outputs). The input arrays are ``tradeloop.backtest.prices``'s, the result's tables
``tradeloop.backtest.result``'s.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import polars as pl

from tradeloop.backtest import guard, kernel, kernel_plain, kernel_risk
from tradeloop.backtest.atr import wilder_atr
from tradeloop.backtest.config import BacktestConfig
from tradeloop.backtest.prices import PriceArrays
from tradeloop.backtest.result import BacktestResult, backtest_result
from tradeloop.data.schema import timeframe_ms
from tradeloop.errors import BacktestError
from tradeloop.risk import MarketRules, RiskConfig
from tradeloop.risk.sizing import SizingConfig, returns_from_closes, size_frac_matrix
from tradeloop.strategies.base import Strategy

__all__ = [
    "BacktestResult",
    "PriceArrays",
    "backtest_strategy",
    "correlation_fractions",
    "periods_per_year",
    "run_backtest",
    "simulate_arrays",
    "size_fractions",
    "vol_target_fractions",
]

YEAR_MS = 365 * 86_400_000


def periods_per_year(timeframe: str) -> float:
    """Bars per year for a 24/7 market (365 days)."""
    return YEAR_MS / timeframe_ms(timeframe)


def simulate_arrays(
    prices: PriceArrays,
    config: BacktestConfig,
    *,
    size_frac: np.ndarray | None = None,
    threads: int | None = None,
    risk: RiskConfig | None = None,
    markets: Mapping[str, MarketRules] | None = None,
):
    """Run the compiled kernel on wide arrays; returns the kernel's raw tuple.

    With one portfolio per symbol (``cash_sharing=False``) the portfolios are independent:
    blocks of symbols run on ``threads`` threads (default: every core) and the results are
    the same as one pass, trades and denials ordered by block. ``risk`` and ``markets``: see
    :func:`run_backtest`.
    """
    k = len(prices.symbols)
    if size_frac is None:
        size_frac = np.full((1, 1), config.fraction)
    size_frac = np.ascontiguousarray(size_frac, dtype=np.float64)
    n_groups = 1 if config.cash_sharing else k
    equity = np.empty((len(prices.ts), n_groups))
    atr = (
        wilder_atr(prices.high, prices.low, prices.close, window=config.atr_window)
        if config.atr_stop is not None or config.atr_trailing is not None
        else None
    )
    inputs = guard.RiskInputs.of(prices.symbols, prices.ts, risk, markets)
    workers = 1 if config.cash_sharing or k == 1 else max(1, min(k, threads or os.cpu_count() or 1))
    if workers == 1:
        group = np.zeros(k, dtype=np.int64) if config.cash_sharing else np.arange(k, dtype=np.int64)
        return _kernel_call(prices, config, slice(0, k), size_frac, group, n_groups, equity, atr, inputs)
    edges = np.linspace(0, k, workers + 1).astype(int)
    blocks = [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]

    def one(cols: slice):
        m = cols.stop - cols.start
        group = np.arange(m, dtype=np.int64)
        return _kernel_call(prices, config, cols, size_frac, group, m, equity[:, cols], atr, inputs)

    with ThreadPoolExecutor(max_workers=workers) as pool:  # the kernel releases the GIL
        parts = list(pool.map(one, blocks))
    for cols, part in zip(blocks, parts, strict=True):
        part[1][:, kernel.T_SYMBOL] += cols.start
        part[5][:, kernel_risk.D_SYMBOL] += cols.start
    return (equity, *(np.concatenate([part[i] for part in parts]) for i in range(1, 7)))


def _kernel_call(
    prices: PriceArrays,
    config: BacktestConfig,
    cols: slice,
    size_frac: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    equity: np.ndarray,
    atr: np.ndarray | None,
    inputs: guard.RiskInputs,
):
    signal = prices.signal[:, cols]
    frac = size_frac if size_frac.shape == (1, 1) else size_frac[:, cols]
    scalars = config.kernel_scalars()
    risk = inputs.kernel_args(cols, group, n_groups, signal)
    # a trade needs an entry signal (each open one is listed at the end): the signals bound them,
    # counted without the temporary array of ``signal & ENTRIES``
    max_trades = int(np.count_nonzero(signal)) + signal.shape[1] + 1
    if kernel_plain.is_plain(scalars, risk, one_symbol_per_portfolio=n_groups == signal.shape[1]):
        return kernel_plain.simulate_plain(
            prices.open[:, cols],
            prices.close[:, cols],
            signal,
            frac,
            group,
            n_groups,
            scalars.init_cash,
            scalars.fee_rate,
            scalars.slippage,
            scalars.close_at_end,
            max_trades,
            equity,
        )
    return kernel.simulate(
        prices.open[:, cols],
        prices.high[:, cols],
        prices.low[:, cols],
        prices.close[:, cols],
        signal,
        frac,
        group,
        n_groups,
        scalars.init_cash,
        scalars.fee_rate,
        scalars.slippage,
        scalars.stop_loss,
        scalars.take_profit,
        scalars.trailing_stop,
        scalars.close_at_end,
        max_trades,
        equity,
        _NO_ATR if atr is None else atr[:, cols],
        scalars.atr_stop,
        scalars.atr_trailing,
        scalars.limit_ttl_bars,
        scalars.limit_offset,
        scalars.maker_fee_rate,
        risk,
    )


_NO_ATR = np.full((1, 1), np.nan)  # both ATR stops off: the kernel does not read it


def vol_target_fractions(prices: PriceArrays, config: BacktestConfig, timeframe: str) -> np.ndarray:
    """Per-bar position fraction = vol_target / annualised realised vol, capped at ``fraction``."""
    if config.vol_target is None:
        raise BacktestError("volatility-targeted sizing needs vol_target; set sizing='vol_target', vol_target=0.5")
    with np.errstate(divide="ignore", invalid="ignore"):
        logret = np.log(prices.close[1:] / prices.close[:-1])
    frame = pl.DataFrame(logret, schema=list(prices.symbols), orient="row")
    vol = frame.select(pl.all().rolling_std(window_size=config.vol_window)).to_numpy()
    ann = vol * math.sqrt(periods_per_year(timeframe))
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(ann > 0, config.vol_target / ann, 0.0)
    frac = np.nan_to_num(np.minimum(frac, config.fraction), nan=0.0)
    return np.vstack([np.zeros((1, frac.shape[1])), frac])


def correlation_fractions(prices: PriceArrays, config: BacktestConfig, timeframe: str) -> np.ndarray:
    """Per-bar position fraction from correlation-aware sizing (``tradeloop.risk.sizing``): the
    weights that bring the portfolio's ex-ante volatility to ``vol_target`` from a Ledoit-Wolf
    covariance of the last ``vol_window`` bars of returns (through each bar's close), no
    cluster of symbols correlated at ``corr_threshold`` or more above ``cluster_cap``, no
    symbol above ``fraction``, re-estimated every bar; 0 before the first full window."""
    if config.vol_target is None:
        raise BacktestError("correlation sizing needs vol_target; set sizing='correlation', vol_target=0.2")
    sizing = SizingConfig(
        target_vol=config.vol_target,
        periods_per_year=periods_per_year(timeframe),
        max_weight=config.fraction,
        cluster_cap=config.cluster_cap,
        gross_cap=1.0,
        corr_threshold=config.corr_threshold,
        min_obs=min(20, config.vol_window),
        window=config.vol_window,
        rebalance_every=1,
    )
    return size_frac_matrix(returns_from_closes(prices.close), sizing)


SIZERS = {"vol_target": vol_target_fractions, "correlation": correlation_fractions}


def size_fractions(prices: PriceArrays, config: BacktestConfig, timeframe: str) -> np.ndarray | None:
    """The kernel's per-bar ``size_frac`` for the config's sizing (None: the fixed ``fraction``)."""
    sizer = SIZERS.get(config.sizing)
    return None if sizer is None else sizer(prices, config, timeframe)


def run_backtest(
    candles: pl.DataFrame,
    config: BacktestConfig,
    *,
    timeframe: str,
    risk: RiskConfig | None = None,
    markets: Mapping[str, MarketRules] | None = None,
) -> BacktestResult:
    """Simulate candles that carry a ``signal`` column (long format, one row per symbol and bar).

    Parameters
    ----------
    candles
        ``ts, symbol, open, high, low, close, signal`` rows (``Strategy.signals`` adds the signal).
    config
        Fills, sizing and stops.
    timeframe
        The bars' timeframe, e.g. ``"4h"`` (annualisation, vol-target sizing).
    risk
        The risk engine's limits, applied bar by bar inside the kernel as the live engine does
        (``tradeloop.backtest.kernel_risk``); ``None`` or ``RiskConfig(bypass=True)``: none.
    markets
        Optional market minimums per symbol (``MarketRules`` with ``min_amount`` and
        ``min_notional`` only; read with ``risk``), e.g. ``{"BTC-USD": MarketRules(min_notional=10.0)}``.

    Returns
    -------
    BacktestResult
        With ``risk``: also ``risk_denials`` and ``kill_switch_trips``.

    Raises
    ------
    BacktestError
        For input without the needed columns, or market rules the backtest cannot apply.
    """
    prices = PriceArrays.from_frame(candles)
    size_frac = size_fractions(prices, config, timeframe)
    raw = simulate_arrays(prices, config, size_frac=size_frac, risk=risk, markets=markets)
    return backtest_result(raw, prices, config, timeframe=timeframe, risk=risk)


def backtest_strategy(
    strategy: Strategy,
    candles: pl.DataFrame,
    config: BacktestConfig,
    *,
    timeframe: str,
    risk: RiskConfig | None = None,
    markets: Mapping[str, MarketRules] | None = None,
) -> BacktestResult:
    """Signals from ``strategy`` (per symbol), then :func:`run_backtest` (``risk``, ``markets``: see there)."""
    frame = candles if "symbol" in candles.columns else candles.with_columns(symbol=pl.lit("SYMBOL"))
    result = run_backtest(strategy.signals(frame, by="symbol"), config, timeframe=timeframe, risk=risk, markets=markets)
    return replace(result, strategy=strategy.describe())
