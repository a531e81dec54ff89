"""The capital slices' stage alone (``live.slices``, ``live.slice_funding``), on a SQLite
database with a stand-in for the shadow stage's model loading: a slice's own loss limits, the
funding cap, statuses read every bar, an unreadable model at a restart, a closing slice's resting
entries, a re-named waiting slice's share, a reload's leftovers, multi-venue keys and the
champion's throttle memory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select

from live.brokers.paper import PaperBroker
from live.feeds.base import CandleBatch
from live.slices import SliceStage
from tradeloop.backtest import BacktestConfig
from tradeloop.challengers.evidence import ChallengerStore, PairedBar
from tradeloop.ops import OpsStore, Order, TradingSession
from tradeloop.ops.challenger_models import ChallengerReturn, ChallengerRow
from tradeloop.portfolio import CashFlowKind, Portfolio
from tradeloop.risk import RiskConfig
from tradeloop.trading import FillRecord, InstrumentId, OrderSide

A, B = "a" * 64, "b" * 64
HOUR = 3_600_000
MODEL = object()  # a model the stage never asks to decide in these tests


class Shadow:
    """The shadow stage as the slices see it: ``load_model`` gives ``model`` (None: unreadable now,
    or ``refused`` for good)."""

    def __init__(self, model: object | None = MODEL, *, refused: bool = False):
        self.model, self._refused, self.sliced = model, refused, set()

    def load_model(self, artifact: str) -> object | None:
        return self.model

    def refused(self, artifact: str) -> bool:
        return self._refused


def _world(tmp_path: Path, *rows: dict) -> tuple[OpsStore, TradingSession]:
    store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
    session = store.create_session(
        name="split", strategy="sma_cross", exchange="binance", timeframe="1h", symbols=["BTC-USDT"], mode="paper",
        init_cash=10_000.0, config={},
    )  # fmt: skip
    with store.transaction() as db:
        for row in rows:
            db.add(ChallengerRow(session_id=session.id, **{"status": "shadow", **row}))
    return store, store.session("split")


def _open(artifact: str = A, share: float = 0.2, cash: float = 2_000.0, **more: object) -> dict:
    return {"artifact": artifact, "capital_share": share, "slice_cash": cash, "slice_ts": 0, "slice_state": "open",
            **more}  # fmt: skip


def _stage(store: OpsStore, session: TradingSession, shadow: Shadow | None = None, **risk: float) -> SliceStage:
    stage = SliceStage(
        store=store, session=session, broker=PaperBroker.of(BacktestConfig()), backtest=BacktestConfig(),
        risk_config=RiskConfig(**risk), shadow=shadow or Shadow(),  # type: ignore[arg-type]
    )  # fmt: skip
    stage.reload(session)
    return stage


def _bar(stage: SliceStage, ts: int) -> None:
    candles = pl.DataFrame({"symbol": ["BTC-USDT"], "ts": [ts], "open": [1.0], "high": [1.0], "low": [1.0],
                            "close": [1.0], "volume": [1.0]})  # fmt: skip
    asyncio.run(stage.run(CandleBatch(ts=ts, candles=candles, received_ns=0), equity=8_000.0))


def _row(store: OpsStore, artifact: str = A) -> ChallengerRow:
    [row] = [r for r in ChallengerStore(store).rows(store.session("split").id) if r.artifact == artifact]
    return row


def _order(session_id: int, cid: str, book: str | None, **more: object) -> Order:
    values = {"intent": "enter_long", "order_type": "limit", "reduce_only": False, **more}
    return Order(session_id=session_id, client_order_id=cid, venue="paper", symbol="BTC-USDT", side="buy",
                 time_in_force="gtc", quantity=0.01, price=1.0, decided_ts=0, status="acknowledged",
                 capital_slice=book, **values)  # fmt: skip


def _events(store: OpsStore, session_id: int, *events: str) -> list[str]:
    return [a.event for a in store.audit_log(session_id, events=events)]


def test_a_slice_that_loses_its_drawdown_retires_and_closes_and_a_restart_keeps_its_risk_state(
    tmp_path: Path,
) -> None:
    store, session = _world(tmp_path, _open())
    stage = _stage(store, session, max_drawdown=0.1, daily_loss_limit=None)
    with store.transaction() as db:
        stage.settle(db, HOUR, last={})
    stage.slices[A].portfolio.add_cash_flow(-300.0, reason=CashFlowKind.WITHDRAWAL)  # 15% down
    with store.transaction() as db:
        stage.settle(db, 2 * HOUR, last={})
        stage.transfer(db, 2 * HOUR, champion=Portfolio(cash=8_000.0))
    row = _row(store)
    assert (row.status, row.slice_state) == ("retired", "closing")
    assert _events(store, session.id, "slice_risk_tripped", "challenger_retired", "slice_closing") == [
        "slice_risk_tripped", "challenger_retired", "slice_closing"
    ]  # fmt: skip
    assert row.slice_risk_state["tripped"]["rule"] == "max_drawdown"
    again = _stage(store, store.session("split"), max_drawdown=0.1, daily_loss_limit=None)
    assert again.slices[A].risk.tripped is not None and again.slices[A].risk.high_water == pytest.approx(2_000.0)


def test_a_closing_slice_still_holds_its_share_so_no_naming_or_funding_passes_half(tmp_path: Path) -> None:
    class Registry:
        def resolve(self, artifact: str) -> str:
            return artifact

        def model_of(self, artifact: str, *, strategy: str) -> None:
            return None

        def champion(self, strategy: str) -> None:
            return None

    store, session = _world(tmp_path, _open(share=0.4, status="retired", slice_state="closing"))
    with pytest.raises(Exception, match="at most 0.5"):
        ChallengerStore(store).add(session, B, registry=Registry(), capital_share=0.2)  # type: ignore[arg-type]
    with store.transaction() as db:  # as a database named before the check counted closing slices
        db.add(ChallengerRow(session_id=session.id, artifact=B, status="shadow", capital_share=0.2))
        db.add(_order(session.id, "tl1c1-x", A, intent="exit_long", order_type="market", reduce_only=True))
    stage = _stage(store, session)
    for ts in (HOUR, 2 * HOUR):
        with store.transaction() as db:
            stage.transfer(db, ts, champion=Portfolio(cash=100_000.0))
    assert stage.slices[B].state == "waiting" and "would pass 0.5" in (stage.slices[B].why or "")
    assert _events(store, session.id, "slice_waiting") == ["slice_waiting"]  # once
    assert _row(store, B).slice_state == "waiting"


def test_funded_shares_past_half_never_raise_inside_the_bar(tmp_path: Path) -> None:
    store, session = _world(tmp_path, _open(share=0.5), _open(B, share=0.5))  # a database edited by hand
    stage = _stage(store, session)
    with store.transaction() as db:
        snapshot = stage._snapshot(stage.slices[A])
        assert stage.pre_trade(db, [], snapshot=snapshot, state=stage.slices[A].risk, ts=0, markets={}) == []
    assert _events(store, session.id, "champion_share_clamped") == ["champion_share_clamped"]


def test_a_retirement_stops_the_slice_at_the_next_bar_without_a_restart(tmp_path: Path) -> None:
    store, session = _world(tmp_path, _open())
    stage = _stage(store, session)
    _bar(stage, HOUR)
    ChallengerStore(store).retire(session.id, A, actor="test")
    _bar(stage, 2 * HOUR)  # not a sync bar
    assert stage.slices[A].retiring
    with store.transaction() as db:
        stage.transfer(db, 2 * HOUR, champion=Portfolio(cash=8_000.0))
    assert stage.slices[A].state == "closing"


def test_an_unreadable_model_at_a_restart_holds_the_slice_open_until_it_loads(tmp_path: Path) -> None:
    store, session = _world(tmp_path, _open())
    shadow = Shadow(None)
    stage = _stage(store, session, shadow)
    with store.transaction() as db:
        stage.transfer(db, HOUR, champion=Portfolio(cash=8_000.0))
        stage.decide(db, HOUR, window=pl.DataFrame(), last={}, flatten=False)
    held = stage.slices[A]
    assert (held.state, held.retiring, held.intents) == ("open", False, [])
    assert _row(store).slice_state == "open"
    shadow.model = MODEL
    stage._sync()
    assert stage.slices[A].model is MODEL


def test_a_refused_model_retires_the_challenger_and_closes_its_slice(tmp_path: Path) -> None:
    store, session = _world(tmp_path, _open())
    stage = _stage(store, session, Shadow(None, refused=True))
    with store.transaction() as db:
        stage.transfer(db, HOUR, champion=Portfolio(cash=8_000.0))
    assert (_row(store).status, _row(store).slice_state) == ("retired", "closing")


def test_a_closing_slice_cancels_its_resting_limit_entries(tmp_path: Path) -> None:
    store, session = _world(tmp_path, _open())
    stage = _stage(store, session)
    with store.transaction() as db:
        for cid, book in (("tl1c1-e", A), ("tl1-e", None)):
            db.add(_order(session.id, cid, book))
    ChallengerStore(store).retire(session.id, A, actor="test")
    _bar(stage, HOUR)
    with store.transaction() as db:
        stage.transfer(db, HOUR, champion=Portfolio(cash=8_000.0))
    statuses = {o.client_order_id: o.status for o in store.orders(session.id)}
    assert statuses == {"tl1c1-e": "cancel_requested", "tl1-e": "acknowledged"}


def test_a_waiting_slice_named_again_takes_its_new_share(tmp_path: Path) -> None:
    store, session = _world(tmp_path, {"artifact": A, "capital_share": 0.3})
    stage = _stage(store, session)
    _bar(stage, HOUR)
    assert stage.slices[A].state == "waiting"
    with store.transaction() as db:  # retired and named again between two bars
        db.scalar(select(ChallengerRow).where(ChallengerRow.artifact == A)).capital_share = 0.2
    _bar(stage, 2 * HOUR)
    assert stage.slices[A].share == pytest.approx(0.2)


def test_a_reload_forgets_the_evidence_of_a_bar_that_did_not_commit(tmp_path: Path) -> None:
    store, session = _world(tmp_path, _open())
    stage = _stage(store, session)
    stage._evidence = [(stage.slices[A], PairedBar(artifact=A, ts=HOUR, champion=0.0, challenger=0.0, equity=1.0,
                                                   orders=0))]  # fmt: skip
    stage.reload(store.session("split"))
    with store.transaction() as db:
        stage.persist(db, HOUR)
    with store.transaction() as db:
        assert db.scalars(select(ChallengerReturn)).all() == []


def test_slice_positions_are_keyed_as_the_session_names_them() -> None:
    from live.slices import Slice

    book = Portfolio(cash=1_000.0)
    book.apply_fill(FillRecord(instrument=InstrumentId("okx", "BTC-USDT"), side=OrderSide.BUY, quantity=0.01,
                               price=100.0, fee=0.0, ts=0))  # fmt: skip
    s = Slice(row_id=1, artifact=A, share=0.2, prefix="p", venue="binance", model=None, broker=None,  # type: ignore[arg-type]
              planner=None, risk=None, portfolio=book)  # type: ignore[arg-type]  # fmt: skip
    assert s.positions() == {"okx:BTC-USDT": pytest.approx(0.01)}


def test_the_champion_keeps_its_throttle_memory_when_the_shares_change(tmp_path: Path) -> None:
    store, session = _world(tmp_path, _open())
    stage = _stage(store, session, max_orders=5)
    with store.transaction() as db:
        stage._champion_state(db, [stage.slices[A]]).record_order(0)
        assert stage._champion_state(db, []).orders_in_window(0) == 1


def test_funding_leaves_the_champions_open_buys_their_cash(tmp_path: Path) -> None:
    """The champion holds 10,000 in cash, but a resting buy of its own may still spend 9,000 of it:
    a 20% slice (2,000) waits rather than take money that buy will spend."""
    store, session = _world(tmp_path, {"artifact": A, "capital_share": 0.2})
    stage = _stage(store, session)
    with store.transaction() as db:
        big = _order(session.id, "tl1-big", None)
        big.quantity, big.price = 9.0, 1_000.0
        db.add(big)
    _bar(stage, HOUR)
    with store.transaction() as db:
        stage.transfer(db, HOUR, champion=Portfolio(cash=10_000.0))
    assert stage.slices[A].state == "waiting" and "free cash" in (stage.slices[A].why or "")
    with store.transaction() as db:  # the buy is canceled: its cash is free again
        db.scalar(select(Order).where(Order.client_order_id == "tl1-big")).status = "canceled"
    _bar(stage, 2 * HOUR)
    with store.transaction() as db:
        stage.transfer(db, 2 * HOUR, champion=Portfolio(cash=10_000.0))
    assert stage.slices[A].state == "open" and stage.slices[A].portfolio.cash == pytest.approx(2_000.0)


def test_a_fill_is_the_slices_by_the_rule_a_restart_rebuilds_it_with(tmp_path: Path) -> None:
    """Live and at a restart (``books.slice_book``) alike: an order tagged with the slice and
    decided since its funding; an earlier funding's order, or one that only looks like it by its
    client id, is the champion's (whose book a closed slice's money went back to)."""
    store, session = _world(tmp_path, _open(slice_ts=5 * HOUR))
    stage = _stage(store, session)
    prefix = stage.slices[A].prefix
    ours, earlier, untagged = (_order(session.id, f"{prefix}{cid}", book) for cid, book in
                               (("now", A), ("then", A), ("bare", None)))  # fmt: skip
    ours.decided_ts, earlier.decided_ts, untagged.decided_ts = 6 * HOUR, 2 * HOUR, 6 * HOUR  # "then": funded before
    assert stage.book_for(ours) is stage.slices[A]
    assert stage.book_for(earlier) is None and stage.book_for(untagged) is None
