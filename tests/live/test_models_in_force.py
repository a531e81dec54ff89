"""Promotion, rollback and a broken, crafted, malformed or mismatched champion while a session runs;
pause and resume."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from live.models import ModelSlot
from live.runner import SessionConfig, build_engine, replay_feed
from tests.live.conftest import SYMBOLS, World
from tests.registry.test_registry import saved_model
from tests.thresholds.hostile import PAYLOADS
from tradeloop.ops import EquityPoint
from tradeloop.ops.store import OPEN_STATUSES
from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.strategies import Momentum, SmaCross
from tradeloop.thresholds import Universe


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
        ("model", world.champion),
        ("model", challenger),
        ("model", world.champion),
        ("static", None),
    ]
    assert "failed to load" in in_force[-1].reason
    bars = engine.store.frame(EquityPoint, engine.session.id)["ts"]
    assert [t.bar_ts for t in in_force] == sorted(t.bar_ts for t in in_force) and in_force[0].bar_ts == bars.min()
    assert in_force[-1].bar_ts == bars.filter(bars > broke_at).min()  # the fallback decided from the next bar on
    after = [o for o in engine.store.orders(engine.session.id) if o.decided_ts > broke_at]
    assert after and {o.intent for o in after} == {"exit_long"}  # reduce-only: exits, never an entry
    swaps = [e.event for e in engine.store.audit_log(engine.session.id) if e.event.startswith("model_")]
    assert swaps == ["model_swapped", "model_swapped", "model_swapped", "model_fallback"]


def test_stale_champion_falls_back_to_p_star_reduce_only(trained_world: World) -> None:
    slot = ModelSlot(ModelRegistry(trained_world.settings.registry_dir), strategy=SmaCross())
    _, model = ModelRegistry(trained_world.settings.registry_dir).load("sma_cross")
    assert slot.refresh(model.trained_until + 1) and slot.current.model is not None  # after its training end
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


# ---------------------------------------------------------------- hostile or mismatched champions
def _manifest(world: World) -> Path:
    return world.settings.registry_dir / "champions" / "sma_cross.json"


def _start(world: World, bars: int) -> int:
    return int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-bars])


def _hold_a_position(engine, feed) -> None:
    """Run bar by bar until a position is open and no order (its exit, say) is pending."""
    for _ in range(300):
        if any(engine.positions.values()) and not engine.store.orders(engine.session.id, statuses=OPEN_STATUSES):
            return
        asyncio.run(engine.run(feed, max_bars=1))
    raise AssertionError("no position held in 300 bars")


def test_a_crafted_champion_means_reduce_only_and_its_code_never_runs(own_world: World, tmp_path) -> None:
    """A hostile writer puts an artifact with a classifier file that runs code when loaded
    (correct hash: the hash covers the crafted file) and points the manifest at it."""
    settings, registry = own_world.settings, ModelRegistry(own_world.settings.registry_dir)
    config = SessionConfig(name="hostile", start=_start(own_world, 700))
    engine, feed = build_engine(settings, config), replay_feed(settings, config)
    asyncio.run(engine.run(feed, max_bars=100))
    _hold_a_position(engine, feed)
    marker = tmp_path / "pwned"
    crafted = shutil.copytree(registry.store.verify(own_world.champion), tmp_path / "crafted")
    assert (crafted / "classifier.skops").exists()
    (crafted / "classifier.skops").write_bytes(PAYLOADS[0].build(marker))  # builtins.exec at load
    bad = registry.store.put(crafted)
    _manifest(own_world).write_text(_manifest(own_world).read_text().replace(own_world.champion, bad))
    switched_at = engine.session.last_bar_ts
    asyncio.run(engine.run(feed))

    assert not marker.exists()
    assert engine.store.session("hostile").last_bar_ts == own_world.candles["ts"].max()  # it kept going
    in_force = engine.store.thresholds(engine.session.id)
    assert [(t.source, t.artifact) for t in in_force] == [("model", own_world.champion), ("static", None)]
    fallbacks = [e.detail["reason"] for e in engine.store.audit_log(engine.session.id) if e.event == "model_fallback"]
    assert len(fallbacks) == 1 and fallbacks[0].startswith(f"champion {bad[:12]} failed to load")
    assert "outside the allow-list: ['builtins.exec']" in fallbacks[0]
    after = [o for o in engine.store.orders(engine.session.id) if o.decided_ts > switched_at]
    assert after and {o.intent for o in after} == {"exit_long"}  # reduce-only: exits, never an entry


def test_malformed_manifests_under_a_running_engine_mean_reduce_only_never_a_crash(own_world: World, tmp_path) -> None:
    settings, registry = own_world.settings, ModelRegistry(own_world.settings.registry_dir)
    _, champion = registry.load("sma_cross")
    momentum = registry.register(replace(champion, strategy=Momentum()).save(tmp_path / "momentum"))
    good = json.loads(_manifest(own_world).read_text())
    current = good["current"]
    cases = [
        ([good], "(document) = [", "registry unreadable"),
        ({"current": "abc", "previous": []}, "current = 'abc': Input should be a valid dictionary", "registry"),
        ({"previous": []}, "current = missing", "registry unreadable"),
        (good | {"current": current | {"strategy": "nope"}}, "unknown strategy 'nope'", "registry unreadable"),
        (good | {"current": current | {"artifact": ""}}, "current.artifact = ''", "registry unreadable"),
        (good | {"current": current | {"artifact": "../../lake"}}, "current.artifact = '../../lake'", "registry"),
        (
            good | {"current": current | {"artifact": momentum}},
            "holds a momentum model, not sma_cross",
            f"champion {momentum[:12]} failed to load",
        ),
    ]
    config = SessionConfig(name="manifests", start=_start(own_world, 600))
    engine, feed = build_engine(settings, config), replay_feed(settings, config)
    asyncio.run(engine.run(feed, max_bars=60))
    windows = []
    for doc, problem, prefix in cases:
        _manifest(own_world).write_text(json.dumps(doc))
        bars, since = engine.bars, engine.session.last_bar_ts
        asyncio.run(engine.run(feed, max_bars=20))
        assert engine.bars == bars + 20 and engine.slot.current.source == "static"
        assert engine.slot.current.reason.startswith(prefix) and problem in engine.slot.current.reason
        windows.append((since, engine.session.last_bar_ts))
        _manifest(own_world).write_text(json.dumps(good))
        asyncio.run(engine.run(feed, max_bars=20))
        assert engine.slot.current.source == "model" and engine.slot.current.artifact == own_world.champion

    swaps = [
        (e.event, e.detail["reason"]) for e in engine.store.audit_log(engine.session.id) if e.event.startswith("model_")
    ]
    assert [event for event, _ in swaps] == ["model_swapped"] + ["model_fallback", "model_swapped"] * len(cases)
    assert all(problem in reason for (_, problem, _), (_, reason) in zip(cases, swaps[1::2], strict=True))
    orders = engine.store.orders(engine.session.id)
    assert not [o for o in orders if o.intent != "exit_long" and any(a < o.decided_ts <= b for a, b in windows)]


@pytest.mark.parametrize(
    ("universe", "problem"),
    [
        (Universe(exchange="coinbase", timeframe="1h", symbols=SYMBOLS), "timeframe '1h' != session's '4h'"),
        (Universe(exchange="binance", timeframe="4h", symbols=SYMBOLS), "exchange 'binance' != session's 'coinbase'"),
        (
            Universe(exchange="coinbase", timeframe="4h", symbols=("BTC-USD",)),
            "symbols ['ETH-USD'] were not in its training universe ['BTC-USD']",
        ),
        (Universe(exchange="coinbase", timeframe="4h", symbols=(*SYMBOLS, "SOL-USD")), None),
    ],
    ids=["timeframe", "exchange", "symbols", "matching"],
)
def test_a_champion_trained_on_another_universe_is_not_traded(
    own_world: World, tmp_path, universe: Universe, problem: str | None
) -> None:
    settings, registry = own_world.settings, ModelRegistry(own_world.settings.registry_dir)
    _, champion = registry.load("sma_cross")
    artifact = registry.register(replace(champion, universe=universe).save(tmp_path / "model"))
    registry.promote("sma_cross", artifact, lineage=Lineage(run_id="elsewhere"))
    config = SessionConfig(name="universe", start=_start(own_world, 400))
    engine, feed = build_engine(settings, config), replay_feed(settings, config)
    asyncio.run(engine.run(feed))

    in_force = engine.store.thresholds(engine.session.id)
    events = [e.event for e in engine.store.audit_log(engine.session.id) if e.event.startswith("model_")]
    intents = {o.intent for o in engine.store.orders(engine.session.id)}
    if problem is None:
        assert [(t.source, t.artifact, t.reason) for t in in_force] == [
            ("model", artifact, f"champion {artifact[:12]}")
        ]
        assert events == ["model_swapped"] and "enter_long" in intents
        return
    assert [(t.source, t.artifact) for t in in_force] == [("static", None)] and events == ["model_fallback"]
    reason = engine.slot.current.reason
    assert reason.startswith(f"champion {artifact[:12]} does not fit the session") and problem in reason
    assert "promote a model trained on the session's universe" in reason
    assert "enter_long" not in intents


class _FailsAtPredict:
    """A classifier that loaded and passed its checks, then fails on live rows (a model bug)."""

    def predict_proba(self, rows):
        raise ValueError("matmul: input operand 1 has a mismatch in its core dimension")


def test_a_champion_that_fails_while_deciding_means_reduce_only_never_a_dead_engine(own_world: World) -> None:
    settings = own_world.settings
    config = SessionConfig(name="fails-to-decide", start=_start(own_world, 700))
    engine, feed = build_engine(settings, config), replay_feed(settings, config)
    asyncio.run(engine.run(feed, max_bars=100))
    _hold_a_position(engine, feed)
    engine.slot.current.model.estimator.model_ = _FailsAtPredict()  # fault injection: the model in force breaks
    broke_at = engine.session.last_bar_ts
    asyncio.run(engine.run(feed))

    assert engine.store.session("fails-to-decide").last_bar_ts == own_world.candles["ts"].max()  # it kept going
    in_force = engine.store.thresholds(engine.session.id)
    assert [(t.source, t.artifact) for t in in_force] == [("model", own_world.champion), ("static", None)]
    fallbacks = [e.detail["reason"] for e in engine.store.audit_log(engine.session.id) if e.event == "model_fallback"]
    assert len(fallbacks) == 1 and "failed to decide: ValueError: matmul" in fallbacks[0]
    after = [o for o in engine.store.orders(engine.session.id) if o.decided_ts > broke_at]
    assert after and {o.intent for o in after} == {"exit_long"}  # reduce-only: exits, never an entry
