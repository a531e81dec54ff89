"""Candles partitions come from the research universe in the data (dynamic partitions), not
from constants: explicit lists, top N by dollar volume, and sample files while the lake is
empty. Fast: no materialization here (tests/pipelines/test_materialize.py runs one)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pipelines.assets import candles
from pipelines.automation import new_candles_sensor
from pipelines.partitions import register, research_universe, symbol_partitions, universe_symbols
from pipelines.resources import ExchangeResource, ResearchResource, StoresResource
from pipelines.retrain import RetrainResource
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import import_sample
from tradeloop.errors import ConfigError, SeriesNotFoundError

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01


def write(lake: CandleLake, symbol: str, *, close: float, volume: float, hours: int = 48) -> None:
    ts = pl.int_range(T0, T0 + hours * H, H, eager=True, dtype=pl.Int64)
    frame = pl.DataFrame({"ts": ts, "open": close, "high": close, "low": close, "close": close, "volume": volume})
    lake.write(SeriesKey("binance", symbol, "1h"), frame, source="test")


def test_candles_are_partitioned_by_a_dynamic_symbols_definition() -> None:
    assert isinstance(candles.partitions_def, dg.DynamicPartitionsDefinition)
    assert candles.partitions_def.name == symbol_partitions.name == "symbols"


def test_universe_symbols_for_each_form(tmp_path: Path) -> None:
    lake = CandleLake(tmp_path / "lake")
    sample = ExchangeResource(mode="sample")
    assert universe_symbols(ResearchResource(), lake, sample) == ["BTC-USD", "ETH-USD"]
    listed = ResearchResource(exchange="binance", timeframe="1h", symbols=["ETH/USDT", "BTC-USDT"])
    assert universe_symbols(listed, lake, ExchangeResource(mode="ccxt")) == ["ETH-USDT", "BTC-USDT"]
    # top N while the lake is empty: every sample file of the exchange/timeframe (sample mode only)
    assert universe_symbols(ResearchResource(top_n=1), lake, sample) == ["BTC-USD", "ETH-USD"]
    with pytest.raises(SeriesNotFoundError, match=r"top_n=1 picks from the coinbase 4h series in the lake"):
        universe_symbols(ResearchResource(top_n=1), lake, ExchangeResource(mode="ccxt"))
    # top N from the lake: dollar volumes 100, 300, 200 per hour
    for symbol, close in (("AAA-USDT", 1.0), ("BBB-USDT", 3.0), ("CCC-USDT", 2.0)):
        write(lake, symbol, close=close, volume=100.0)
    top = ResearchResource(exchange="binance", timeframe="1h", top_n=2, lookback_days=1)
    assert universe_symbols(top, lake, sample) == ["BBB-USDT", "CCC-USDT"]
    assert top.universe(lake) == ["BBB-USDT", "CCC-USDT"]


def test_sample_files_of_another_folder(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    frame = pl.DataFrame({"ts": [T0], "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0})
    for name in (
        "binance__AAA-USDT__1h",
        "binance__BBB-USDT__1h",
        "binance__BBB-USDT__1h__2018-04",
        "binance__CCC-USDT__5m",
        "kraken__DDD-USD__1h",
    ):
        frame.write_parquet(folder / f"{name}.parquet")
    exchange = ExchangeResource(mode="sample", sample_dir=str(folder))
    assert exchange.sample_symbols("binance", "1h") == ["AAA-USDT", "BBB-USDT"]
    lake = CandleLake(tmp_path / "lake")
    assert exchange.refresh(lake, SeriesKey("binance", "AAA-USDT", "1h"))["rows_added"] == 1
    assert lake.read(SeriesKey("binance", "AAA-USDT", "1h"))["ts"].to_list() == [T0]


def test_research_resource_refuses_both_forms() -> None:
    with pytest.raises(ConfigError, match=r"got both symbols=\['BTC-USD'\] and top_n=3"):
        ResearchResource(symbols=["BTC-USD"], top_n=3).universe_config()
    with pytest.raises(ConfigError, match=r"quote applies to top_n only"):
        ResearchResource(quote="USD").universe_config()
    config = ResearchResource(top_n=3, lookback_days=7, quote="usd").universe_config()
    assert (config.symbols, config.top_n, config.lookback_days, config.quote) == (None, 3, 7, "USD")


def test_the_sensor_adds_the_universe_as_partitions(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    stores = StoresResource(data_dir=str(tmp_path))
    res = {
        "stores": stores,
        "research": ResearchResource(top_n=1),
        "exchange": ExchangeResource(mode="sample"),
        "retrain": RetrainResource(),
    }
    empty = new_candles_sensor(dg.build_sensor_context(instance=instance, resources=res))
    [request] = empty.dynamic_partitions_requests
    assert (request.partitions_def_name, list(request.partition_keys)) == ("symbols", ["BTC-USD", "ETH-USD"])
    assert empty.skip_reason is not None and not empty.run_requests  # nothing stored yet: nothing to retrain
    register(instance, ["BTC-USD", "ETH-USD"])
    import_sample(stores.lake)
    # the top 1 by dollar volume of the stored sample: the universe is one series, already a partition
    btc, eth = (stores.lake.read(SeriesKey("coinbase", s, "4h")) for s in ("BTC-USD", "ETH-USD"))
    end = max(btc["ts"].max(), eth["ts"].max())
    volume = {
        s: f.filter(pl.col("ts") > end - 30 * 24 * H).select((pl.col("close") * pl.col("volume")).sum()).item()
        for s, f in (("BTC-USD", btc), ("ETH-USD", eth))
    }
    top = max(volume, key=lambda s: (volume[s], s))
    stored = new_candles_sensor(dg.build_sensor_context(instance=instance, resources=res))
    assert stored.dynamic_partitions_requests == [] and len(stored.run_requests) == 1  # no champion yet: due
    assert list(json.loads(stored.cursor)) == [f"coinbase:{top}:4h"]
    listed = {**res, "research": ResearchResource(exchange="binance", timeframe="1h", symbols=["SOL-USDT"])}
    fresh = new_candles_sensor(dg.build_sensor_context(instance=instance, resources=listed))
    assert [list(r.partition_keys) for r in fresh.dynamic_partitions_requests] == [["SOL-USDT"]]
    assert register(instance, ["SOL-USDT", "BTC-USD"]) == ["SOL-USDT"]
    assert sorted(instance.get_dynamic_partitions("symbols")) == ["BTC-USD", "ETH-USD", "SOL-USDT"]


def test_a_top_n_pick_sees_no_candle_after_the_data_cut_off(tmp_path: Path) -> None:
    lake = CandleLake(tmp_path / "lake")
    write(lake, "AAA-USDT", close=10.0, volume=100.0)  # 1,000 an hour on 2024-01-01 and 02
    ts = pl.int_range(T0 + 48 * H, T0 + 72 * H, H, eager=True, dtype=pl.Int64)  # 2024-01-03: 100,000 an hour
    lake.write(
        SeriesKey("binance", "BBB-USDT", "1h"),
        pl.DataFrame({"ts": ts, "open": 1e3, "high": 1e3, "low": 1e3, "close": 1e3, "volume": 100.0}),
        source="test",
    )
    research = ResearchResource(exchange="binance", timeframe="1h", top_n=1, lookback_days=1)
    assert research_universe(research, lake, RetrainResource()) == ["BBB-USDT"]
    assert research_universe(research, lake, RetrainResource(data_until="2024-01-03")) == ["AAA-USDT"]
    listed = ResearchResource(exchange="binance", timeframe="1h", symbols=["BBB-USDT"])
    assert research_universe(listed, lake, RetrainResource(data_until="2024-01-03")) == ["BBB-USDT"]
