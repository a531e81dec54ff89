"""A data folder with the bundled sample in its lake and a real champion in its registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import import_sample
from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.research.walkforward import fit_threshold
from tradeloop.settings import Settings
from tradeloop.strategies import SmaCross
from tradeloop.thresholds import BarrierConfig, meta_dataset

SYMBOLS = ("BTC-USD", "ETH-USD")


@dataclass(frozen=True)
class World:
    root: Path
    settings: Settings
    candles: pl.DataFrame  # both symbols, long format
    champion: str  # artifact id


def make_settings(root: Path, **extra: str) -> Settings:
    return Settings(TRADELOOP_DATA_DIR=str(root), **extra)


@pytest.fixture(scope="session")
def trained_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("live-world")
    settings = make_settings(root)
    lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)
    import_sample(lake)
    candles = lake.read_many([SeriesKey("coinbase", s, "4h") for s in SYMBOLS]).sort("symbol", "ts")
    strategy, barriers = SmaCross(fast=10, slow=40), BarrierConfig()
    events = meta_dataset(candles, strategy, barriers=barriers)
    model = fit_threshold(events, strategy, barriers)
    # this sample gives the classifier little edge, so its learned bar rejects every entry;
    # put the bar at the median probability so the parity check sees entries taken and refused
    model.estimator.threshold_ = float(np.median(model.probabilities(events)))
    registry = ModelRegistry(settings.registry_dir)
    artifact = registry.register(model.save(root / "model"))
    registry.promote("sma_cross", artifact, lineage=Lineage(run_id="test"))
    return World(root, settings, candles, artifact)
