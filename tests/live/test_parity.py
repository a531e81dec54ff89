"""Research/live parity: the live engine (replay feed, paper broker, promoted model) places
the same orders and ends with the same equity as the backtest of that model on those candles."""

from __future__ import annotations

import asyncio

import polars as pl

from live.runner import SessionConfig, run_session
from tests.live.conftest import SYMBOLS, World, assert_matches_backtest, make_settings

BARS = 1000


def test_live_replay_places_the_backtests_orders(trained_world: World) -> None:
    ts = trained_world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
    start = int(ts[-BARS])
    config = SessionConfig(name="parity", start=start, window_bars=400, fraction=0.5)
    engine = asyncio.run(run_session(trained_world.settings, config))
    assert engine.bars == trained_world.candles.filter(pl.col("ts") >= start)["ts"].n_unique()
    assert assert_matches_backtest(trained_world, "parity", start=start) == len(engine.store.fills(engine.session.id))


def test_parity_on_postgresql(trained_world: World, pg_url: str) -> None:
    """The same live path with the operational database on the real PostgreSQL server."""
    settings = make_settings(trained_world.root, DATABASE_URL=pg_url)
    start = int(trained_world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-300])
    engine = asyncio.run(run_session(settings, SessionConfig(name="parity-pg", start=start)))
    assert engine.store.engine.dialect.name == "postgresql" and engine.bars >= 299
    assert assert_matches_backtest(trained_world, "parity-pg", start=start, database_url=pg_url) >= 10
