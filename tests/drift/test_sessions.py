"""Calibration drift on the champion's own closed trades (``tradeloop.drift.sessions``): a
paper session's round trips, each with the probability its entry was decided on and whether it
earned; only the champion's entries, never an in-sample session's; the report judges on them
once there are enough (``source='sessions'``), else on the simulated outcomes, and says which."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import polars as pl
from sqlalchemy import update

from live.runner import SessionConfig, build_engine, replay_feed
from tests.live.conftest import SYMBOLS, World, own_world, trained_world  # noqa: F401  (shared fixtures)
from tradeloop.drift import DriftConfig, DriftReport, brier, drift_report, drift_windows
from tradeloop.drift.sessions import session_outcomes
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.ops.adaptation import entry_probabilities, trade_fills
from tradeloop.registry import ModelRegistry
from tradeloop.thresholds.feedback import closed_trades


def test_the_champions_closed_trades_are_the_outcomes_calibration_is_judged_on(own_world: World) -> None:
    world = own_world
    bars = world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
    config = SessionConfig(name="judged", start=int(bars[-600]))
    engine = build_engine(world.settings, config)
    asyncio.run(engine.run(replay_feed(world.settings, config), max_bars=600))
    store: OpsStore = engine.store
    sid = engine.session.id

    traded = session_outcomes(store, strategy="sma_cross", artifact=world.champion)
    with store.transaction() as db:
        trades = closed_trades(trade_fills(db, sid), entry_probabilities(db, sid))
    assert traded.height == len(trades) >= 5
    assert traded["proba"].to_list() == [t.probability for t in sorted(trades, key=lambda t: (t.closed_ts, t.symbol))]
    assert traded["label"].to_list() == [
        int(t.net_return > 0) for t in sorted(trades, key=lambda t: (t.closed_ts, t.symbol))
    ]
    assert 0 < traded["label"].sum() < traded.height  # wins and losses: a real check of the labels
    assert session_outcomes(store, strategy="sma_cross", artifact="another-artifact").is_empty()
    assert session_outcomes(store, strategy="breakout", artifact=world.champion).is_empty()
    cut = int(traded["ts"][2])
    assert session_outcomes(store, strategy="sma_cross", artifact=world.champion, until_ms=cut).height == 3

    _, model = ModelRegistry(world.settings.registry_dir).load("sma_cross")
    windows = drift_windows(world.candles, model)
    enough = DriftConfig(min_closed=5)
    report = drift_report(windows, strategy="sma_cross", artifact=world.champion, config=enough, traded=traded)
    cal = report.calibration
    assert cal.source == "sessions" and cal.closed == traded.height
    assert cal.brier == brier(traded["proba"].to_numpy(), traded["label"].to_numpy())
    few = DriftConfig(min_closed=traded.height + 1)  # too few of its own: the simulated outcomes judge
    simulated = drift_report(windows, strategy="sma_cross", artifact=world.champion, config=few, traded=traded)
    assert simulated.calibration.source == "simulated" and simulated.calibration.closed == windows.live_outcomes.height

    doc = report.as_dict()
    assert DriftReport.from_dict(json.loads(json.dumps(doc))).calibration.source == "sessions"
    del doc["calibration"]["source"]  # a report written before sessions were read
    assert DriftReport.from_dict(doc).calibration.source == "simulated"

    twin = build_engine(world.settings, config.model_copy(update={"name": "judged-twin"}))  # the same bars again
    asyncio.run(twin.run(replay_feed(world.settings, config), max_bars=600))
    twin.store.close()
    assert session_outcomes(store, strategy="sma_cross", artifact=world.champion).equals(traded)  # counted once
    with store.transaction() as db:  # a session trading bars the model was trained on proves nothing
        db.execute(update(TradingSession).values(in_sample=True))  # both sessions
    assert session_outcomes(store, strategy="sma_cross", artifact=world.champion).is_empty()
    assert np.isfinite(cal.brier)
    store.close()
