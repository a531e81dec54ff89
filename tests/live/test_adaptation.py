"""A paper session that adapts its threshold, over replayed bars: every adjustment is the pure
replay's (``tradeloop.thresholds.feedback.replay_thresholds``) at the same bar, from the fills
and controls the session stored, across a restart of the engine; each one is audited with its
inputs, keeps to its guardrails, and the entries after it were decided with it."""

from __future__ import annotations

import asyncio

import polars as pl
from sqlalchemy.exc import OperationalError

import live.adaptation as adaptation
from live.brokers.base import FillReport, OrderState
from live.orders import apply_state
from live.runner import SessionConfig, build_engine, replay_feed
from tests.live.conftest import SYMBOLS, World
from tradeloop.ops import EquityPoint, OpsStore, Order
from tradeloop.ops.adaptation import ADAPTED, controls, entry_probabilities, trade_fills
from tradeloop.thresholds import OnlineConfig
from tradeloop.thresholds.feedback import TradeBook, closed_trades, replay_thresholds

# eager enough that the champion's threshold moves within the first 200 bars of the replay
CONFIG = OnlineConfig(min_samples=2, max_step=0.02, grid_width=0.1, discount=1.0)


def stored_replay(store: OpsStore, session_id: int, config: OnlineConfig):
    """The adjustments a research replay computes from what the session stored."""
    with store.transaction() as db:
        trades = closed_trades(trade_fills(db, session_id), entry_probabilities(db, session_id))
        applied = controls(db, session_id)
    bars = store.frame(EquityPoint, session_id)["ts"].sort().to_list()
    return trades, replay_thresholds(trades, bars=bars, controls=applied, config=config)


def test_live_adaptation_equals_its_replay_across_a_restart(world: World) -> None:
    bars = world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
    config = SessionConfig(name="adapting", start=int(bars[-1000]), adapt_thresholds=CONFIG)
    engine, feed = build_engine(world.settings, config), replay_feed(world.settings, config)
    asyncio.run(engine.run(feed, max_bars=100))
    engine.store.close()
    resumed = build_engine(world.settings, config)  # a new engine rebuilds its learner from the database
    asyncio.run(resumed.run(replay_feed(world.settings, config), max_bars=150))
    store, sid = resumed.store, resumed.session.id

    trades, replayed = stored_replay(store, sid, CONFIG)
    assert len(trades) >= 5
    rows = [r for r in store.thresholds(sid) if r.source == "online"]
    assert len(rows) >= 3 and rows[0].bar_ts < int(bars[-900]) < rows[-1].bar_ts  # before and after the restart
    assert [(r.bar_ts, r.threshold) for r in rows] == [(a.bar_ts, a.new) for a in replayed if a.moved]
    audited = [e.detail for e in store.audit_log(sid, events=(ADAPTED,))]
    assert [(d["bar_ts"], d["old"], d["new"], d["samples"], d["hit_rate"]) for d in audited] == [
        (a.bar_ts, a.old, a.new, a.samples, a.hit_rate) for a in replayed
    ]
    assert all(d["artifact"] == world.champion and len(d["outcomes"]) >= 1 for d in audited)
    lo, hi = CONFIG.bounds
    assert all(lo <= r.threshold <= hi for r in rows)
    assert all(abs(d["step"]) <= CONFIG.max_step * len(d["outcomes"]) + 1e-12 for d in audited)
    assert all(d["observed"] >= 1 for d in audited) and not any(
        d["new"] != d["old"] for d in audited if d["observed"] < CONFIG.min_samples
    )  # nothing moved before min_samples outcomes
    # each entry was decided against the threshold in force at its bar: the adapted one once adapted
    in_force = sorted(
        [(r.bar_ts, r.threshold) for r in store.thresholds(sid) if r.source in ("model", "online")]
    )  # fmt: skip
    entries = [
        (o.decided_ts, e.detail["proba"])
        for o in store.orders(sid)
        for e in store.audit_log(sid, events=("order_decided",))
        if e.order_id == o.id and o.intent == "enter_long"
    ]
    assert entries
    for ts, proba in entries:
        threshold = [t for b, t in in_force if b <= ts][-1]
        assert proba > threshold


def test_a_fill_reported_late_teaches_at_the_next_bar_live_and_in_the_replay(world: World) -> None:
    """A position's closing fill the venue reports only when the engine resumes (a reconciliation
    outside any bar; its ``ts`` five bars back): the learner counts the trade at the first bar
    after the one committed then, and the replay of what the session stored does the same."""
    bars = world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
    config = SessionConfig(name="adapting-late", start=int(bars[-1000]), adapt_thresholds=CONFIG)
    engine = build_engine(world.settings, config)
    asyncio.run(engine.run(replay_feed(world.settings, config), max_bars=100))
    store, sid = engine.store, engine.session.id
    with store.transaction() as db:
        probabilities = entry_probabilities(db, sid)
        book = TradeBook(probability_of=probabilities.get)
        for f in trade_fills(db, sid):
            book.add(f)
        symbol, held = next((s, o) for s, o in sorted(book.open.items()) if o.quantity > 0 and o.probability)
        entry = db.get(Order, held.entry_order_id)
        last = engine.session.last_bar_ts
        cid, step = entry.client_order_id, int(bars[1] - bars[0])
        late = FillReport(client_order_id=cid, symbol=symbol, side="sell", trade_id="late-1",
                          quantity=held.quantity, price=entry.avg_price * 1.01, fee=0.0,
                          ts=last - 5 * step)  # fmt: skip
        [stored] = apply_state(db, OrderState(client_order_id=cid, status=entry.status, fills=(late,)), session_id=sid)
    assert stored.after_bar_ts == last  # the bar committed when it was stored
    engine.store.close()
    resumed = build_engine(world.settings, config)
    asyncio.run(resumed.run(replay_feed(world.settings, config), max_bars=60))
    store = resumed.store
    _, replayed = stored_replay(store, sid, CONFIG)
    rows = [(r.bar_ts, r.threshold) for r in store.thresholds(sid) if r.source == "online"]
    assert rows == [(a.bar_ts, a.new) for a in replayed if a.moved]
    audited = [e.detail for e in store.audit_log(sid, events=(ADAPTED,))]
    assert [(d["bar_ts"], d["new"]) for d in audited] == [(a.bar_ts, a.new) for a in replayed]
    [counted] = [d for d in audited if any(o["closed_ts"] == late.ts for o in d["outcomes"])]
    assert counted["bar_ts"] == min(b for b in store.frame(EquityPoint, sid)["ts"] if b > last)
    store.close()


def test_a_bar_that_did_not_commit_leaves_the_learner_as_the_committed_bars_did(world: World, monkeypatch) -> None:
    """The first bar's transaction fails after the learner started (a lost connection at commit):
    the bar comes again and the learner with it, so what the session stored replays to what it did."""
    bars = world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
    config = SessionConfig(name="adapting-retried", start=int(bars[-1000]), adapt_thresholds=CONFIG)
    real, failed = adaptation.ThresholdAdaptation.on_bar, []

    def on_bar(self, db, bar_ts, *, slot) -> None:
        real(self, db, bar_ts, slot=slot)
        if not failed:
            failed.append(bar_ts)
            raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(adaptation.ThresholdAdaptation, "on_bar", on_bar)
    engine = build_engine(world.settings, config)
    asyncio.run(engine.run(replay_feed(world.settings, config), max_bars=120))
    store, sid = engine.store, engine.session.id
    assert failed and store.frame(EquityPoint, sid)["ts"].min() == failed[0]  # that bar did come again
    with store.transaction() as db:
        assert controls(db, sid)  # the learner's start is stored with the bar that committed
    _, replayed = stored_replay(store, sid, CONFIG)
    rows = [(r.bar_ts, r.threshold) for r in store.thresholds(sid) if r.source == "online"]
    assert rows and rows == [(a.bar_ts, a.new) for a in replayed if a.moved]
    assert engine.adaptation.loop.threshold == replayed[-1].new  # the live learner is where its replay is


def test_a_session_without_adaptation_records_nothing_of_it(trained_world: World) -> None:
    world = trained_world
    bars = world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
    config = SessionConfig(name="plain", start=int(bars[-1000]))
    engine = build_engine(world.settings, config)
    asyncio.run(engine.run(replay_feed(world.settings, config), max_bars=200))
    sources = {r.source for r in engine.store.thresholds(engine.session.id)}
    events = {e.event for e in engine.store.audit_log(engine.session.id)}
    assert sources == {"model"} and not events & {ADAPTED, "threshold_adaptation", "threshold_adaptation_on"}
    engine.store.close()
