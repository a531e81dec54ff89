"""The HTML tearsheet is self-contained and renders in a real browser without the network."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pytest
from playwright.sync_api import sync_playwright

from tradeloop.backtest import BacktestConfig, backtest_strategy
from tradeloop.strategies import SmaCross

CHROMIUM = os.environ.get("TRADELOOP_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
T0 = 1_704_067_200_000  # 2024-01-01 UTC


@pytest.fixture(scope="module")
def report(tmp_path_factory, btc_4h: pl.DataFrame, eth_4h: pl.DataFrame):
    both = pl.concat([btc_4h.with_columns(symbol=pl.lit("BTC-USD")), eth_4h.with_columns(symbol=pl.lit("ETH-USD"))])
    config = BacktestConfig(fraction=0.5, slippage=0.0005, stop_loss=0.08)
    result = backtest_strategy(SmaCross(fast=5), both.filter(pl.col("ts") >= T0), config, timeframe="4h")
    path = result.write_report(tmp_path_factory.mktemp("report") / "nested" / "report.html")
    return result, path


def test_report_is_self_contained_with_header_metrics_and_every_trade(report) -> None:
    result, path = report
    page = path.read_text(encoding="utf-8")
    assert page.count("<script") == page.count("</script>")
    assert (
        '<script src="http' not in page and "cdn.plot.ly" not in page.replace("\\u002f", "/").split("</script>", 1)[1]
    )  # after the embedded library: no reference to a CDN
    assert "Plotly.newPlot" in page and page.count("plotly.js v") >= 1  # the library is embedded
    assert page.count('class="plotly-graph-div"') == 5  # equity, monthly, rolling Sharpe, two price charts
    assert "<h1>sma_cross(5,30)</h1>" in page
    for text in (
        "BTC-USD, ETH-USD",
        "<b>timeframe</b> 4h",
        "2024-01-01 00:00 to",
        "stop loss 8.0%",
        "buy &amp; hold",
        "Monthly returns",
        "Rolling Sharpe",
        "per symbol",
    ):
        assert text in page, text
    trades_table = page.split("<h2>Trades</h2>", 1)[1]
    assert trades_table.count("<tr>") == result.trades.height + 1  # a header row and one row per trade
    assert f"{result.trades.height:,} trades." in trades_table


def test_report_renders_in_chromium_without_errors_or_network(report, tmp_path: Path) -> None:
    _, path = report
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda req: requests.append(req.url))
            page.goto(path.as_uri())
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
            assert page.locator(".js-plotly-plot").count() == 5
            # dates on the time axes, percentages on the drawdown axis
            ticks = page.locator(".js-plotly-plot").first.locator(".x2tick text").all_text_contents()
            assert any("2024" in t or "2025" in t for t in ticks), ticks
            ytick = page.locator(".js-plotly-plot").first.locator(".y2tick text").all_text_contents()
            assert any(t.endswith("%") for t in ytick), ytick
            # the trades table reads like the per-symbol one: names left, numbers right
            trades = page.locator(".scroll table")
            header = trades.locator("thead th").all_text_contents()
            row = trades.locator("tbody tr").first.locator("td")
            align = {name: row.nth(i).evaluate("e => getComputedStyle(e).textAlign") for i, name in enumerate(header)}
            assert {align["symbol"], align["side"], align["exit reason"]} <= {"left", "start"}, align
            assert align["pnl"] == align["return"] == align["entry price"] == "right", align
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:", "blob:"))] == []
    assert (tmp_path / "report.png").stat().st_size > 50_000
