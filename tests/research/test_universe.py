"""Universe selection: an explicit list checked against the lake, or the top N by dollar
volume over a lookback, computed with DuckDB over the lake's views. Expected rankings are
worked out here from the candles written, never through the code under test."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import import_sample
from tradeloop.errors import ConfigError, DataError, SeriesNotFoundError
from tradeloop.research.universe import UniverseConfig, rank_universe, select_universe, universe_config

H = 3_600_000
DAY = 24 * H
T0 = 1_704_067_200_000  # 2024-01-01
HOURS = 24 * 20  # 20 days of 1h candles


def candles(*, close: float, volume: float, start: int = T0, hours: int = HOURS) -> pl.DataFrame:
    ts = pl.int_range(start, start + hours * H, H, eager=True, dtype=pl.Int64)
    return pl.DataFrame({"ts": ts, "open": close, "high": close, "low": close, "close": close, "volume": volume})


def dollar_volume(frame: pl.DataFrame, *, start: int, end: int) -> float:
    inside = frame.filter((pl.col("ts") > start) & (pl.col("ts") <= end))
    return float((inside["close"] * inside["volume"]).sum())


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[CandleLake, dict[str, pl.DataFrame]]:
    """Binance 1h series with known dollar volumes (whole numbers, so sums are exact):
    two tie, one is large only before the last week, one is quoted in BTC."""
    lake = CandleLake(tmp_path / "lake")
    frames = {
        "AAA-USDT": candles(close=2.0, volume=50.0),  # 100 per hour
        "BBB-USDT": candles(close=4.0, volume=25.0),  # 100 per hour: ties with AAA
        "CCC-USDT": candles(close=10.0, volume=30.0),  # 300 per hour
        "DDD-USDT": pl.concat(
            [
                candles(close=100.0, volume=100.0, hours=13 * 24),  # 10,000 per hour, then
                candles(close=1.0, volume=1.0, start=T0 + 13 * 24 * H, hours=7 * 24),
            ]
        ),  # 1
        "EEE-BTC": candles(close=1000.0, volume=1000.0),  # the largest, but quoted in BTC
    }
    for symbol, frame in frames.items():
        lake.write(SeriesKey("binance", symbol, "1h"), frame, source="test")
    lake.write(
        SeriesKey("binance", "ZZZ-USDT", "4h"),
        candles(close=1e6, volume=1e6, hours=10).filter(pl.col("ts") % (4 * H) == 0),
        source="test",
    )  # another timeframe: never a candidate
    return lake, frames


def expected_top(
    frames: dict[str, pl.DataFrame], *, n: int, days: int, end: int, quote: str | None = None
) -> list[str]:
    volumes = {
        s: dollar_volume(f, start=end - days * DAY, end=end)
        for s, f in frames.items()
        if quote is None or s.split("-")[1] == quote
    }
    ranked = sorted(
        (s for s in volumes if frames[s].filter((pl.col("ts") > end - days * DAY) & (pl.col("ts") <= end)).height),
        key=lambda s: (-volumes[s], s),
    )
    return ranked[:n]


def test_top_n_by_dollar_volume_with_ties_by_symbol(synthetic) -> None:
    lake, frames = synthetic
    end = T0 + (HOURS - 1) * H  # the latest candle
    week = UniverseConfig(exchange="binance", timeframe="1h", top_n=3, lookback_days=7, quote="USDT")
    picked = select_universe(lake, week)
    assert picked == expected_top(frames, n=3, days=7, end=end, quote="USDT") == ["CCC-USDT", "AAA-USDT", "BBB-USDT"]
    ranked = rank_universe(lake, week)
    assert ranked["symbol"].to_list() == ["CCC-USDT", "AAA-USDT", "BBB-USDT", "DDD-USDT"]
    assert ranked["dollar_volume"].to_list() == [300.0 * 168, 100.0 * 168, 100.0 * 168, 1.0 * 168]
    assert ranked["candles"].to_list() == [168] * 4
    month = UniverseConfig(exchange="binance", timeframe="1h", top_n=2, lookback_days=30, quote="usdt")
    assert (
        select_universe(lake, month)
        == expected_top(frames, n=2, days=30, end=end, quote="USDT")
        == ["DDD-USDT", "CCC-USDT"]
    )
    everything = UniverseConfig(exchange="binance", timeframe="1h", top_n=10)
    assert (
        select_universe(lake, everything)
        == expected_top(frames, n=10, days=30, end=end)
        == ["EEE-BTC", "DDD-USDT", "CCC-USDT", "AAA-USDT", "BBB-USDT"]
    )


def test_the_window_ends_at_until_or_at_the_latest_candle_of_all(synthetic) -> None:
    lake, frames = synthetic
    config = UniverseConfig(exchange="binance", timeframe="1h", top_n=1, lookback_days=2, quote="USDT")
    early = T0 + 5 * DAY
    assert (
        select_universe(lake, config, until_ms=early)
        == expected_top(frames, n=1, days=2, end=early, quote="USDT")
        == ["DDD-USDT"]
    )
    # a series that stopped trading is judged over the same window as the others, not its own last days
    lake.write(SeriesKey("binance", "OLD-USDT", "1h"), candles(close=1e3, volume=1e3, hours=24), source="test")
    frames = {**frames, "OLD-USDT": candles(close=1e3, volume=1e3, hours=24)}
    latest = select_universe(lake, config.model_copy(update={"top_n": 10}))
    assert "OLD-USDT" not in latest and latest == expected_top(
        frames, n=10, days=2, end=T0 + (HOURS - 1) * H, quote="USDT"
    )
    with pytest.raises(DataError, match=r"none of the 5 binance 1h series has a candle in the 2 days"):
        select_universe(lake, config, until_ms=T0 - 10 * DAY)


def test_rows_the_readers_leave_out_do_not_count(synthetic) -> None:
    lake, frames = synthetic
    key = SeriesKey("binance", "AAA-USDT", "1h")
    [path] = lake.files(key)
    stored = pl.read_parquet(path)  # an older writer left an absurd volume in the last candle
    stored.with_columns(
        pl.when(pl.col("ts") == stored["ts"].max()).then(1e30).otherwise(pl.col("volume")).alias("volume")
    ).write_parquet(path)
    config = UniverseConfig(exchange="binance", timeframe="1h", top_n=1, lookback_days=7, quote="USDT")
    assert select_universe(lake, config) == ["CCC-USDT"]


def test_on_the_bundled_sample(tmp_path: Path) -> None:
    lake = CandleLake(tmp_path / "lake")
    import_sample(lake)
    frames = {s: lake.read(SeriesKey("coinbase", s, "4h")) for s in ("BTC-USD", "ETH-USD")}
    end = max(int(f["ts"].max()) for f in frames.values())
    for days in (7, 365):
        config = UniverseConfig(exchange="coinbase", timeframe="4h", top_n=1, lookback_days=days)
        assert select_universe(lake, config) == expected_top(frames, n=1, days=days, end=end)
    listed = UniverseConfig(exchange="coinbase", timeframe="4h", symbols=["eth/usd", "BTC-USD"])
    assert select_universe(lake, listed) == ["ETH-USD", "BTC-USD"]


def test_an_explicit_list_names_every_missing_symbol(synthetic) -> None:
    lake, _ = synthetic
    config = UniverseConfig(exchange="binance", timeframe="1h", symbols=["SOL-USDT", "AAA-USDT", "XRP/USDT"])
    with pytest.raises(
        SeriesNotFoundError,
        match=r"not stored for binance 1h: SOL-USDT, XRP-USDT \(stored: "
        r"AAA-USDT, BBB-USDT",
    ):
        select_universe(lake, config)
    with pytest.raises(SeriesNotFoundError, match=r"no binance 1h series quoted in EUR stored"):
        select_universe(lake, UniverseConfig(exchange="binance", timeframe="1h", top_n=3, quote="EUR"))


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({}, "set exactly one of symbols (an explicit list) or top_n (the top N by dollar volume); got neither"),
        ({"symbols": ["BTC-USDT"], "top_n": 3}, "got both symbols=['BTC-USDT'] and top_n=3"),
        ({"symbols": ["BTC-USDT"], "lookback_days": 7}, "lookback_days applies to top_n only"),
        ({"symbols": []}, "symbols=[]: the list is empty"),
        ({"symbols": ["BTC-USDT", "btc/usdt"]}, "lists BTC-USDT more than once"),
        ({"symbols": ["BTC_USDT"]}, "symbol='BTC_USDT' is not BASE-QUOTE"),
        ({"top_n": 0}, "top_n=0: input should be greater than or equal to 1"),
        ({"top_n": 5, "lookback_days": 0}, "lookback_days=0: input should be greater than or equal to 1"),
        ({"top_n": 5, "quote": "US$"}, "quote='US$': is not a currency code"),
        ({"top_n": 5, "exchange": "binanse"}, "exchange='binanse'"),
        ({"top_n": 5, "timeframe": "1x"}, "timeframe='1x' is not a timeframe"),
        ({"top_n": 5, "size": 3}, "size=3 is unknown"),
    ],
)
def test_bad_configs_name_the_field(values: dict, said: str) -> None:
    with pytest.raises(ConfigError) as info:
        universe_config(**{"exchange": "binance", "timeframe": "1h", **values})
    assert said in str(info.value) and str(info.value).startswith("research universe: ")
    assert info.value.exit_code == 2
