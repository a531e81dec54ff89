"""Metrics cross-checked against empyrical (annualised with 365-day periods) on real data."""

import math

import empyrical
import numpy as np
import pandas as pd
import polars as pl
import pytest

from tradeloop.backtest import BacktestConfig, backtest_strategy, periods_per_year
from tradeloop.performance import compute_metrics, equity_returns, result_metrics
from tradeloop.strategies import SmaCross


def _curves(btc_1h: pl.DataFrame) -> list[tuple[np.ndarray, float]]:
    hold = btc_1h["close"].to_numpy() / btc_1h["close"][0] * 10_000.0
    strat = backtest_strategy(SmaCross(), btc_1h, BacktestConfig(), timeframe="1h").equity["equity"].to_numpy()
    return [(hold, 8760.0), (strat, periods_per_year("1h"))]


@pytest.mark.parametrize("which", [0, 1], ids=["buy_and_hold", "sma_cross"])
def test_against_empyrical(btc_1h: pl.DataFrame, which: int) -> None:
    equity, ppy = _curves(btc_1h)[which]
    ours = compute_metrics(equity, init_cash=10_000.0, periods_per_year=ppy)
    r = pd.Series(equity_returns(equity, 10_000.0))
    ann = {"annualization": ppy}
    assert ours.sharpe == pytest.approx(empyrical.sharpe_ratio(r, **ann), rel=1e-9)
    assert ours.sortino == pytest.approx(empyrical.sortino_ratio(r, **ann), rel=1e-9)
    assert ours.volatility == pytest.approx(empyrical.annual_volatility(r, **ann), rel=1e-9)
    assert ours.cagr == pytest.approx(empyrical.annual_return(r, **ann), rel=1e-9)
    # empyrical's first peak is after the first return; a leading zero return makes it the capital
    r0 = pd.Series(np.concatenate([[0.0], r.to_numpy()]))
    assert ours.max_drawdown == pytest.approx(empyrical.max_drawdown(r0), rel=1e-9)
    assert ours.calmar == pytest.approx(ours.cagr / abs(empyrical.max_drawdown(r0)), rel=1e-9)
    assert ours.total_return == pytest.approx(empyrical.cum_returns_final(r), rel=1e-9)


def test_365_day_annualisation() -> None:
    assert periods_per_year("1d") == 365 and periods_per_year("1h") == 8760
    daily = np.full(365, 1.001) ** np.arange(1, 366) * 100
    report = compute_metrics(daily, init_cash=100.0, periods_per_year=365)
    assert report.cagr == pytest.approx(1.001**365 - 1, rel=1e-12)


def test_drawdown_duration_and_trade_stats() -> None:
    equity = np.array([110, 100, 90, 95, 111, 120, 100, 125.0])
    trades = pl.DataFrame(
        {
            "pnl": [10.0, -5.0, 20.0, -2.0, 7.0],
            "return": [0.1, -0.05, 0.2, -0.02, 0.07],
            "is_open": [False, False, False, False, True],
        }
    )
    rep = compute_metrics(
        equity, init_cash=100.0, periods_per_year=365, trades=trades, bars_in_market=4, traded_notional=800.0
    )
    assert rep.max_drawdown == pytest.approx(90 / 110 - 1)
    assert rep.max_drawdown_bars == 3 and rep.max_drawdown_days == 3
    assert rep.win_rate == 0.5 and rep.profit_factor == pytest.approx(30 / 7)
    assert rep.expectancy == pytest.approx(23 / 4) and rep.trades == 5 and rep.open_trades == 1
    assert rep.exposure == 0.5
    assert rep.turnover == pytest.approx(800 / equity.mean() / (8 / 365))


def test_no_trades_gives_nan_not_errors() -> None:
    rep = compute_metrics(np.full(10, 100.0), init_cash=100.0, periods_per_year=365)
    assert math.isnan(rep.win_rate) and math.isnan(rep.sharpe) and rep.max_drawdown == 0
    with pytest.raises(ValueError, match="periods_per_year"):
        compute_metrics(np.ones(3), init_cash=1.0, periods_per_year=0)


def test_result_metrics_per_symbol(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame) -> None:
    both = pl.concat([btc_4h.with_columns(symbol=pl.lit("BTC")), eth_4h.with_columns(symbol=pl.lit("ETH"))])
    res = backtest_strategy(SmaCross(), both, BacktestConfig(cash_sharing=False), timeframe="4h")
    table = result_metrics(res)
    assert table["portfolio"].to_list() == ["BTC", "ETH"]
    alone = result_metrics(backtest_strategy(SmaCross(), btc_4h, BacktestConfig(), timeframe="4h"))
    # aligned on the union of timestamps, BTC's own curve has a few extra flat bars
    assert table["trades"][0] == alone["trades"][0]
    assert table["total_return"][0] == pytest.approx(alone["total_return"][0], rel=1e-9)
