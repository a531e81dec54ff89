"""The risk stage's kill switch when the session already waits for an ack for another reason:
the trip is audited and added to the reason the operator reads (one ack clears both)."""

from __future__ import annotations

from pathlib import Path

from live.risk_stage import kill_switch, portfolio_snapshot
from tradeloop.ops import OpsStore
from tradeloop.portfolio import Portfolio
from tradeloop.risk import RiskConfig, RiskState


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
