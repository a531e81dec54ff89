import math

import polars as pl
import pytest

from tradeloop.data import SeriesKey, find_gaps, validate_candles
from tradeloop.data.schema import coerce_candles, timeframe_ms
from tradeloop.errors import CandleValidationError, UnsupportedTimeframeError

H = 3_600_000


def candles(n: int = 6, start: int = 1_600_000_000_000 // H * H) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [start + i * H for i in range(n)],
            "open": [100.0 + i for i in range(n)],
            "high": [102.0 + i for i in range(n)],
            "low": [99.0 + i for i in range(n)],
            "close": [101.0 + i for i in range(n)],
            "volume": [10.0] * n,
        }
    )


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("close", math.nan, "null_or_nan"),
        ("open", -1.0, "non_positive"),
        ("volume", -5.0, "negative_volume"),
        ("low", 200.0, "high_lt_low"),
        ("high", 103.5, "high_below_body"),
        ("low", 103.5, "low_above_body"),
        ("ts", 1_600_000_000_123, "off_grid"),
    ],
)
def test_each_rule_names_the_row(column: str, value: float, rule: str) -> None:
    frame = candles()
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    ).cast(frame.schema)
    report = validate_candles(frame, timeframe_ms=H, source="input.csv")
    assert report.rejected["row"].to_list() == [3]
    assert report.rejected["rule"].to_list() == [rule]
    with pytest.raises(CandleValidationError) as info:
        report.raise_if_rejected()
    message = str(info.value)
    assert "input.csv" in message and "row 3" in message and rule in message
    assert "--quarantine" in message
    assert report.good.height == 5


def test_duplicates_and_unsorted_rows() -> None:
    frame = candles()
    shuffled = pl.concat([frame[:3], frame[1:2], frame[5:6], frame[3:5]])
    report = validate_candles(shuffled, timeframe_ms=H, source="x")
    assert dict(zip(report.rejected["row"], report.rejected["rule"])) == {
        3: "duplicate", 5: "out_of_order", 6: "out_of_order"
    }


def test_gaps_are_reported_not_filled() -> None:
    frame = candles(10).filter(~pl.col("ts").is_in(candles(10)["ts"][[3, 4, 7]].to_list()))
    report = validate_candles(frame, timeframe_ms=H, source="x")
    assert report.ok and report.good.height == 7
    assert [(g.missing) for g in report.gaps] == [2, 1]
    assert report.gaps[0].start == frame["ts"][2] + H
    assert find_gaps(frame["ts"], H) == report.gaps


def test_missing_column_is_named() -> None:
    with pytest.raises(CandleValidationError, match="volume"):
        coerce_candles(candles().drop("volume"), source="f.csv")


def test_timeframes() -> None:
    assert timeframe_ms("1m") == 60_000 and timeframe_ms("4h") == 4 * H
    with pytest.raises(UnsupportedTimeframeError, match="7x"):
        timeframe_ms("7x")
    with pytest.raises(UnsupportedTimeframeError):
        SeriesKey("binance", "BTC/USDT", "1M")


def test_series_key_normalises_symbols() -> None:
    assert SeriesKey("binance", "btc/usdt", "1h").symbol == "BTC-USDT"
    assert SeriesKey("binanceusdm", "BTC/USDT:USDT", "1h").symbol == "BTC-USDT-PERP"
    with pytest.raises(ValueError, match="exchange"):
        SeriesKey("Bin Ance", "BTC/USDT", "1h")
