"""The risk stage's kill switch: a trip while the session already waits for an ack for another
reason is audited and added to the reason the operator reads (one ack clears both); a trip
cancels the resting limit entries on the broker and leaves the exits working."""

from __future__ import annotations

import asyncio
from pathlib import Path

from live.brokers.paper import PaperBroker
from live.order_manager import cancel_stale
from live.orders import apply_state, mark_sent, new_order, request_of
from live.risk_stage import kill_switch, portfolio_snapshot
from tradeloop.backtest import BacktestConfig
from tradeloop.ops import OpsStore
from tradeloop.portfolio import Portfolio
from tradeloop.risk import RiskConfig, RiskState
from tradeloop.trading import InstrumentId, OrderIntent, OrderIntentKind, OrderSide, OrderType, ProtectiveLeg


def test_a_trip_while_an_ack_is_pending_names_both_reasons(tmp_path: Path) -> None:
    store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
    session = store.create_session(
        name="s", strategy="sma_cross", exchange="binance", timeframe="1h", symbols=["BTC-USDT"], mode="paper",
        init_cash=100.0, config={},
    )  # fmt: skip
    config = RiskConfig(max_drawdown=0.1, daily_loss_limit=None)
    state = RiskState(config)
    with store.transaction() as db:
        OpsStore.require_ack(db, session.id, "balance drift: USDT off by -5", event="balance_drift", detail={})
    for ts, equity in ((0, 100.0), (3_600_000, 85.0)):  # 15% below the mark: the switch trips
        with store.transaction() as db:
            row = OpsStore.session_row(db, session.id, for_update=True)
            flat = kill_switch(
                db, session=session, row=row, state=state, config=config, ts=ts, equity=equity,
                snapshot=lambda e=equity: portfolio_snapshot(Portfolio(cash=e), {}),
            )  # fmt: skip
            assert flat == []
    reason = store.session("s").needs_ack
    assert reason.startswith("balance drift: USDT off by -5; and kill switch:") and "max_drawdown" in reason
    assert [a.event for a in store.audit_log(session.id)].count("kill_switch_tripped") == 1
    assert state.tripped is not None
    store.close()


def test_a_trip_cancels_the_resting_limit_entry_on_the_broker_and_leaves_exits_alone(tmp_path: Path) -> None:
    store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
    session = store.create_session(
        name="s", strategy="sma_cross", exchange="binance", timeframe="1h", symbols=["BTC-USDT"], mode="paper",
        init_cash=100.0, config={},
    )  # fmt: skip
    rules = BacktestConfig(entry_order="limit", limit_offset=0.01, limit_ttl_bars=5, stop_loss=0.05)
    broker = PaperBroker(fee_rate=0.0, rules=rules)
    btc = InstrumentId("binance", "BTC-USDT")
    entry = OrderIntent(
        instrument=btc, side=OrderSide.BUY, kind=OrderIntentKind.ENTER_LONG, order_type=OrderType.LIMIT,
        quantity=0.5, price=99.0, reference_price=100.0,
        protection=(ProtectiveLeg(kind=OrderIntentKind.STOP_LOSS, trigger_price=95.0),),
    )  # fmt: skip
    exit_ = OrderIntent(
        instrument=btc, side=OrderSide.SELL, kind=OrderIntentKind.EXIT_LONG, quantity=0.1, reference_price=100.0,
        reduce_only=True,
    )  # fmt: skip

    def apply(db, state) -> None:
        apply_state(db, state, session_id=session.id, venue=broker.venue)

    async def run() -> None:
        with store.transaction() as db:
            orders = [new_order(db, session_id=session.id, venue=broker.venue, ts=0, intent=i) for i in (entry, exit_)]
            db.flush()
            mark_sent(db, orders, now_ms=1)
            requests = [request_of(o) for o in orders]
        states = [await broker.submit(r) for r in requests]
        with store.transaction() as db:
            for state in states:
                apply(db, state)
        assert [s.status for s in states] == ["acknowledged", "acknowledged"]  # both wait for the next bar
        config = RiskConfig(max_drawdown=0.1, daily_loss_limit=None)
        state = RiskState(config)
        for ts, equity in ((0, 100.0), (3_600_000, 85.0)):  # 15% below the mark: the switch trips
            with store.transaction() as db:
                row = OpsStore.session_row(db, session.id, for_update=True)
                kill_switch(
                    db, session=session, row=row, state=state, config=config, ts=ts, equity=equity,
                    snapshot=lambda e=equity: portfolio_snapshot(Portfolio(cash=e), {}),
                )  # fmt: skip
        status = {o.intent: o.status for o in store.orders(session.id)}
        assert status == {"enter_long": "cancel_requested", "exit_long": "acknowledged", "stop_loss": "sent"}
        await cancel_stale(store, broker, session.id, now_ts=3_600_000, max_age_ms=None, apply=apply)

    asyncio.run(run())
    entry_row = next(o for o in store.orders(session.id) if o.intent == "enter_long")
    assert entry_row.status == "canceled"
    assert entry_row.client_order_id not in broker.book  # gone from the book: it can never fill
    assert [o.status for o in store.orders(session.id) if o.intent == "exit_long"] == ["acknowledged"]
    [requested] = [a for a in store.audit_log(session.id) if a.event == "order_cancel_requested"]
    assert requested.detail["reason"].startswith("kill switch: ") and "max_drawdown" in requested.detail["reason"]
    store.close()
