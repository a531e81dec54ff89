"""Research/live parity: the live engine (replay feed, paper broker, promoted model) places
the same orders and ends with the same equity as the backtest of that model on those candles."""

from __future__ import annotations

import asyncio

import polars as pl

from live.runner import SessionConfig, run_session
from tests.live.conftest import SYMBOLS, World, assert_matches_backtest

BARS = 1000


def test_live_replay_places_the_backtests_orders(trained_world: World) -> None:
    ts = trained_world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
    start = int(ts[-BARS])
    config = SessionConfig(name="parity", start=start, window_bars=400, fraction=0.5)
    engine = asyncio.run(run_session(trained_world.settings, config))
    assert engine.bars == trained_world.candles.filter(pl.col("ts") >= start)["ts"].n_unique()
    assert assert_matches_backtest(trained_world, "parity", start=start) == len(engine.store.fills(engine.session.id))
