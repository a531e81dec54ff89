"""`tradeloop live run --recent-days N` (what `tradeloop up` starts) trades the lake's last N
days, never bars the champion was trained on."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import pytest
from test_models_show import _model

from tradeloop.cli.live_cmds import recent_start
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import import_sample, sample_files
from tradeloop.errors import ConfigError
from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.settings import Settings
from tradeloop.strategies import Breakout
from tradeloop.thresholds import ThresholdModel

DAY = 86_400_000
FOUR_H = 4 * 3_600_000


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("recent")
    settings = Settings(TRADELOOP_DATA_DIR=str(root))  # the alias: Settings ignores data_dir=
    assert settings.lake_dir == root / "lake"  # this module's own folder, never the checkout's ./data
    import_sample(CandleLake(settings.lake_dir), files=[p for p in sample_files() if "__4h" in p.name])
    return settings


def last_bar(settings: Settings) -> int:
    lake = CandleLake(settings.lake_dir)
    return max(lake.last_ts(SeriesKey("coinbase", s, "4h")) for s in ("BTC-USD", "ETH-USD"))


def test_recent_days_start_that_many_days_before_the_last_candle(settings: Settings) -> None:
    first = recent_start(
        settings, strategy="sma_cross", exchange="coinbase", symbols=("BTC-USD", "ETH-USD"), timeframe="4h", days=30
    )
    assert first == last_bar(settings) - 30 * DAY  # no champion yet: the live run itself refuses or not


def test_never_before_the_champions_training_end(settings: Settings, tmp_path: Path) -> None:
    registry = ModelRegistry(settings.registry_dir)
    artifact = registry.register(_model(tmp_path / "m", info={}, universe=None))  # trained until 2024-01-01
    registry.promote("sma_cross", artifact, lineage=Lineage())
    _, model = registry.load("sma_cross")
    old = recent_start(
        settings, strategy="sma_cross", exchange="coinbase", symbols=("BTC-USD", "ETH-USD"), timeframe="4h", days=4000
    )  # 4000 days back would be 2014: in-sample
    assert old == model.trained_until + FOUR_H
    recent = recent_start(
        settings, strategy="sma_cross", exchange="coinbase", symbols=("BTC-USD", "ETH-USD"), timeframe="4h", days=7
    )
    assert recent == last_bar(settings) - 7 * DAY > model.trained_until


def test_bad_days_and_missing_series_name_the_fix(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="--recent-days -1 must be a positive number of days"):
        recent_start(settings, strategy="sma_cross", exchange="coinbase", symbols=("BTC-USD",), timeframe="4h", days=-1)
    with pytest.raises(ConfigError, match=r"no coinbase 1d candles of \['BTC-USD'\]; import them"):
        recent_start(settings, strategy="sma_cross", exchange="coinbase", symbols=("BTC-USD",), timeframe="1d", days=5)


@pytest.mark.parametrize("days", [math.nan, math.inf])
def test_not_a_number_or_infinite_days_are_refused_with_the_fix(settings: Settings, days: float) -> None:
    # typer parses "--recent-days nan" and "inf" as floats; they crashed with a ValueError/OverflowError traceback
    with pytest.raises(ConfigError, match=f"--recent-days {days:g} must be a positive number of days"):
        recent_start(
            settings, strategy="sma_cross", exchange="coinbase", symbols=("BTC-USD",), timeframe="4h", days=days
        )


def test_more_days_than_the_lake_holds_replays_from_its_start(settings: Settings) -> None:
    # 1e30 days overflowed int64 downstream ("Python int too large to convert to C long")
    first = recent_start(
        settings, strategy="breakout", exchange="coinbase", symbols=("BTC-USD", "ETH-USD"), timeframe="4h", days=1e30
    )  # no champion: nothing else moves the start
    first_candle = CandleLake(settings.lake_dir).read(SeriesKey("coinbase", "BTC-USD", "4h"))["ts"].min()
    assert 0 <= first <= first_candle  # a time every reader takes: the replay starts at the first candle


def test_up_trades_the_champion_promoted_last(settings: Settings, tmp_path: Path, monkeypatch) -> None:
    from tradeloop.cli.up_cmd import latest_champion
    from tradeloop.settings import get_settings

    monkeypatch.setenv("TRADELOOP_DATA_DIR", str(tmp_path / "fresh"))
    get_settings.cache_clear()
    try:
        assert latest_champion() is None  # nothing promoted: up falls back to the default strategy
        registry = ModelRegistry(get_settings().registry_dir)
        sma = registry.register(_model(tmp_path / "m", info={}, universe=None))
        model = ThresholdModel.load(tmp_path / "m")
        breakout = registry.register(dataclasses.replace(model, strategy=Breakout(window=20)).save(tmp_path / "b"))
        registry.promote("sma_cross", sma, lineage=Lineage())
        time.sleep(1.1)  # promotion times have one-second resolution
        registry.promote("breakout", breakout, lineage=Lineage())
        assert latest_champion() == "breakout"
        time.sleep(1.1)
        registry.promote("sma_cross", sma, lineage=Lineage(parameters={"note": "again"}))
        assert latest_champion() == "sma_cross"
    finally:
        get_settings.cache_clear()
