"""Synthetic 4h candles with a known regime change, a champion trained on their first part,
and a lake holding them: drift tests build their worlds here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.research.walkforward import fit_threshold
from tradeloop.strategies import get_strategy
from tradeloop.thresholds import BarrierConfig, Universe, meta_dataset

EXCHANGE, SYMBOLS, TIMEFRAME, STRATEGY = "kraken", ("AAA-USD", "BBB-USD"), "4h", "sma_cross"
BAR = 4 * 3_600_000
START = (1_600_000_000_000 // BAR) * BAR
TRAIN_BARS, LIVE_BARS = 1500, 600


def candles(*, seed: int, vol: float = 0.01, live_vol: float = 0.01) -> pl.DataFrame:
    """A random walk per symbol: ``vol`` per bar for TRAIN_BARS bars, then ``live_vol``."""
    parts = []
    for i, symbol in enumerate(SYMBOLS):
        rng = np.random.default_rng(seed * 10 + i)
        n = TRAIN_BARS + LIVE_BARS
        sigma = np.where(np.arange(n) < TRAIN_BARS, vol, live_vol)
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, sigma)))
        open_ = np.concatenate([[100.0], close[:-1]])
        wick = np.abs(rng.normal(0.0, sigma / 2))
        parts.append(
            pl.DataFrame(
                {
                    "symbol": symbol,
                    "ts": START + BAR * np.arange(n, dtype=np.int64),
                    "open": open_,
                    "high": np.maximum(open_, close) * (1 + wick),
                    "low": np.minimum(open_, close) * (1 - wick),
                    "close": close,
                    "volume": rng.lognormal(10.0, 0.3, n),
                }
            )
        )
    return pl.concat(parts)


def trained_until() -> int:
    return START + BAR * (TRAIN_BARS - 1)


def champion(root: Path, frame: pl.DataFrame) -> str:
    """Fill the lake under ``root`` with ``frame`` and promote a model trained on its first
    TRAIN_BARS bars per symbol; returns the artifact id."""
    lake = CandleLake(root / "lake", quarantine_root=root / "quarantine")
    for symbol, part in frame.partition_by("symbol", as_dict=True).items():
        lake.write(SeriesKey(EXCHANGE, symbol[0], TIMEFRAME), part.drop("symbol"))
    strategy, barriers = get_strategy(STRATEGY), BarrierConfig()
    until = trained_until()
    events = meta_dataset(frame.filter(pl.col("ts") <= until), strategy, barriers=barriers)
    model = fit_threshold(
        events.filter(pl.col("t1") <= until), strategy, barriers, estimator_params={"min_samples": 30}, until=until
    )
    model.universe = Universe(exchange=EXCHANGE, timeframe=TIMEFRAME, symbols=SYMBOLS)
    registry = ModelRegistry(root / "registry")
    artifact = registry.register(model.save(root / "model"))
    registry.promote(STRATEGY, artifact, lineage=Lineage(notebook="tests/drift/synthetic.py"))
    return artifact
