"""Promotion, rollback and a broken champion while a session runs; pause and resume."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace

import polars as pl

from live.models import ModelSlot
from live.runner import SessionConfig, build_engine, replay_feed
from tests.live.conftest import SYMBOLS, World
from tests.registry.test_registry import saved_model
from tradeloop.ops import EquityPoint
from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.strategies import SmaCross


def test_swap_without_restart_then_reduce_only_when_the_champion_breaks(world: World, tmp_path) -> None:
    settings = world.settings
    registry = ModelRegistry(settings.registry_dir)
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-900])
    config = SessionConfig(name="swaps", start=start)
    engine, feed = build_engine(settings, config), replay_feed(settings, config)
    try:
        asyncio.run(engine.run(feed, max_bars=200))
        _, champion = registry.load("sma_cross")
        challenger = registry.register(replace(champion, strategy=SmaCross(fast=8, slow=40)).save(tmp_path / "b"))
        registry.promote("sma_cross", challenger, lineage=Lineage(run_id="challenger"))
        asyncio.run(engine.run(feed, max_bars=200))
        registry.rollback("sma_cross")  # the original champion again
        asyncio.run(engine.run(feed, max_bars=100))
        for _ in range(300):  # break the champion while a position is open
            if any(engine.positions.values()):
                break
            asyncio.run(engine.run(feed, max_bars=1))
        assert any(engine.positions.values())
        broken = registry.register(saved_model(tmp_path / "c", 4))
        registry.promote("sma_cross", broken, lineage=Lineage(run_id="broken"))
        folder = registry.store.verify(broken)
        victim = next(p for p in sorted(folder.rglob("*")) if p.is_file())
        victim.write_bytes(victim.read_bytes() + b"tampered")
        broke_at = engine.session.last_bar_ts
        asyncio.run(engine.run(feed))
    finally:  # the shared registry as it was: the original champion, no tampered artifact
        registry.promote("sma_cross", world.champion, lineage=Lineage(run_id="restore"))
        if "broken" in locals():
            shutil.rmtree(registry.store.path(broken))

    in_force = engine.store.thresholds(engine.session.id)
    assert [(t.source, t.artifact) for t in in_force] == [
        ("model", world.champion), ("model", challenger), ("model", world.champion),
        ("static", None)]
    assert "failed to load" in in_force[-1].reason
    after = [o for o in engine.store.orders(engine.session.id) if o.decided_ts > broke_at]
    assert after and {o.intent for o in after} == {"exit_long"}  # reduce-only: exits, never an entry
    swaps = [e.event for e in engine.store.audit_log(engine.session.id) if e.event.startswith("model_")]
    assert swaps == ["model_swapped", "model_swapped", "model_swapped", "model_fallback"]


def test_stale_champion_falls_back_to_p_star_reduce_only(trained_world: World) -> None:
    slot = ModelSlot(ModelRegistry(trained_world.settings.registry_dir), strategy=SmaCross())
    _, model = ModelRegistry(trained_world.settings.registry_dir).load("sma_cross")
    assert slot.refresh(model.trained_until) and slot.current.model is not None
    assert slot.refresh(model.trained_until + model.max_age_ms + 1)
    assert slot.current.model is None and slot.current.threshold == model.estimator.p_star_
    assert "stale" in slot.current.reason


def test_pause_stops_orders_but_not_marks_and_resume_trades_again(world: World) -> None:
    settings = world.settings
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-600])
    config = SessionConfig(name="pausing", start=start)
    engine, feed = build_engine(settings, config), replay_feed(settings, config)
    asyncio.run(engine.run(feed, max_bars=100))
    engine.store.set_status("pausing", "paused")
    paused_from = engine.session.last_bar_ts
    asyncio.run(engine.run(feed, max_bars=300))
    paused_to = engine.store.session("pausing").last_bar_ts
    engine.store.set_status("pausing", "running")
    asyncio.run(engine.run(feed))
    orders = engine.store.orders(engine.session.id)
    assert not [o for o in orders if paused_from < o.decided_ts <= paused_to]
    assert [o for o in orders if o.decided_ts > paused_to] and [o for o in orders if o.decided_ts <= paused_from]
    marks = engine.store.frame(EquityPoint, engine.session.id)
    assert marks.filter(pl.col("ts").is_between(paused_from + 1, paused_to)).height == 300
    engine.store.set_status("pausing", "stopped")
    assert asyncio.run(engine.run(feed)) is None and engine.store.session("pausing").last_bar_ts == marks["ts"].max()
