"""A data folder the dashboard can show: lake, champion, a live session, a research backtest."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from live.runner import SessionConfig, run_session
from tests.live.conftest import SYMBOLS, World, trained_world  # noqa: F401  (shared fixture)
from tradeloop.backtest import BacktestConfig, BacktestResult, run_backtest
from tradeloop.backtest.engine import periods_per_year
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.registry import Lineage, ModelRegistry, git_commit, snapshot_hash
from tradeloop.research.gate import evaluate_gate
from tradeloop.research.steps import EQUITY_PARQUET, METRICS_JSON, TRADES_PARQUET
from tradeloop.settings import get_settings
from tradeloop.thresholds import ThresholdModel, Universe
from tradeloop.thresholds.decide import decide

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def dashboard_root(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dashboard") / "data"
    shutil.copytree(trained_world.root, root, ignore=shutil.ignore_patterns("tradeloop.db*"))
    world = World(
        root,
        trained_world.settings.model_copy(update={"data_dir": root}),
        trained_world.candles,
        trained_world.champion,
    )
    _, model = ModelRegistry(world.settings.registry_dir).load("sma_cross")
    result = run_backtest(
        decide(world.candles, model, now_ms=model.trained_until), BacktestConfig(fee_rate=0.001), timeframe="4h"
    )
    promote_as_research_does(world, model, result)
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-300])
    asyncio.run(run_session(world.settings, SessionConfig(name="paper-demo", start=start, allow_in_sample=True)))
    out = world.settings.research_dir / "backtest"
    out.mkdir(parents=True)
    result.equity.write_parquet(out / EQUITY_PARQUET)
    result.trades.write_parquet(out / TRADES_PARQUET)
    (out / METRICS_JSON).write_text(json.dumps({"full_history": {"sharpe": 1.0}}))
    return root


def promote_as_research_does(world: World, model: ThresholdModel, result: BacktestResult) -> None:
    """Promote the champion again with the lineage the research pipeline records: its universe
    and data hash, the gate's checks (evaluated on the backtest's returns), notebook, commit."""
    lake = CandleLake(world.settings.lake_dir)
    files = [f for s in SYMBOLS for f in lake.files(SeriesKey("coinbase", s, "4h"))]
    model.universe = Universe(exchange="coinbase", timeframe="4h", symbols=SYMBOLS)
    model.info["data_hash"] = snapshot_hash(files)
    registry = ModelRegistry(world.settings.registry_dir)
    artifact = registry.register(model.save(world.root.parent / "research-model"))
    returns = result.equity.sort("ts")["equity"].pct_change().drop_nulls().to_numpy()[-2000:]
    report = evaluate_gate(
        candidate_returns=returns,
        folds=[{"trades": 6}, {"trades": 4}],
        trial_sharpes=np.array([0.01, 0.02, 0.005]),
        returns_matrix=np.stack([returns, returns * 0.5, returns[::-1]], axis=1),
        champion_sharpe=None,
        periods_per_year=periods_per_year("4h"),
    )
    registry.promote(
        "sma_cross",
        artifact,
        lineage=Lineage(
            git_commit=git_commit(REPO),
            data_snapshot=snapshot_hash(files),
            notebook="notebooks/thresholds.py",
            parameters={"fast": 10, "slow": 40},
            run_id="research-run",
            gate=report.as_dicts(),
            metrics={c["name"]: c["value"] for c in report.as_dicts()},
        ),
    )


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
