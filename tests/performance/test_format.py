"""How numbers read in stats tables and reports: no figure that contradicts itself or reads as minus zero."""

from __future__ import annotations

import re

import polars as pl
import pytest

from tradeloop.backtest import BacktestConfig, run_backtest
from tradeloop.performance import format as fmt
from tradeloop.performance.tearsheet import tearsheet_html

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def _caveat_days(text: str) -> float:
    found = re.search(r"([\d.,]+) days", text)
    assert found, text
    return float(found.group(1).replace(",", ""))


@pytest.mark.parametrize("days", [29.958333, 29.9999, 0.99999, 10.0, 0.1667])
def test_the_short_sample_caveat_never_reads_as_long_as_its_bar(days: float) -> None:
    # 719 hourly bars are 29.96 days: the caveat read "n/a: 30 days < 30"
    text = fmt.short_sample(days, 30)
    assert _caveat_days(text) < 30 and _caveat_days(text) <= days
    assert _caveat_days(text) == pytest.approx(days, rel=0.01)
    assert fmt.short_sample(10.0, 30) == "n/a: 10 days < 30"


def test_a_period_just_under_the_bar_says_so_in_the_table_and_the_report() -> None:
    n = 719  # hourly bars: 29.96 days, one hour short of 30
    frame = pl.DataFrame(
        {
            "ts": [T0 + i * HOUR for i in range(n)],
            "symbol": "AAA",
            "open": 100.0,
            "high": 100.0,
            "low": 100.0,
            "close": 100.0,
            "signal": 0,
        }
    ).with_columns(pl.col("signal").cast(pl.Int8))
    result = run_backtest(frame, BacktestConfig(), timeframe="1h")
    stats = result.stats()
    assert stats.short_sample
    cagr = {row[1]: row[2] for row in stats.table().iter_rows()}["CAGR"]
    assert cagr.startswith("n/a: ") and _caveat_days(cagr) < 30
    note = re.search(r'class="note">([^<]*)', tearsheet_html(result, stats=stats)).group(1)
    assert "shorter than 30 days" in note and _caveat_days(note) < 30, note


@pytest.mark.parametrize(
    ("how", "value", "text"),
    [
        (fmt.pct, -1e-9, "0.00%"),
        (fmt.signed_pct, -1e-9, "+0.00%"),
        (fmt.money, -0.001, "0.00"),
        (fmt.ratio, -0.004, "0.00"),
        (fmt.pct, -0.0, "0.00%"),
        (fmt.money, -0.0, "0.00"),
        (fmt.signed_pct, -0.00004, "+0.00%"),
        (fmt.signed_pct, -0.0001, "-0.01%"),
        (fmt.money, -0.01, "-0.01"),
    ],
)
def test_nothing_reads_minus_zero(how, value: float, text: str) -> None:
    assert how(value) == text


@pytest.mark.parametrize(
    ("how", "value", "text"),
    [
        (fmt.signed_pct, 248.47, "+24,847.00%"),
        (fmt.pct, 12.3456, "1,234.56%"),
        (fmt.signed_pct, -0.5, "-50.00%"),
    ],
)
def test_large_percentages_have_thousands_separators(how, value: float, text: str) -> None:
    assert how(value) == text
