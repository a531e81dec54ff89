"""Plotly figures carry the data they claim: equity, drawdown, markers per trade, months, rolling Sharpe."""

from __future__ import annotations

import os
import re
import shutil

import empyrical
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import polars as pl
import pytest

from tradeloop.backtest import BacktestConfig, backtest_strategy
from tradeloop.errors import ConfigError
from tradeloop.performance import plots
from tradeloop.strategies import SmaCross

T0 = 1_704_067_200_000  # 2024-01-01 UTC
CHROMIUM = os.environ.get("TRADELOOP_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def two_symbols(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame) -> pl.DataFrame:
    both = pl.concat([btc_4h.with_columns(symbol=pl.lit("BTC")), eth_4h.with_columns(symbol=pl.lit("ETH"))])
    return both.filter(pl.col("ts") >= T0)


@pytest.fixture(scope="module")
def result(two_symbols: pl.DataFrame):
    return backtest_strategy(SmaCross(), two_symbols, BacktestConfig(fraction=0.5, fee_rate=0.001), timeframe="4h")


def _trace(fig: go.Figure, name: str):
    found = [t for t in fig.data if t.name == name]
    assert len(found) == 1, [t.name for t in fig.data]
    return found[0]


def test_equity_figure_shows_equity_drawdown_and_benchmark(result) -> None:
    fig = result.plot_equity()
    assert {t.name for t in fig.data} == {"strategy", "drawdown", "buy & hold", "buy & hold drawdown"}
    equity = _trace(fig, "strategy")
    assert np.allclose(equity.y, result.equity["equity"].to_numpy())
    assert np.array_equal(equity.x, result.equity["ts"].to_numpy().astype(float))  # epoch ms on a date axis
    stats = result.stats()
    assert min(_trace(fig, "drawdown").y) == pytest.approx(stats.strategy.max_drawdown, rel=1e-12)
    assert min(_trace(fig, "buy & hold drawdown").y) == pytest.approx(stats.benchmark.max_drawdown, rel=1e-12)
    assert _trace(fig, "buy & hold").y[-1] == pytest.approx(stats.benchmark.final_equity)
    assert fig.layout.xaxis.type == "date" and fig.layout.yaxis2.tickformat == ".0%"
    assert fig.layout.yaxis.rangemode != "tozero" and fig.layout.yaxis.type == "linear"
    assert result.plot_equity(log_scale=True, benchmark=False).layout.yaxis.type == "log"


def test_equity_figure_takes_a_time_column_and_sums_portfolios() -> None:
    frame = pl.DataFrame(
        {
            "time": pl.datetime_range(
                pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 3), "1d", eager=True, time_zone="UTC"
            ).extend(
                pl.datetime_range(pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 3), "1d", eager=True, time_zone="UTC")
            ),
            "portfolio": ["a"] * 3 + ["b"] * 3,
            "equity": [100.0, 90.0, 120.0, 100.0, 100.0, 100.0],
        }
    )
    fig = plots.equity_figure(frame, init_cash=200.0)
    assert list(_trace(fig, "strategy").y) == [200.0, 190.0, 220.0]
    assert list(_trace(fig, "drawdown").y) == pytest.approx([0.0, 190 / 200 - 1, 0.0])
    assert _trace(fig, "strategy").x[0] == T0
    with pytest.raises(ConfigError, match="needs 'equity' and a time column"):
        plots.equity_figure(frame.drop("time"))


def test_candles_have_one_entry_marker_per_trade_and_one_exit_per_closed_trade(result) -> None:
    for sym in ("BTC", "ETH"):
        fig = result.plot_candles(sym)
        trades = result.trades.filter(pl.col("symbol") == sym)
        entries, exits = _trace(fig, "entries"), _trace(fig, "exits")
        assert len(entries.x) == trades.height
        assert len(exits.x) == trades.filter(~pl.col("is_open")).height
        assert list(entries.y) == trades["entry_price"].to_list()
        assert list(entries.x) == trades["entry_ts"].cast(pl.Float64).to_list()
        assert set(entries.marker.symbol) == {"triangle-up"}  # long only: buys
        assert set(exits.marker.symbol) == {"triangle-down"}
        candles = _trace(fig, "candles")
        bars = result.candles(sym)
        assert len(candles.x) == bars.height and max(candles.high) == bars["high"].max()


def test_long_histories_are_drawn_with_merged_candles(two_symbols) -> None:
    btc = two_symbols.filter(pl.col("symbol") == "BTC")
    fig = plots.candles_figure(btc, max_candles=500)
    candles = _trace(fig, "candles")
    n = -(-btc.height // 500)
    assert len(candles.x) <= 500 and f"one candle = {n} bars" in fig.layout.title.text
    assert max(candles.high) == btc["high"].max() and min(candles.low) == btc["low"].min()
    assert candles.open[0] == btc["open"][0] and candles.close[-1] == btc["close"][-1]


def test_candles_from_live_fills_and_clear_errors(two_symbols) -> None:
    btc = two_symbols.filter(pl.col("symbol") == "BTC").head(100)
    fills = pl.DataFrame(
        {
            "ts": btc["ts"].gather([10, 20, 30]),
            "symbol": "BTC",
            "side": ["buy", "sell", "BUY"],
            "price": [1.0, 2.0, 3.0],
            "quantity": [1.0, 1.0, 1.0],
        }
    )
    fig = plots.candles_figure(btc, trades=fills)
    assert list(_trace(fig, "buys").y) == [1.0, 3.0] and list(_trace(fig, "sells").y) == [2.0]
    with pytest.raises(ConfigError, match="pass symbol=, e.g. symbol='BTC'"):
        plots.candles_figure(two_symbols)
    with pytest.raises(ConfigError, match="symbol='DOGE' is not in the candles"):
        plots.candles_figure(two_symbols, symbol="DOGE")
    with pytest.raises(ConfigError, match=r"candles lack column\(s\) \['open'\]"):
        plots.candles_figure(btc.drop("open"))


def test_monthly_heatmap_matches_month_end_returns(result) -> None:
    fig = result.plot_monthly_returns()
    heat = fig.data[0]
    account = result.equity.to_pandas().set_index("ts")["equity"]
    account.index = pd.to_datetime(account.index, unit="ms")
    month_end = account.resample("ME").last()
    expected = month_end.pct_change()
    expected.iloc[0] = month_end.iloc[0] / result.capital - 1
    years = [int(label[:4]) for label in heat.y]
    for stamp, value in expected.items():
        row = years.index(stamp.year)
        assert heat.z[row][stamp.month - 1] == pytest.approx(value, rel=1e-12)
        assert heat.text[row][stamp.month - 1] == f"{value:.1%}"
    assert heat.y[0].startswith("2025 (")  # newest year first


def test_rolling_sharpe_matches_empyrical_over_the_last_window(result) -> None:
    fig = result.plot_rolling_sharpe(window_days=30)
    line = _trace(fig, "strategy")
    equity = result.equity["equity"].to_numpy()
    returns = np.concatenate([[equity[0] / result.capital - 1], equity[1:] / equity[:-1] - 1])
    window = 30 * 6
    assert line.y[-1] == pytest.approx(
        empyrical.sharpe_ratio(pd.Series(returns[-window:]), annualization=2190), rel=1e-9
    )
    assert np.isnan(line.y[window - 2]) and not np.isnan(line.y[window - 1])
    assert _trace(fig, "buy & hold") is not None
    short = plots.rolling_sharpe_figure(result.equity.head(50), timeframe="4h", window_days=90)
    assert "shorter than the 90-day window" in short.layout.annotations[0].text


def test_a_flat_curve_is_not_called_shorter_than_the_window() -> None:
    # a strategy that never trades has no Sharpe at all; the chart said "the curve is shorter than the window"
    days = 400
    flat = pl.DataFrame({"ts": [T0 + i * 86_400_000 for i in range(days)], "equity": [10_000.0] * days})
    fig = plots.rolling_sharpe_figure(flat, timeframe="1d", window_days=90, init_cash=10_000.0)
    texts = [a.text for a in fig.layout.annotations]
    assert not any("shorter" in t for t in texts), texts
    assert any("flat" in t for t in texts), texts
    short = plots.rolling_sharpe_figure(flat.head(50), timeframe="1d", window_days=90)
    assert "shorter than the 90-day window" in short.layout.annotations[0].text


@pytest.fixture(scope="module")
def minute_result():
    """Half a year of 1m bars (262,800): a random walk with one sharp dip, traded by a slow SMA cross."""
    n = 262_800
    rng = np.random.default_rng(11)
    steps = rng.normal(0, 0.0008, n)
    steps[150_000] = -0.3  # the deepest drawdown sits on one bar
    close = 20_000 * np.exp(np.cumsum(steps))
    open_ = np.concatenate([[close[0]], close[:-1]])
    frame = pl.DataFrame(
        {
            "ts": T0 + np.arange(n, dtype=np.int64) * 60_000,
            "symbol": "BTC",
            "open": open_,
            "high": np.maximum(open_, close),
            "low": np.minimum(open_, close),
            "close": close,
        }
    )
    return backtest_strategy(SmaCross(fast=500, slow=3000), frame, BacktestConfig(), timeframe="1m")


def test_long_curves_are_drawn_with_at_most_max_points_keeping_extremes_and_ends(minute_result) -> None:
    # 1m data: every bar on four traces made a 93 MB figure (and a 147 MB report for a million bars)
    fig = minute_result.plot_equity()
    stats = minute_result.stats()
    equity = minute_result.equity["equity"].to_numpy()
    for name in ("strategy", "drawdown", "buy & hold", "buy & hold drawdown"):
        assert len(_trace(fig, name).x) <= 5000, name
    line = _trace(fig, "strategy")
    assert line.y[0] == equity[0] and line.y[-1] == equity[-1] and max(line.y) == equity.max()
    assert min(line.y) == equity.min() and np.all(np.diff(line.x) > 0)
    assert min(_trace(fig, "drawdown").y) == pytest.approx(stats.strategy.max_drawdown, rel=1e-12)
    assert min(_trace(fig, "buy & hold drawdown").y) == pytest.approx(stats.benchmark.max_drawdown, rel=1e-12)
    assert _trace(fig, "buy & hold").y[-1] == pytest.approx(stats.benchmark.final_equity)
    every = minute_result.plot_equity(max_points=None)
    assert len(_trace(every, "strategy").x) == len(equity)
    sharpe = minute_result.plot_rolling_sharpe(window_days=30)
    assert len(_trace(sharpe, "strategy").x) <= 5000
    full = plots.rolling_sharpe_frame(
        minute_result.equity, timeframe="1m", window_days=30, init_cash=minute_result.capital
    )["sharpe"]
    drawn = _trace(sharpe, "strategy").y
    assert drawn[-1] == pytest.approx(full[-1]) and np.nanmax(drawn) == pytest.approx(full.fill_nan(None).max())
    assert np.isnan(drawn[0])  # the window is still filling: a gap, as with every bar
    with pytest.raises(ConfigError, match="max_points=1"):
        minute_result.plot_equity(max_points=1)


def test_report_of_long_minute_data_stays_small(minute_result, tmp_path) -> None:
    path = minute_result.write_report(tmp_path / "minutes.html")
    assert path.stat().st_size < 8_000_000, path.stat().st_size  # plotly.js is 4.7 MB of it


def _ticks_in_chromium(figures: dict[str, go.Figure], tmp_path) -> dict[str, dict[str, list[str]]]:
    """Tick labels of each figure's axes as chromium draws them."""
    from playwright.sync_api import sync_playwright
    from plotly.offline import get_plotlyjs

    body = "".join(
        f'<div id="{name}">{fig.to_html(full_html=False, include_plotlyjs=False)}</div>'
        for name, fig in figures.items()
    )
    page_path = tmp_path / "figures.html"
    page_path.write_text(f"<html><head><script>{get_plotlyjs()}</script></head><body>{body}</body></html>")
    out: dict[str, dict[str, list[str]]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(page_path.as_uri())
            page.wait_for_selector(".js-plotly-plot .main-svg")
            for name in figures:
                div = page.locator(f"#{name}")
                selectors = {axis: f".{axis}tick text" for axis in ("x", "y", "x2", "y2")} | {"bar": ".cbaxis text"}
                out[name] = {
                    axis: [t.replace("\u2212", "-") for t in div.locator(selector).all_text_contents()]
                    for axis, selector in selectors.items()
                }
        finally:
            browser.close()
    return out


def test_a_flat_curve_and_a_single_bar_draw_sensible_axes_in_chromium(result, tmp_path) -> None:
    # a strategy that never trades drew equity ticks "10,001 10,001 10,000 10,000 9,999" and a drawdown axis
    # from 0% up to +100%; a one-bar backtest put its time axis at "23:59:59.999" and drew no point at all
    flat = pl.DataFrame({"ts": [T0 + i * 14_400_000 for i in range(600)], "equity": [10_000.0] * 600})
    one = flat.head(1)
    ticks = _ticks_in_chromium(
        {
            "flat": plots.equity_figure(flat, init_cash=10_000.0),
            "one": plots.equity_figure(one, init_cash=10_000.0, benchmark=one.with_columns(equity=pl.lit(9_990.0))),
            "sharpe": plots.rolling_sharpe_figure(one, timeframe="4h", init_cash=10_000.0),
        },
        tmp_path,
    )
    for name in ("flat", "one"):
        equity, drawdown = ticks[name]["y"], ticks[name]["y2"]
        assert len(set(equity)) == len(equity) >= 3, equity  # distinct labels
        assert drawdown and all(float(t.rstrip("%")) <= 0 for t in drawdown), drawdown  # never above 0
        assert len(set(drawdown)) == len(drawdown), drawdown
    for name, axis in (("one", "x2"), ("sharpe", "x")):
        assert ticks[name][axis] and not any(re.search(r":\d\d\.\d", t) for t in ticks[name][axis]), ticks[name]
    one_fig = plots.equity_figure(one, init_cash=10_000.0)
    assert "markers" in _trace(one_fig, "strategy").mode  # a single point is visible


def test_the_monthly_colour_scale_reads_distinct_values_for_tiny_returns_in_chromium(tmp_path) -> None:
    # a flat curve's scale read "-1% -1% 0% 1% 1%", a curve gaining 0.015% a month "0% 0% 0%"
    flat = pl.DataFrame({"ts": [T0 + i * 86_400_000 for i in range(400)], "equity": [10_000.0] * 400})
    small = flat.with_columns(equity=10_000.0 + pl.int_range(400).cast(pl.Float64) * 0.05)
    ticks = _ticks_in_chromium(
        {
            name: plots.monthly_returns_figure(frame, init_cash=10_000.0)
            for name, frame in (("flat", flat), ("small", small))
        },
        tmp_path,
    )
    for name in ("flat", "small"):
        scale = ticks[name]["bar"]
        assert len(scale) >= 3 and len(set(scale)) == len(scale), (name, scale)


def test_more_trades_than_max_markers_are_marked_evenly_and_the_title_says_so(two_symbols) -> None:
    # 134k trades of 1m bars drew 267k markers with hover text: 23 MB of a 30 MB report, unreadable at that size
    btc = two_symbols.filter(pl.col("symbol") == "BTC")
    n = 12_000
    at = np.sort(np.random.default_rng(5).choice(btc.height - 1, n))
    ledger = pl.DataFrame(
        {
            "symbol": "BTC",
            "side": "long",
            "entry_ts": btc["ts"].gather(at),
            "exit_ts": btc["ts"].gather(at + 1),
            "entry_price": btc["open"].gather(at),
            "exit_price": btc["close"].gather(at),
            "return": 0.01,
            "exit_reason": "signal",
            "is_open": False,
        }
    )
    fig = plots.candles_figure(btc, trades=ledger, max_markers=5000)
    entries = _trace(fig, "entries")
    assert len(entries.x) == 4000 and len(_trace(fig, "exits").x) == 4000  # every 3rd trade
    assert list(entries.x[:2]) == [float(ledger["entry_ts"][0]), float(ledger["entry_ts"][3])]
    assert "markers: every 3rd of 12,000 trades" in fig.layout.title.text
    every = plots.candles_figure(btc, trades=ledger, max_markers=None)
    assert len(_trace(every, "entries").x) == n and "markers" not in (every.layout.title.text or "")
    with pytest.raises(ConfigError, match="max_markers=0 marks no trade"):
        plots.candles_figure(btc, trades=ledger, max_markers=0)
