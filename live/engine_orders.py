"""The engine's orders and fills (``LiveEngine`` inherits :class:`EngineOrders`): the bar's
order rows with their audit (persist, in the bar's transaction), the sends after the commit (each
create at most once; a broker that fails leaves the order ``unknown``), and every broker report
stored and applied to the book of the order it fills (``live.orders.apply_state``): a capital
slice's order's fills to the slice's book (``live.slice_venue`` rule 2), every other fill and
the funding payments (``live.funding``) to the champion's. Module rules: ``live.engine``."""

from __future__ import annotations

import logging

from live.brokers.base import Broker, OrderState
from live.engine_config import EngineConfig
from live.models import ModelSlot
from live.orders import apply_state, mark_sent, new_order, request_of, store_position
from live.reconcile import halt_if_unknown, wall_ms
from live.slices import SliceStage
from live.venue_protection import VenueProtection
from live.venues import instrument_of, key_of, sent_to
from tradeloop.logs import bound_ids
from tradeloop.observability import SessionMetrics
from tradeloop.ops import OpsStore, Order, TradingSession
from tradeloop.portfolio import CashFlowKind, Portfolio
from tradeloop.trading import FillRecord, InstrumentId, OrderIntent, OrderSide

log = logging.getLogger(__name__)


class EngineOrders:
    """Persist, send and apply (module rules)."""

    store: OpsStore
    config: EngineConfig
    session: TradingSession
    broker: Broker
    portfolio: Portfolio
    metrics: SessionMetrics
    slot: ModelSlot
    protection: VenueProtection | None
    slices: SliceStage
    entry_proba: dict[str, float]

    @property
    def cash(self) -> float:
        return self.portfolio.cash

    def instrument(self, symbol: str) -> InstrumentId:
        return instrument_of(self.session.exchange, symbol)

    def _persist(self, db, ts: int, intents: list[OrderIntent]) -> list[Order]:
        """Persist: an order row (status ``new``) and an ``order_decided`` audit row per intent,
        committed with the bar before anything is sent."""
        sent = [(i, sent_to(self.broker, i.instrument), key_of(self.session.exchange, i.instrument)) for i in intents]
        orders = [new_order(db, session_id=self.session.id, venue=v, ts=ts, intent=i, symbol=k) for i, v, k in sent]
        db.flush()  # order ids for the audit rows
        for order in orders:
            OpsStore.audit(
                db,
                "order_decided",
                session_id=self.session.id,
                order_id=order.id,
                detail={
                    "symbol": order.symbol,
                    "side": order.side,
                    "quantity": order.quantity,
                    "quote_amount": order.quote_amount,
                    **(
                        {"proba": self.entry_proba[order.symbol], "artifact": self.slot.current.artifact}
                        if order.intent.startswith("enter_") and order.symbol in self.entry_proba
                        else {}
                    ),
                },
            )
        return orders

    def _fund(self, db, amount: float, symbol: str) -> None:
        """A funding payment (``live.funding``): cash and the instrument's realised P&L, stored."""
        instrument = self.instrument(symbol)
        self.portfolio.add_cash_flow(amount, reason=CashFlowKind.FUNDING, instrument=instrument)
        held = self.portfolio.position(instrument)
        if held is not None:
            store_position(db, self.session.id, held)
        OpsStore.session_row(db, self.session.id, for_update=True).cash = self.cash

    def _apply(self, db, state: OrderState) -> None:
        """Store a broker's report (``live.orders.apply_state``); its new fills go through the
        book of their order: a capital slice's (in memory; the database rebuilds it from its
        fills), else the champion's portfolio, whose position is written back to its row."""
        for fill in apply_state(db, state, session_id=self.session.id):  # each fill on its order's venue
            instrument = self.instrument(fill.symbol)
            record = FillRecord(
                instrument=instrument, side=OrderSide(fill.side), quantity=fill.quantity, price=fill.price,
                fee=fill.fee, ts=fill.ts, trade_id=fill.trade_id,
            )  # fmt: skip
            self.metrics.filled(fill.side)
            order = db.get(Order, fill.order_id)
            if order is not None and (book := self.slices.book_for(order)) is not None:
                book.portfolio.apply_fill(record)
            else:
                self.portfolio.apply_fill(record)
                held = self.portfolio.position(instrument)
                assert held is not None  # a fill was just applied to it
                store_position(db, self.session.id, held)
                # its cash with it: a fill outside the bar's transaction (a stop leg, a cancel's
                # last fill, a recovery) is never applied twice, so its cash must not wait for a commit
                OpsStore.session_row(db, self.session.id, for_update=True).cash = self.cash
            if self.config.publish:
                OpsStore.add_event(
                    db,
                    "fills",
                    {
                        "client_order_id": state.client_order_id,
                        "symbol": fill.symbol,
                        "side": fill.side,
                        "qty": fill.quantity,
                        "price": fill.price,
                    },
                    session_id=self.session.id,
                )

    async def _send(self, orders: list[Order]) -> None:
        with self.store.transaction() as db:  # committed before the creates go out: at most once
            mark_sent(db, orders, now_ms=wall_ms(), with_legs=self.protection is None)
        states = [await self._submit(o) for o in orders]
        with self.store.transaction() as db:
            for state in states:
                self._apply(db, state)
                halt_if_unknown(db, self.session.id, state)
            OpsStore.session_row(db, self.session.id).cash = self.cash

    async def _submit(self, order: Order) -> OrderState:
        """One create; a broker that fails in an unforeseen way leaves the order ``unknown`` (its
        symbol halts), never a dead engine: the create may have gone out. Its log records carry
        ``client_order_id`` (``tradeloop.logs``)."""
        with bound_ids(client_order_id=order.client_order_id):
            try:
                return await self.broker.submit(request_of(order))
            except Exception as exc:
                log.exception("session %s: sending %s failed", self.session.name, order.client_order_id)
                self.metrics.send_failed()
                return OrderState(
                    order.client_order_id,
                    "unknown",
                    reason=f"send failed: {type(exc).__name__}: {exc}; never resent"[:200],
                )
