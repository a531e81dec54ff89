"""A sweep equals a single backtest of each (parameter set, symbol), on the bundled real candles."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import numpy as np
import polars as pl
import pytest

from tradeloop.backtest import BacktestConfig, backtest_strategy, kernel, periods_per_year, sweep, sweep_kernel
from tradeloop.errors import BacktestError, ConfigError
from tradeloop.features.memory import Memory
from tradeloop.performance.metrics import compute_metrics
from tradeloop.strategies import Breakout, Momentum, SmaCross, Strategy, ThresholdRule


def candles_of(*names: str) -> pl.DataFrame:
    """Sample series side by side as symbols named after their files (each on its own timestamps)."""
    from conftest import sample

    return pl.concat(
        [sample(name).select("ts", "open", "high", "low", "close").with_columns(symbol=pl.lit(name)) for name in names]
    )


def assert_same_as_single_runs(
    result: pl.DataFrame, candles: pl.DataFrame, config: BacktestConfig, timeframe: str, build
) -> None:
    ppy = periods_per_year(timeframe)
    for row in result.iter_rows(named=True):
        single = backtest_strategy(
            build(row), candles.filter(pl.col("symbol") == row["symbol"]), config, timeframe=timeframe
        )
        equity = single.equity["equity"].to_numpy()
        metrics = compute_metrics(equity, init_cash=config.init_cash, periods_per_year=ppy)
        where = f"{row['symbol']} {build(row)}"
        assert row["trades"] == single.trades.height > 0, where
        assert row["final_equity"] == pytest.approx(single.final_equity, rel=1e-9), where
        assert row["total_return"] == pytest.approx(metrics.total_return, rel=1e-9), where
        assert row["sharpe"] == pytest.approx(metrics.sharpe, rel=1e-9), where
        assert row["max_drawdown"] == pytest.approx(metrics.max_drawdown, rel=1e-9), where
        if "equity" in row:
            np.testing.assert_allclose(row["equity"], equity, rtol=1e-12, err_msg=where)


def test_every_grid_combination_equals_its_single_run() -> None:
    candles = candles_of("coinbase__BTC-USD__4h", "coinbase__ETH-USD__4h")
    config = BacktestConfig(fee_rate=0.001, slippage=0.0005, stop_loss=0.08, trailing_stop=0.15, fraction=0.8)
    rule = ThresholdRule(allow_short=True)
    result = sweep(SmaCross(rule=rule), {"fast": [5, 12], "slow": [20, 50]}, candles, config, timeframe="4h")
    assert result.height == 8
    assert result.select("fast", "slow", "symbol").rows() == [
        (fast, slow, symbol)
        for fast in (5, 12)
        for slow in (20, 50)
        for symbol in ("coinbase__BTC-USD__4h", "coinbase__ETH-USD__4h")
    ]
    assert "equity" not in result.columns  # curves only on request
    assert_same_as_single_runs(
        result, candles, config, "4h", lambda row: SmaCross(fast=row["fast"], slow=row["slow"], rule=rule)
    )


def test_one_parameter_strategies_with_sizing_atr_stops_and_curves() -> None:
    candles = candles_of("bitstamp__BTC-USD__1m", "binance__BTC-BUSD__1m")
    config = BacktestConfig(sizing="vol_target", vol_target=0.5, atr_stop=2.0, atr_trailing=3.0, close_at_end=True)
    sets = [{"lookback": 10}, {"lookback": 30, "rule": ThresholdRule(entry=0.5, exit=-0.5, allow_short=True)}]
    result = sweep("momentum", sets, candles, config, timeframe="1m", equity_curves=True)
    assert result.columns[:4] == ["lookback", "rule_entry", "rule_exit", "rule_allow_short"]
    assert_same_as_single_runs(
        result,
        candles,
        config,
        "1m",
        lambda row: Momentum(
            lookback=row["lookback"],
            rule=ThresholdRule(entry=row["rule_entry"], exit=row["rule_exit"], allow_short=row["rule_allow_short"]),
        ),
    )
    limit = BacktestConfig(entry_order="limit", limit_offset=0.001, limit_ttl_bars=3, take_profit=0.01)
    result = sweep(Breakout, {"window": [20, 40]}, candles, limit, timeframe="1m", equity_curves=True)
    assert_same_as_single_runs(result, candles, limit, "1m", lambda row: Breakout(window=row["window"]))


class Custom(Strategy):
    name: ClassVar[str] = "custom"

    def score_expr(self) -> pl.Expr:
        return pl.col("close").pct_change()

    @property
    def score_memory(self) -> Memory:
        return Memory.bars(2)


@pytest.mark.parametrize(
    ("strategy", "params", "error", "words"),
    [
        ("sma_crosss", {"fast": [5]}, ConfigError, ["strategy='sma_crosss'", "sma_cross"]),
        (Custom, {"rule": [ThresholdRule()]}, BacktestError, ["'custom'", "sma_cross", "backtest_strategy"]),
        ("sma_cross", {"fast": [5, 40], "slow": [30]}, ConfigError, ["fast=40", "slow=30", "list of parameter"]),
        ("sma_cross", {"fastt": [5]}, ConfigError, ["fastt=5", "did you mean 'fast'"]),
        ("sma_cross", {"fast": 5}, ConfigError, ["params['fast']=5", "[5]"]),
        ("sma_cross", {}, ConfigError, ["params={}", "'fast': [5, 10]"]),
        ("sma_cross", [], ConfigError, ["params=[]"]),
        ("sma_cross", [{"fast": 5}, 7], ConfigError, ["params[1]=7"]),
        ("sma_cross", {"slow": []}, ConfigError, ["params['slow']=[]"]),
    ],
)
def test_bad_parameters_are_refused_with_the_fix(strategy, params, error, words) -> None:
    candles = candles_of("binanceus__ETH-USD__5m")
    with pytest.raises(error) as caught:
        sweep(strategy, params, candles, BacktestConfig(), timeframe="5m")
    for word in words:
        assert word in str(caught.value)


def test_bad_candles_config_and_timeframe_are_refused() -> None:
    candles = candles_of("binanceus__ETH-USD__5m")
    grid = {"fast": [5], "slow": [20]}
    with pytest.raises(BacktestError, match=r"lack column\(s\) \['open'\]"):
        sweep("sma_cross", grid, candles.drop("open"), BacktestConfig(), timeframe="5m")
    with pytest.raises(BacktestError, match="deduplicate"):
        sweep("sma_cross", grid, pl.concat([candles, candles.head(1)]), BacktestConfig(), timeframe="5m")
    with pytest.raises(ConfigError, match="config=.*BacktestConfig"):
        sweep("sma_cross", grid, candles, {"fee_rate": 0.001}, timeframe="5m")  # type: ignore[arg-type]
    # a broken candle is refused, not traded (an infinite close gave other trades than backtest_strategy's)
    at = pl.int_range(pl.len()) == 100
    for column, value, words in (
        ("close", float("inf"), "close=inf"),
        ("low", 0.0, "low=0.0"),
        ("high", -1.0, "high=-1.0"),
        ("ts", None, "ts=None"),
        ("symbol", None, "symbol=None"),
    ):
        broken = candles.with_columns(pl.when(at).then(pl.lit(value)).otherwise(pl.col(column)).alias(column))
        with pytest.raises(BacktestError, match=words):
            sweep("sma_cross", grid, broken, BacktestConfig(), timeframe="5m")
    with pytest.raises(BacktestError, match="not a number"):
        sweep("sma_cross", grid, candles.with_columns(close=pl.lit("n/a")), BacktestConfig(), timeframe="5m")
    with pytest.raises(ConfigError, match="timeframe='5 min'"):
        sweep("sma_cross", grid, candles, BacktestConfig(), timeframe="5 min")


def test_the_sweep_kernel_digest_follows_kernel_py() -> None:
    """numba caches the sweep's pass by its own file, with kernel.simulate compiled into it."""
    digest = hashlib.sha256(Path(kernel.__file__).read_bytes()).hexdigest()
    assert sweep_kernel.KERNEL_SHA256 == digest, (
        "tradeloop/backtest/kernel.py changed, and numba's cache of the sweep only sees sweep_kernel.py: "
        f'set KERNEL_SHA256 = "{digest}" in tradeloop/backtest/sweep_kernel.py so it recompiles'
    )
