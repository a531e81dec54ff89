"""Research/live parity: the live engine (replay feed, paper broker, promoted model) places
the same orders and ends with the same equity as the backtest of that model on those candles."""

from __future__ import annotations

import asyncio

import numpy as np
import polars as pl

from live.runner import SessionConfig, run_session
from tests.live.conftest import SYMBOLS, World
from tradeloop.backtest import BacktestConfig, run_backtest
from tradeloop.ops import EquityPoint, OpsStore
from tradeloop.registry import ModelRegistry
from tradeloop.thresholds.decide import decide

BARS = 1000


def backtest_orders(world: World, *, start: int, config: BacktestConfig, window: int) -> tuple[list, float]:
    _, model = ModelRegistry(world.settings.registry_dir).load("sma_cross")
    candles = world.candles
    first = candles.filter(pl.col("ts") < start).group_by("symbol").agg(pl.col("ts").sort().tail(window).first())
    candles = candles.filter(pl.col("ts") >= first["ts"].min())
    decided = decide(candles, model, now_ms=model.trained_until)
    decided = decided.with_columns(signal=pl.when(pl.col("ts") >= start).then(pl.col("signal")).otherwise(0))
    result = run_backtest(decided, config, timeframe="4h")
    trades = result.trades
    orders = [(r["entry_ts"], r["symbol"], "buy", r["qty"], r["entry_price"]) for r in trades.iter_rows(named=True)]
    orders += [(r["exit_ts"], r["symbol"], "sell", r["qty"], r["exit_price"])
               for r in trades.iter_rows(named=True) if not r["is_open"]]
    return sorted(orders), float(result.equity.sort("ts")["equity"][-1])


def test_live_replay_places_the_backtests_orders(trained_world: World) -> None:
    ts = trained_world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
    start = int(ts[-BARS])
    config = SessionConfig(name="parity", start=start, window_bars=400, fraction=0.5)
    engine = asyncio.run(run_session(trained_world.settings, config))
    assert engine.bars == trained_world.candles.filter(pl.col("ts") >= start)["ts"].n_unique()

    store = OpsStore.open(trained_world.settings.effective_database_url)
    session = store.session("parity")
    fills = sorted((f.ts, f.symbol, f.side, f.quantity, f.price) for f in store.fills(session.id))
    backtest = BacktestConfig(**session.config)
    expected, expected_equity = backtest_orders(trained_world, start=start, config=backtest, window=400)

    assert len(expected) >= 20, "too few trades for a meaningful parity check"
    assert [f[:3] for f in fills] == [e[:3] for e in expected]
    np.testing.assert_allclose([f[3] for f in fills], [e[3] for e in expected], rtol=1e-9)
    np.testing.assert_allclose([f[4] for f in fills], [e[4] for e in expected], rtol=1e-12)
    equity = store.frame(EquityPoint, session.id).sort("ts")["equity"][-1]
    assert abs(equity / expected_equity - 1) < 1e-9
    # every order was committed before it was sent, and each one ended filled
    orders = store.orders(session.id)
    assert {o.status for o in orders} <= {"filled", "submitted"}
    assert sum(o.status == "filled" for o in orders) == len(fills)
