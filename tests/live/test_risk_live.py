"""The risk engine inside the live engine (replay feed, paper broker, promoted model): a
denied entry is audited and published with its rule and numbers and never reaches the
broker; the kill switch puts the session in reduce-only until ``tradeloop live ack``,
flattening when asked; the risk state survives a restart."""

from __future__ import annotations

import asyncio

import polars as pl
import pytest

from live.runner import SessionConfig, run_session
from tests.live.conftest import SYMBOLS, World
from tradeloop.ops import AuditEvent, OpsStore
from tradeloop.risk import RiskConfig

BARS = 300


def _start(world: World) -> int:
    return int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-BARS])


def _audit(store: OpsStore, session_id: int, event: str) -> list[AuditEvent]:
    return [a for a in store.audit_log(session_id) if a.event == event]


def test_an_order_over_the_notional_cap_is_denied_audited_and_published_and_never_sent(
    trained_world: World,
) -> None:
    cap = 1_000.0  # every entry asks for fraction * equity = 5,000 of 10,000
    config = SessionConfig(
        name="capped", start=_start(trained_world), fraction=0.5, risk=RiskConfig(max_order_notional=cap)
    )
    engine = asyncio.run(run_session(trained_world.settings, config))
    store, sid = engine.store, engine.session.id
    assert store.orders(sid) == [] and store.fills(sid) == []  # nothing stored, nothing sent
    denied = _audit(store, sid, "risk_denied")
    assert len(denied) >= 3, "the replay should have tried several entries"
    for row in denied:
        assert row.detail["rule"] == "max_order_notional"
        assert row.detail["limit"] == pytest.approx(cap)
        assert row.detail["value"] > cap  # the entry's quote amount, as asked
        assert row.detail["instrument"].startswith("coinbase:")
    published = [e for e in store.unrelayed_events(sid) + _relayed(store, sid) if e.stream == "risk"]
    assert len(published) == len(denied)
    assert engine.session.status == "finished"  # the engine went on to the end of its data
    assert RiskConfig.parse(store.session("capped").risk_config) == RiskConfig(max_order_notional=cap)


def _relayed(store: OpsStore, session_id: int) -> list:
    from sqlalchemy import select

    from tradeloop.ops.models import OutboxEvent

    with store.transaction() as db:
        return list(db.scalars(select(OutboxEvent).where(OutboxEvent.session_id == session_id)))


@pytest.mark.parametrize("flatten", [False, True])
def test_the_kill_switch_halts_entries_until_ack_and_flattens_when_asked(trained_world: World, flatten: bool) -> None:
    name = f"kill-{flatten}"
    risk = RiskConfig(max_drawdown=0.002, daily_loss_limit=None, flatten_on_kill=flatten)
    config = SessionConfig(name=name, start=_start(trained_world), fraction=0.5, risk=risk)
    engine = asyncio.run(run_session(trained_world.settings, config))
    store, sid = engine.store, engine.session.id
    [trip] = _audit(store, sid, "kill_switch_tripped")
    assert trip.detail["rule"] == "max_drawdown" and trip.detail["value"] >= 0.002
    session = store.session(name)
    assert session.needs_ack is not None and "drawdown" in session.needs_ack
    after = [o for o in store.orders(sid) if o.decided_ts >= trip.detail["ts"]]
    assert all(o.intent != "enter_long" for o in after), "no entry once tripped"
    refused = _audit(store, sid, "entry_refused") + _audit(store, sid, "risk_denied")
    assert refused, "the replay should have wanted an entry after the trip"
    if flatten:
        flat = [o for o in after if o.intent == "flatten"]
        assert flat and all(o.status == "filled" for o in flat)
        assert all(abs(q) < 1e-12 for q in engine.positions.values())
    stored_state = session.risk_state
    assert stored_state is not None and stored_state["tripped"] is not None  # survives a restart


def test_an_ack_re_bases_the_kill_switch_and_entries_come_back(trained_world: World) -> None:
    name = "kill-ack"
    risk = RiskConfig(max_drawdown=0.01, daily_loss_limit=None)
    config = SessionConfig(name=name, start=_start(trained_world), fraction=0.5, risk=risk)
    store = None
    for _ in range(BARS // 10):  # ten bars at a time until the switch trips
        engine = asyncio.run(run_session(trained_world.settings, config, max_bars=10))
        store = engine.store
        if store.session(name).needs_ack is not None:
            break
    assert store is not None and store.session(name).needs_ack is not None, "the switch should have tripped"
    tripped_at = engine.session.last_bar_ts
    assert engine.risk_state.tripped is not None  # kept across the restarts of the loop
    [first] = _audit(store, engine.session.id, "kill_switch_tripped")
    held_since = store.session(name).risk_state["last_equity"]
    store.acknowledge(name)
    engine = asyncio.run(run_session(trained_world.settings, config, max_bars=1))
    state = store.session(name).risk_state
    assert state["tripped"] is None  # cleared by the ack, and the bar after it did not trip again
    # re-based: the high-water mark restarted from the equity at the ack (the old one was higher)
    assert state["high_water"] < first.detail["reference"]
    assert state["high_water"] == pytest.approx(max(held_since, state["last_equity"]))
    acked = len(store.audit_log(engine.session.id))
    engine = asyncio.run(run_session(trained_world.settings, config))
    later = store.audit_log(engine.session.id)[acked:]
    trips = [a for a in later if a.event == "kill_switch_tripped"]
    until = later.index(trips[0]) if trips else len(later)
    # between the ack and any later trip, nothing is refused: the switch no longer holds entries
    assert not [a for a in later[:until] if a.event in ("entry_refused", "risk_denied")]
    if trips:  # measured from the equity at the ack, not from the old high-water mark
        assert trips[0].detail["reference"] < first.detail["reference"]
        assert trips[0].detail["ts"] > tripped_at
