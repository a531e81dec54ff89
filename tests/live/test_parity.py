"""Research/live parity: the live engine (replay feed, paper broker, promoted model) places
the same orders and ends with the same equity as the backtest of that model on those candles."""

from __future__ import annotations

import asyncio

import polars as pl

from live.runner import SessionConfig, run_session
from tests.live.conftest import SYMBOLS, World, assert_matches_backtest

BARS = 1000


def test_live_replay_places_the_backtests_orders(world: World) -> None:
    ts = world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
    start = int(ts[-BARS])
    config = SessionConfig(name="parity", start=start, window_bars=400, fraction=0.5)
    engine = asyncio.run(run_session(world.settings, config))
    assert engine.store.engine.dialect.name == world.settings.effective_database_url.split(":")[0].split("+")[0]
    assert engine.bars == world.candles.filter(pl.col("ts") >= start)["ts"].n_unique()
    assert assert_matches_backtest(world, "parity", start=start) == len(engine.store.fills(engine.session.id))
