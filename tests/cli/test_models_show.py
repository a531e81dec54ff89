"""``tradeloop models show`` prints what the champion was trained on: its training window
(first and last training event, ISO UTC), the data hash and the universe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_cli import tradeloop

from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.strategies import SmaCross
from tradeloop.thresholds import AdaptiveThreshold, BarrierConfig, ThresholdModel, Universe
from tradeloop.thresholds.dataset import META_FEATURES

TRAINED_FROM, TRAINED_UNTIL = 1_672_531_200_000, 1_704_067_200_000  # 2023-01-01, 2024-01-01 (UTC)


def _model(path: Path, *, info: dict, universe: Universe | None) -> Path:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, len(META_FEATURES)))
    y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    est = AdaptiveThreshold().fit(X, y, returns=np.where(y == 1, 0.02, -0.01))
    return ThresholdModel(strategy=SmaCross(fast=10, slow=40), barriers=BarrierConfig(), estimator=est,
                          trained_until=TRAINED_UNTIL, info=info, universe=universe).save(path)


def test_show_prints_the_training_window_data_hash_and_universe(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    info = {"trained_from": TRAINED_FROM, "data_hash": "9f2c" * 16,
            "retrain_policy": {"train_days": 365, "cadence_days": 1, "max_age_days": 14}}
    universe = Universe(exchange="binance", timeframe="1h", symbols=("ETH-USDT", "BTC-USDT"))
    artifact = registry.register(_model(tmp_path / "m", info=info, universe=universe))
    registry.promote("sma_cross", artifact, lineage=Lineage(data_snapshot="ab" * 32))
    shown = tradeloop("models", "show", "sma_cross", data_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "training window: 2023-01-01T00:00:00Z .. 2024-01-01T00:00:00Z" in out
    assert f"data hash: {'9f2c' * 16}" in out  # the model's own hash wins over the lineage's snapshot
    assert "universe: exchange binance, timeframe 1h, 2 symbol(s): BTC-USDT, ETH-USDT" in out
    assert "retrain policy: cadence_days=1, max_age_days=14, train_days=365" in out


def test_show_falls_back_to_the_lineage_snapshot_and_says_unknown(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    artifact = registry.register(_model(tmp_path / "m", info={}, universe=None))
    registry.promote("sma_cross", artifact, lineage=Lineage(data_snapshot="cd" * 32))
    shown = tradeloop("models", "show", "sma_cross", data_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "training window: unknown .. 2024-01-01T00:00:00Z" in shown.stdout
    assert f"data hash: {'cd' * 32}" in shown.stdout and "universe: not recorded" in shown.stdout
    registry.promote("sma_cross", artifact, lineage=Lineage())  # no snapshot recorded either
    assert "data hash: unknown" in tradeloop("models", "show", "sma_cross", data_dir=tmp_path).stdout
