"""BacktestResult.stats() and the buy-and-hold benchmark, checked against hand arithmetic and empyrical."""

from __future__ import annotations

import math

import empyrical
import numpy as np
import pandas as pd
import polars as pl
import pytest

from tradeloop.backtest import BacktestConfig, backtest_strategy, run_backtest
from tradeloop.performance import buy_and_hold
from tradeloop.strategies import SmaCross
from tradeloop.strategies.signals import ENTER_LONG, EXIT_LONG

DAY = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def _hand_made(prices: list[float], signals: dict[int, int], symbol: str = "AAA") -> pl.DataFrame:
    """Daily bars with open = high = low = close, so every fill price is the listed price."""
    n = len(prices)
    return pl.DataFrame(
        {
            "ts": [T0 + i * DAY for i in range(n)],
            "symbol": [symbol] * n,
            "open": prices,
            "high": prices,
            "low": prices,
            "close": prices,
            "signal": [signals.get(i, 0) for i in range(n)],
        }
    ).with_columns(pl.col("signal").cast(pl.Int8))


# enter at bar 0's close -> buy at bar 1's open (100); exit at 2 -> sell at bar 3 (120): +20%
# enter at 3 -> buy at bar 4 (90); exit at 5 -> sell at bar 6 (81): -10%
PRICES = [100.0, 100.0, 110.0, 120.0, 90.0, 90.0, 81.0, 81.0, 81.0, 81.0]
SIGNALS = {0: ENTER_LONG, 2: EXIT_LONG, 3: ENTER_LONG, 5: EXIT_LONG}


@pytest.fixture(scope="module")
def hand_result():
    return run_backtest(_hand_made(PRICES, SIGNALS), BacktestConfig(init_cash=1000.0, fee_rate=0.0), timeframe="1d")


def test_stats_of_a_hand_computed_backtest(hand_result) -> None:
    stats = hand_result.stats()
    s = stats.strategy
    # equity: 1000 1000 1100 1200 1200 1200 1080 1080 1080 1080
    assert s.total_return == pytest.approx(0.08)
    assert s.trades == 2 and s.win_rate == 0.5
    assert s.profit_factor == pytest.approx(200 / 120) and s.expectancy == pytest.approx(40.0)
    assert stats.best_trade == pytest.approx(0.20) and stats.worst_trade == pytest.approx(-0.10)
    assert stats.avg_trade_days == pytest.approx(2.0)  # bought at bar 1, sold at bar 3; 4 -> 6
    assert s.exposure == pytest.approx(0.4)  # a position at the close of bars 1, 2, 4, 5
    assert s.max_drawdown == pytest.approx(1080 / 1200 - 1) and s.max_drawdown_days == pytest.approx(4.0)
    assert stats.days == 10 and stats.bars == 10
    # buy and hold: 10 units at 100 -> 810 at the end; worst at 81 from the peak 1200
    b = stats.benchmark
    assert b.total_return == pytest.approx(-0.19) and b.max_drawdown == pytest.approx(810 / 1200 - 1)

    table = {row[1]: row[2:] for row in stats.table().iter_rows()}
    assert table["total return"] == ("+8.00%", "-19.00%")
    assert table["max drawdown"] == ("-10.00%", "-32.50%")
    assert table["win rate"][0] == "50.0%" and table["trades"][0] == "2"
    assert table["first bar"][0] == "2024-01-01" and table["last bar"][0] == "2024-01-10"
    assert table["longest drawdown"][0] == "4.0 days"


def test_a_short_sample_gets_a_caveat_instead_of_annualised_figures(hand_result) -> None:
    stats = hand_result.stats()
    assert stats.short_sample
    table = {row[1]: row[2:] for row in stats.table().iter_rows()}
    for metric in ("CAGR", "volatility (annual)", "Sharpe", "Sortino", "Calmar"):
        assert table[metric] == ("n/a: 10 days < 30", "n/a: 10 days < 30"), metric
    assert "n/a: 10 days < 30" in str(stats) and "n/a: 10 days &lt; 30" in stats._repr_html_()
    # the raw figure is kept; with a lower bar it is shown
    assert stats.strategy.cagr == pytest.approx(1.08 ** (365 / 10) - 1)
    shown = {row[1]: row[2] for row in hand_result.stats(min_days=5).table().iter_rows()}
    assert shown["CAGR"] == f"{1.08**36.5 - 1:+,.2%}"  # 1,559.46%: thousands separated


def test_benchmark_is_equal_weight_buy_and_hold_paying_fee_and_slippage() -> None:
    # BBB has no candle on the first bar: its half of the capital waits in cash, then buys at its first open
    a = pl.DataFrame({"ts": [0, 1, 2], "symbol": "A", "open": [10.0, 11.0, 12.0], "close": [11.0, 12.0, 9.0]})
    b = pl.DataFrame({"ts": [1, 2], "symbol": "B", "open": [50.0, 40.0], "close": [45.0, 60.0]})
    bench = buy_and_hold(pl.concat([a, b]), init_cash=2000.0, fee_rate=0.01, slippage=0.02)
    wide = bench.pivot(on="portfolio", index="ts", values="equity").sort("ts")
    qty_a = 1000.0 / (10.0 * 1.02 * 1.01)
    qty_b = 1000.0 / (50.0 * 1.02 * 1.01)
    assert wide["A"].to_list() == pytest.approx([qty_a * 11, qty_a * 12, qty_a * 9])
    assert wide["B"].to_list() == pytest.approx([1000.0, qty_b * 45, qty_b * 60])


def test_benchmark_of_a_result_matches_hand_buy_and_hold_on_real_data(btc_4h, eth_4h) -> None:
    both = pl.concat([btc_4h.with_columns(symbol=pl.lit("BTC")), eth_4h.with_columns(symbol=pl.lit("ETH"))])
    both = both.filter(pl.col("ts") >= T0)
    config = BacktestConfig(init_cash=5000.0, fee_rate=0.002, slippage=0.001, fraction=0.5)
    result = backtest_strategy(SmaCross(), both, config, timeframe="4h")
    bench = result.benchmark()
    for sym, frame in (("BTC", btc_4h), ("ETH", eth_4h)):
        bars = frame.filter(pl.col("ts") >= T0).sort("ts")
        qty = 2500.0 / (bars["open"][0] * 1.001 * 1.002)
        final = bench.filter(pl.col("portfolio") == sym)["equity"][-1]
        assert final == pytest.approx(qty * bars["close"][-1], rel=1e-12), sym
    stats = result.stats()
    total = bench.group_by("ts").agg(pl.col("equity").sum()).sort("ts")["equity"].to_numpy()
    assert stats.benchmark.total_return == pytest.approx(total[-1] / 5000.0 - 1, rel=1e-12)
    per = {r["symbol"]: r for r in stats.per_symbol.iter_rows(named=True)}
    assert per["BTC"]["buy_and_hold"] == pytest.approx(
        bench.filter(pl.col("portfolio") == "BTC")["equity"][-1] / 2500.0 - 1
    )
    # shared cash: the symbols' pnl adds up to the account's return
    assert per["BTC"]["return"] + per["ETH"]["return"] == pytest.approx(stats.strategy.total_return, rel=1e-9)


def test_separate_portfolios_sum_into_one_account_checked_with_empyrical(btc_4h, eth_4h) -> None:
    both = pl.concat([btc_4h.with_columns(symbol=pl.lit("BTC")), eth_4h.with_columns(symbol=pl.lit("ETH"))])
    result = backtest_strategy(SmaCross(), both, BacktestConfig(cash_sharing=False), timeframe="4h")
    stats = result.stats()
    account = result.equity.group_by("ts").agg(pl.col("equity").sum()).sort("ts")["equity"].to_numpy()
    r = pd.Series(np.concatenate([[account[0] / 20_000.0 - 1], account[1:] / account[:-1] - 1]))
    ann = {"annualization": 365 * 6}
    assert stats.strategy.sharpe == pytest.approx(empyrical.sharpe_ratio(r, **ann), rel=1e-9)
    assert stats.strategy.cagr == pytest.approx(empyrical.annual_return(r, **ann), rel=1e-9)
    assert stats.strategy.max_drawdown == pytest.approx(
        empyrical.max_drawdown(pd.Series(np.concatenate([[0.0], r.to_numpy()]))), rel=1e-9
    )
    assert stats.strategy.total_return == pytest.approx(account[-1] / 20_000.0 - 1)
    assert not stats.short_sample
    per = stats.symbols_table()
    assert per["symbol"].to_list() == ["BTC", "ETH"] and {"sharpe", "max drawdown"} <= set(per.columns)
    assert stats.per_symbol["trades"].sum() == result.trades.height


def test_stats_without_trades_print_dashes_not_errors() -> None:
    flat = run_backtest(_hand_made([100.0] * 40, {}), BacktestConfig(), timeframe="1d")
    stats = flat.stats()
    table = {row[1]: row[2] for row in stats.table().iter_rows()}
    assert table["trades"] == "0" and table["win rate"] == "-" and table["best trade"] == "-"
    assert table["max drawdown"] == "0.00%" and table["Sharpe"] == "-"
    assert math.isnan(stats.best_trade)


@pytest.mark.parametrize(
    ("shared", "strategy", "hold"), [(False, (39 + 19) / 2 / 40, (40 + 20) / 2 / 40), (True, 39 / 40, 1.0)]
)
def test_time_in_market_of_buy_and_hold_counts_a_late_symbol_as_the_strategy_does(shared, strategy, hold) -> None:
    # BBB starts on bar 20: held on its 20 bars, its own portfolio (separate cash) is out of the market before;
    # buy and hold read 100% whatever the symbols' starts, beside a strategy measured per portfolio
    a = _hand_made([100.0] * 40, {0: ENTER_LONG}, symbol="AAA")
    b = _hand_made([50.0] * 20, {0: ENTER_LONG}, symbol="BBB").with_columns(pl.col("ts") + 20 * DAY)
    result = run_backtest(pl.concat([a, b]), BacktestConfig(cash_sharing=shared, fraction=0.5), timeframe="1d")
    stats = result.stats()
    assert stats.strategy.exposure == pytest.approx(strategy)
    assert stats.benchmark.exposure == pytest.approx(hold)
