"""Backtest API: strategies and candles in, trade ledger and equity curve (polars) out.

With ``risk`` (a ``tradeloop.risk.RiskConfig``, as a trading session stores it beside its
``BacktestConfig``), the compiled kernel applies the risk engine bar by bar as the live engine
does (``tradeloop.backtest.kernel_risk``): the result lists what it refused
(``BacktestResult.risk_denials``) and when the kill switch tripped (``kill_switch_trips``).
``risk=None`` (research's default) and ``RiskConfig(bypass=True)`` run no risk pass
(``tradeloop.backtest.guard``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from tradeloop.backtest import guard, kernel, kernel_risk
from tradeloop.backtest.atr import wilder_atr
from tradeloop.backtest.config import BacktestConfig
from tradeloop.data.schema import timeframe_ms
from tradeloop.errors import BacktestError
from tradeloop.risk import MarketRules, RiskConfig
from tradeloop.risk.sizing import SizingConfig, returns_from_closes, size_frac_matrix
from tradeloop.strategies.base import Strategy
from tradeloop.strategies.signals import ENTRIES

if TYPE_CHECKING:  # plotly and the report modules load on first use: `import tradeloop` stays fast
    import plotly.graph_objects as go

    from tradeloop.performance.stats import Stats

YEAR_MS = 365 * 86_400_000


def periods_per_year(timeframe: str) -> float:
    """Bars per year for a 24/7 market (365 days)."""
    return YEAR_MS / timeframe_ms(timeframe)


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
        dup = frame.select(pl.struct("symbol", "ts").is_duplicated().any()).item()
        if dup:
            raise BacktestError("backtest input has two candles for one (symbol, ts); deduplicate it")
        symbols = tuple(sorted(frame["symbol"].unique().to_list()))
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


@dataclass(frozen=True)
class BacktestResult:
    """Equity curve and trade ledger of one backtest (deterministic for equal inputs)."""

    config: BacktestConfig
    timeframe: str
    symbols: tuple[str, ...]
    equity: pl.DataFrame  # ts, portfolio, equity
    trades: pl.DataFrame  # one row per trade, open ones flagged
    bars_in_market: np.ndarray
    traded_notional: np.ndarray
    extra: dict = field(default_factory=dict)
    prices: PriceArrays | None = None  # the bars simulated: the benchmark and the price charts read them
    strategy: str | None = None  # Strategy.describe(), e.g. "sma_cross(10,30)"
    risk: RiskConfig | None = None  # the risk engine applied (None: none)
    # what the risk engine refused: ts, portfolio, symbol, kind, rule, limit, value (one row per denied intent)
    risk_denials: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=guard.DENIALS_SCHEMA))
    # when each portfolio's kill switch tripped: ts, portfolio, rule, equity, reference, value, limit
    kill_switch_trips: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=guard.TRIPS_SCHEMA))

    @property
    def final_equity(self) -> float:
        last = self.equity.group_by("portfolio").agg(pl.col("equity").last())
        return float(last["equity"].sum())

    # ------------------------------------------------ reports (tradeloop.performance; plotly imported lazily)
    def candles(self, symbol: str | None = None) -> pl.DataFrame:
        """The simulated bars as ``ts, symbol, open, high, low, close`` (one symbol, or all), gaps dropped."""
        from tradeloop.performance.stats import result_candles

        return result_candles(self, symbol)

    def benchmark(self) -> pl.DataFrame:
        """Equal-weight buy and hold of the same symbols and bars (``ts, portfolio, equity``)."""
        from tradeloop.performance.benchmark import result_benchmark

        return result_benchmark(self)

    def stats(self, *, min_days: float = 30.0) -> Stats:
        """One readable table: period, exposure, trades, returns, risk (beside buy and hold), per symbol.

        Annualised figures of a period shorter than ``min_days`` show a caveat instead of a number.
        """
        from tradeloop.performance.stats import result_stats

        return result_stats(self, min_days=min_days)

    def plot_equity(
        self,
        *,
        benchmark: bool = True,
        log_scale: bool = False,
        title: str | None = None,
        max_points: int | None = 5000,
    ) -> go.Figure:
        """Equity over drawdown (plotly figure), with buy and hold unless ``benchmark=False``; lines
        longer than ``max_points`` keep the extremes of short runs of bars (``None``: every bar)."""
        from tradeloop.performance.plots import equity_figure

        return equity_figure(
            self.equity,
            benchmark=self.benchmark() if benchmark else None,
            log_scale=log_scale,
            title=title or self.strategy,
            init_cash=self.capital,
            max_points=max_points,
        )

    def plot_candles(
        self,
        symbol: str | None = None,
        *,
        title: str | None = None,
        max_candles: int | None = 5000,
        max_markers: int | None = 5000,
    ) -> go.Figure:
        """Candlesticks of ``symbol`` (default: the first) with this backtest's entries and exits
        (every n-th trade above ``max_markers``, as the title says)."""
        from tradeloop.performance.plots import candles_figure

        symbol = symbol or self.symbols[0]
        return candles_figure(
            self.candles(symbol),
            trades=self.trades,
            symbol=symbol,
            title=title,
            max_candles=max_candles,
            max_markers=max_markers,
        )

    def plot_monthly_returns(self, *, title: str | None = None) -> go.Figure:
        """Heatmap of calendar-month returns (years x months, in %)."""
        from tradeloop.performance.plots import monthly_returns_figure

        return monthly_returns_figure(self.equity, init_cash=self.capital, title=title)

    def plot_rolling_sharpe(
        self,
        *,
        window_days: float = 90,
        benchmark: bool = True,
        title: str | None = None,
        max_points: int | None = 5000,
    ) -> go.Figure:
        """Sharpe ratio over a trailing window of ``window_days``, beside buy and hold's (thinned as
        :meth:`plot_equity`)."""
        from tradeloop.performance.plots import rolling_sharpe_figure

        return rolling_sharpe_figure(
            self.equity,
            timeframe=self.timeframe,
            window_days=window_days,
            benchmark=self.benchmark() if benchmark else None,
            init_cash=self.capital,
            title=title,
            max_points=max_points,
        )

    def write_report(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write a self-contained HTML tearsheet (plotly embedded, no network needed) to ``path``."""
        from tradeloop.performance.tearsheet import write_tearsheet

        return write_tearsheet(self, path, title=title)

    @property
    def capital(self) -> float:
        """The starting capital of the whole account: ``init_cash`` per portfolio."""
        return float(self.config.init_cash) * (1 if self.config.cash_sharing else len(self.symbols))


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
    workers = 1 if config.cash_sharing else max(1, min(k, threads or os.cpu_count() or 1))
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
    nan = float("nan")
    limit = config.entry_order == "limit"
    maker_fee = config.fee_rate if config.maker_fee_rate is None else config.maker_fee_rate
    return kernel.simulate(
        prices.open[:, cols],
        prices.high[:, cols],
        prices.low[:, cols],
        prices.close[:, cols],
        signal,
        frac,
        group,
        n_groups,
        float(config.init_cash),
        float(config.fee_rate),
        float(config.slippage),
        nan if config.stop_loss is None else float(config.stop_loss),
        nan if config.take_profit is None else float(config.take_profit),
        nan if config.trailing_stop is None else float(config.trailing_stop),
        bool(config.close_at_end),
        int(np.count_nonzero(signal & ENTRIES)) + signal.shape[1] + 1,
        equity,
        _NO_ATR if atr is None else atr[:, cols],
        nan if config.atr_stop is None else float(config.atr_stop),
        nan if config.atr_trailing is None else float(config.atr_trailing),
        int(config.limit_ttl_bars) if limit else 0,
        float(config.limit_offset),
        float(maker_fee),
        inputs.kernel_args(cols, group, n_groups, signal),
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
    equity, trades, _cash, in_market, notional, denials, trips = simulate_arrays(
        prices, config, size_frac=size_frac, risk=risk, markets=markets
    )
    portfolios = ["portfolio"] if config.cash_sharing else list(prices.symbols)
    equity_frame = pl.DataFrame(
        {
            "ts": np.repeat(prices.ts, len(portfolios)),
            "portfolio": portfolios * len(prices.ts),
            "equity": equity.reshape(-1),
        }
    )
    return BacktestResult(
        config=config,
        timeframe=timeframe,
        symbols=prices.symbols,
        equity=equity_frame,
        trades=_ledger(trades, prices),
        bars_in_market=in_market,
        traded_notional=notional,
        prices=prices,
        risk=risk if guard.active(risk) else None,
        risk_denials=guard.denials_frame(denials, prices.ts, prices.symbols, portfolios),
        kill_switch_trips=guard.trips_frame(trips, prices.ts, portfolios),
    )


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


def _ledger(trades: np.ndarray, prices: PriceArrays) -> pl.DataFrame:
    k = kernel
    idx_entry = trades[:, k.T_ENTRY_BAR].astype(np.int64)
    idx_exit = trades[:, k.T_EXIT_BAR].astype(np.int64)
    reasons = np.array(k.EXIT_REASONS)[trades[:, k.T_REASON].astype(np.int64)]
    frame = pl.DataFrame(
        {
            "symbol": np.array(prices.symbols, dtype=object)[trades[:, k.T_SYMBOL].astype(np.int64)].astype(str)
            if len(trades)
            else np.array([], dtype=str),
            "side": np.where(trades[:, k.T_DIRECTION] > 0, "long", "short"),
            "entry_ts": prices.ts[idx_entry],
            "exit_ts": prices.ts[idx_exit],
            "qty": trades[:, k.T_QTY],
            "entry_price": trades[:, k.T_ENTRY_PRICE],
            "exit_price": trades[:, k.T_EXIT_PRICE],
            "fees": trades[:, k.T_FEES],
            "pnl": trades[:, k.T_PNL],
            "return": trades[:, k.T_RETURN],
            "exit_reason": reasons,
            "bars_held": idx_exit - idx_entry,
        }
    )
    return frame.with_columns(is_open=pl.col("exit_reason") == "open").sort("entry_ts", "symbol")
