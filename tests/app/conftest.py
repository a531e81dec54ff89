"""A data folder the dashboard can show: lake, champion, a live session, a research backtest."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest

from live.runner import SessionConfig, run_session
from tests.live.conftest import SYMBOLS, World, trained_world  # noqa: F401  (shared fixture)
from tradeloop.backtest import BacktestConfig, run_backtest
from tradeloop.registry import ModelRegistry
from tradeloop.research.steps import EQUITY_PARQUET, METRICS_JSON, TRADES_PARQUET
from tradeloop.settings import get_settings
from tradeloop.thresholds.decide import decide


@pytest.fixture(scope="session")
def dashboard_root(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dashboard") / "data"
    shutil.copytree(trained_world.root, root, ignore=shutil.ignore_patterns("tradeloop.db*"))
    world = World(root, trained_world.settings.model_copy(update={"data_dir": root}), trained_world.candles,
                  trained_world.champion)
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-300])
    asyncio.run(run_session(world.settings, SessionConfig(name="paper-demo", start=start, allow_in_sample=True)))
    _, model = ModelRegistry(world.settings.registry_dir).load("sma_cross")
    result = run_backtest(decide(world.candles, model, now_ms=model.trained_until),
                          BacktestConfig(fee_rate=0.001), timeframe="4h")
    out = world.settings.research_dir / "backtest"
    out.mkdir(parents=True)
    result.equity.write_parquet(out / EQUITY_PARQUET)
    result.trades.write_parquet(out / TRADES_PARQUET)
    (out / METRICS_JSON).write_text(json.dumps({"full_history": {"sharpe": 1.0}}))
    return root


@contextmanager
def dashboard_reads(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The settings (so the dashboard) read the data folder ``root`` and its own SQLite
    database, not DATABASE_URL; the settings cache is cleared on the way in and out."""
    monkeypatch.setenv("TRADELOOP_DATA_DIR", str(root))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        yield root
    finally:
        get_settings.cache_clear()


@pytest.fixture
def dashboard_env(dashboard_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with dashboard_reads(dashboard_root, monkeypatch):
        yield dashboard_root
