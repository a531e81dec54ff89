"""Two rules of the model in force: the live window covers the decision's warm-up
(``tradeloop.thresholds.warmup``), and a champion is never used at a bar it was trained on
unless the session was created in-sample."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import polars as pl
import pytest

from live.models import ModelSlot
from live.runner import SessionConfig, build_engine, replay_feed
from tests.live.conftest import SYMBOLS, World
from tradeloop.errors import ConfigError
from tradeloop.ops import TradingSession
from tradeloop.ops.champion_log import iso_utc
from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.strategies import Breakout, SmaCross
from tradeloop.strategies.signals import ENTER_LONG
from tradeloop.thresholds.decide import decide
from tradeloop.thresholds.warmup import min_window_bars

STEP = 4 * 3_600_000  # 4h bars
NEED = 375  # the champion's decision window: Wilder's RSI (tests/thresholds/test_warmup.py)


def _ts(world: World) -> list[int]:
    return world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"].to_list()


# ---------------------------------------------------------------- the window covers the warm-up
def test_the_engine_refuses_a_window_below_the_decisions_warm_up(own_world: World) -> None:
    assert min_window_bars(SmaCross()) == NEED
    config = SessionConfig(name="short-window", start=_ts(own_world)[-50], window_bars=NEED - 1)
    with pytest.raises(ConfigError) as refused:
        build_engine(own_world.settings, config)
    message = str(refused.value)
    assert f"window_bars={NEED - 1}" in message and f"warm-up of {NEED} bars" in message
    assert f"--window-bars {NEED}" in message and "SessionConfig.window_bars" in message
    engine = build_engine(own_world.settings, config.model_copy(update={"window_bars": NEED}))
    assert engine.config.window_bars == NEED
    engine.store.close()


def test_a_champion_needing_a_longer_window_than_the_session_is_reduce_only(own_world: World, tmp_path) -> None:
    registry = ModelRegistry(own_world.settings.registry_dir)
    _, champion = registry.load("sma_cross")
    after = champion.trained_until + STEP
    slot = ModelSlot(registry, strategy=SmaCross(), window_bars=NEED)
    assert slot.refresh(after) and slot.current.model is not None
    long_channel = replace(champion, strategy=SmaCross(fast=10, slow=400))  # 401 bars of score + 1
    wide = registry.register(long_channel.save(tmp_path / "wide"))
    registry.promote("sma_cross", wide, lineage=Lineage(run_id="wide"))
    assert slot.refresh(after) and slot.current.model is None and slot.current.source == "static"
    reason = slot.current.reason
    assert reason.startswith(f"champion {wide[:12]} needs a rolling window of 401 bars per symbol")
    assert f"window_bars={NEED}" in reason and "--window-bars 401" in reason
    assert not slot.refresh(after + STEP)  # the same misfit: recorded once
    roomy = ModelSlot(registry, strategy=SmaCross(), window_bars=401)
    assert roomy.refresh(after) and roomy.current.model is not None
    assert min_window_bars(Breakout(window=500), champion.features) == 502


# ---------------------------------------------------------------- never in-sample unless allowed
def test_a_champion_is_not_used_at_bars_it_was_trained_on(trained_world: World) -> None:
    registry = ModelRegistry(trained_world.settings.registry_dir)
    _, model = registry.load("sma_cross")
    until = model.trained_until
    slot = ModelSlot(registry, strategy=SmaCross())
    assert slot.refresh(until - STEP) and slot.current.model is None and slot.current.source == "static"
    reason = slot.current.reason
    assert reason.startswith(
        f"champion {trained_world.champion[:12]} was trained until {iso_utc(until)}, "
        f"at or after this bar {iso_utc(until - STEP)}: deciding with it would be in-sample"
    )
    assert slot.current.artifact == trained_world.champion and slot.current.threshold == model.estimator.p_star_
    assert not slot.refresh(until)  # the same rule on the next bar: unchanged, recorded once
    assert slot.current.reason == reason
    assert slot.refresh(until + STEP) and slot.current.model is not None  # the first bar after its training
    allowed = ModelSlot(registry, strategy=SmaCross(), allow_in_sample=True)
    assert allowed.refresh(until - STEP) and allowed.current.model is not None


def test_a_session_created_in_sample_may_use_its_champion_in_sample(trained_world: World) -> None:
    registry = ModelRegistry(trained_world.settings.registry_dir)
    until = registry.load("sma_cross")[1].trained_until
    for in_sample in (False, True):
        session = TradingSession(
            name="s",
            strategy="sma_cross",
            exchange="coinbase",
            timeframe="4h",
            symbols=list(SYMBOLS),
            in_sample=in_sample,
        )
        slot = ModelSlot.for_session(registry, session, window_bars=400)
        slot.refresh(until)
        assert (slot.current.model is not None) is in_sample
        assert slot.window_bars == 400 and slot.allow_in_sample is in_sample


def test_a_promotion_trained_past_the_replayed_bars_waits_for_the_bars_after_its_training(
    own_world: World, tmp_path
) -> None:
    """A champion trained on later data is promoted while a replay runs: the engine does not
    trade it (reduce-only) until the replay passes its training end, then swaps to it."""
    settings, registry = own_world.settings, ModelRegistry(own_world.settings.registry_dir)
    ts = _ts(own_world)
    config = SessionConfig(name="later-champion", start=ts[-300])
    engine, feed = build_engine(settings, config), replay_feed(settings, config)
    asyncio.run(engine.run(feed, max_bars=50))
    _, champion = registry.load("sma_cross")
    later = replace(champion, trained_until=ts[-100])
    artifact = registry.register(later.save(tmp_path / "later"))
    registry.promote("sma_cross", artifact, lineage=Lineage(run_id="later"))
    promoted_at = engine.session.last_bar_ts
    asyncio.run(engine.run(feed))

    in_force = engine.store.thresholds(engine.session.id)
    assert [(t.source, t.artifact) for t in in_force] == [
        ("model", own_world.champion),
        ("static", artifact),
        ("model", artifact),
    ]
    assert f"was trained until {iso_utc(ts[-100])}" in in_force[1].reason and "in-sample" in in_force[1].reason
    entries = [o for o in engine.store.orders(engine.session.id) if o.intent == "enter_long"]
    allowed = decide(own_world.candles, later, now_ms=ts[-1])  # what it accepts where it may decide
    missed = allowed.filter((pl.col("signal") == ENTER_LONG) & pl.col("ts").is_between(promoted_at + 1, ts[-100]))
    assert missed.height >= 1  # entries it would have taken, had it decided bars it was trained on
    assert not [o for o in entries if promoted_at < o.decided_ts <= ts[-100]]  # reduce-only meanwhile
    assert [o for o in entries if o.decided_ts > ts[-100]]  # then it trades


def test_live_run_refuses_a_window_below_the_warm_up_before_writing_a_session(trained_world, tmp_path) -> None:
    from tests.live.test_status import tradeloop
    from tradeloop.ops import OpsStore
    from tradeloop.strategies import get_strategy
    from tradeloop.thresholds.warmup import min_window_bars

    need = min_window_bars(get_strategy("sma_cross"))
    refused = tradeloop(
        trained_world, "live", "run", "--name", "short-window", "--window-bars", str(need - 1), "--max-bars", "1"
    )
    assert refused.returncode == 2, refused.stderr
    assert f"window_bars={need - 1}" in refused.stderr and f"--window-bars {need}" in refused.stderr
    store = OpsStore.open(trained_world.settings.effective_database_url)
    assert "short-window" not in {s.name for s in store.sessions()}  # nothing written
    store.close()
