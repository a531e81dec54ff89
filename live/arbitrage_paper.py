"""Paper execution of arbitrage opportunities: both legs through the live engine's order path.

Off by default: the arbitrage service (``live.arbitrage``) runs a :class:`PaperExecutor` only
when given one (``tradeloop arbitrage run --paper-execute``). Sizing, inventory and the result
follow ``tradeloop.arbitrage.execution``; here is how the legs travel.

Rules:

1. **A paper session.** The legs' orders and fills are stored in the operational database's
   ``orders`` and ``fills`` under one trading session (``PaperExecutionConfig.session``, mode
   ``paper``, strategy ``arbitrage``), created at the first start with the configuration and
   the pre-funded inventory (its ``config``), resumed after a restart. A session of another
   mode or strategy, or one pre-funded differently (its balances follow from that inventory),
   is refused: name another session.
2. **Paper only.** The executor sends to the quote paper book (``live.brokers.quote_paper``) and
   refuses any other broker (a ccxt broker, a router, anything that is a ``VenueAccount``): this
   service never trades real money.
3. **The order manager's path** (``live.orders``, ``tradeloop.trading.order_state``): when an
   opportunity opens, both legs are stored as ``new`` orders (market, immediate-or-cancel,
   the same base quantity; buy ``venue:BASE-QUOTE`` of the cheap venue, sell on the rich
   one; an ``order_decided`` audit row each) and committed; then marked ``sent`` (committed
   before the creates go out: a create goes out at most once); then each is submitted and the
   book's answers are stored through ``apply_state`` (fills stored once, every status change
   checked against the state machine and audited), with the pair's result in an audit row
   ``arbitrage_executed`` (``tradeloop.arbitrage.execution`` rule 4), in one transaction. A
   pair the inventory or ``min_notional`` leaves nothing for is an ``arbitrage_skipped`` row.
4. **Once per opportunity.** A leg's client order id is ``tl<session>-arb<opportunity row
   id>-b`` (``-s``: the sell leg); an opening whose legs are stored already (a repeated event,
   the same quotes after a restart) sends nothing.
5. **Restart.** Orders of the session still open (a crash between the steps of rule 3) are
   resolved by the book's ``recover`` before anything else: never filled, never resent (the
   quote they were priced on is gone).
6. **Operated like a session.** It executes only while the session is stored ``running``
   (``tradeloop live pause`` / the API pause it: openings pass untraded); its heartbeat
   (``sessions.heartbeat_at``) is written at the start and every :data:`HEARTBEAT_S` while
   quotes arrive, and cleared when the service ends (readers see ``stale`` then).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from live.brokers.base import Broker, OrderState, VenueAccount, wall_ms
from live.brokers.quote_paper import QuotePaperBroker, key_venue, quote_key
from live.orders import apply_state, mark_sent, new_order, request_of, send_record
from tradeloop.arbitrage import (
    ArbitrageEvent,
    LegFill,
    Opportunity,
    PairPlan,
    PairResult,
    PaperExecutionConfig,
    TopOfBook,
    assets,
    balances,
    pair_result,
    plan_pair,
)
from tradeloop.errors import ConfigError, SessionStateError
from tradeloop.ops import Fill, OpsStore, Order
from tradeloop.ops.store import OPEN_STATUSES
from tradeloop.trading import InstrumentId, OrderIntent, OrderIntentKind, OrderSide, TimeInForce

log = logging.getLogger(__name__)
STRATEGY = "arbitrage"
EXECUTED, SKIPPED = "arbitrage_executed", "arbitrage_skipped"
HEARTBEAT_S = 30.0


def leg_id(session_id: int, opportunity_id: int, side: OrderSide) -> str:
    """A leg's client order id (rule 4): at most 36 characters of [A-Za-z0-9-]."""
    return f"tl{session_id}-arb{opportunity_id}-{side.value[0]}"


def refuse_real_broker(broker: object) -> QuotePaperBroker:
    """``broker`` when it is the quote paper book; else a ConfigError (rule 2)."""
    if isinstance(broker, QuotePaperBroker) and broker.venue == "paper" and not isinstance(broker, VenueAccount):
        return broker
    raise ConfigError(
        f"arbitrage execution is paper only: broker {type(broker).__name__} (venue "
        f"{getattr(broker, 'venue', '?')!r}) may reach a real venue; give the quote paper book "
        "(live.brokers.quote_paper.QuotePaperBroker) or run detection only"
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Execution:
    """What became of one opening: the plan, the legs' final statuses and the pair's result
    (None: skipped, or nothing filled)."""

    opportunity_id: int
    plan: PairPlan
    statuses: dict[str, str]  # client order id -> status
    result: PairResult | None

    def event(self) -> dict:
        """As published on the bus stream ``arbitrage_executions``."""
        return {
            "id": self.opportunity_id, "size": self.plan.size, "limited_by": self.plan.limited_by,
            "orders": dict(self.statuses), **(self.result.as_dict() if self.result is not None else {}),
        }  # fmt: skip


class PaperExecutor:
    """Paper-executes both legs of each opening (module rules). Cheap to construct; the
    session is made or resumed by :meth:`start`.

    Parameters
    ----------
    config
        The option (``tradeloop.arbitrage.PaperExecutionConfig``).
    broker
        The quote paper book, with the venues' taker fees; any other broker is refused (rule 2).
    symbols
        The ccxt spot symbols watched (the session's symbols, as ``venue:BASE-QUOTE`` keys).

    Raises
    ------
    ConfigError
        A broker that is not the quote paper book, or a symbol that is not spot.
    """

    def __init__(
        self,
        config: PaperExecutionConfig,
        *,
        store: OpsStore,
        broker: Broker,
        symbols: Iterable[str] = (),
    ):
        self.config, self.store = config, store
        self.broker = refuse_real_broker(broker)
        self.taker_fees = self.broker.taker_fees  # the fills' fees (rule 3)
        self.symbols = [s for s in symbols if assets(s)]  # spot only
        self.session_id: int | None = None
        self._beat_at = -HEARTBEAT_S

    # ------------------------------------------------------------------ the session
    async def start(self) -> int:
        """Make or resume the paper session (rule 1) and resolve its open orders (rule 5)."""
        if self.session_id is not None:
            return self.session_id
        session_id = await asyncio.to_thread(self._session)
        with self.store.transaction() as db:
            stuck = list(
                db.scalars(select(Order).where(Order.session_id == session_id, Order.status.in_(OPEN_STATUSES)))
            )
        states = []
        for order in stuck:
            sent, since_ms = send_record(order)
            states.append(await self.broker.recover(request_of(order), sent=sent, since_ms=since_ms))
        if states:
            log.warning(
                "paper arbitrage %s: %d order(s) left open at a restart resolved", self.config.session, len(states)
            )
            with self.store.transaction() as db:
                for state in states:
                    apply_state(db, state, session_id=session_id)
        self.session_id = session_id
        await self.beat()
        return session_id

    async def beat(self) -> None:
        """The session's heartbeat, at most every :data:`HEARTBEAT_S` (rule 6)."""
        if self.session_id is not None and time.monotonic() - self._beat_at >= HEARTBEAT_S:
            self._beat_at = time.monotonic()
            await asyncio.to_thread(self.store.beat, self.session_id)

    async def close(self) -> None:
        """The service ends: its heartbeat is cleared (rule 6)."""
        if self.session_id is not None:
            await asyncio.to_thread(self.store.beat, self.session_id, alive=False)

    def _session(self) -> int:
        name, stored = self.config.session, self.config.as_dict()
        try:
            row = self.store.session(name)
        except SessionStateError:
            keys = [quote_key(v, s) for v in sorted(self.taker_fees) for s in self.symbols]
            quotes = {assets(s)[1] for s in self.symbols}
            cash = sum(x for held in self.config.inventory.values() for a, x in held.items() if a in quotes)
            row = self.store.create_session(
                name=name, strategy=STRATEGY, exchange=sorted(self.taker_fees)[0] if self.taker_fees else "paper",
                timeframe="quote", symbols=keys, mode="paper", init_cash=cash,
                config={"arbitrage_paper": stored, "taker_fees": self.taker_fees},
            )  # fmt: skip
            return row.id
        if row.mode != "paper" or row.strategy != STRATEGY:
            raise ConfigError(
                f"session {name!r} is a {row.mode} {row.strategy} session; paper arbitrage keeps its own: "
                "give another --paper-session name"
            )
        if row.status == "stopped":
            raise SessionStateError(f"session {name!r} is stopped (final); give another --paper-session name")
        before = (row.config or {}).get("arbitrage_paper", {}).get("inventory")
        if before != stored["inventory"]:
            raise ConfigError(
                f"session {name!r} was pre-funded with inventory={before}, not {stored['inventory']}; its balances "
                "follow from that: give the same --inventory, or a new --paper-session for the new one"
            )
        return row.id

    # ------------------------------------------------------------------ execution
    def on_quote(self, top: TopOfBook) -> None:
        """Every quote the scanner sees, so the book fills at the quotes that opened it."""
        self.broker.on_quote(top)

    async def execute(self, event: ArbitrageEvent, *, opportunity_id: int) -> Execution | None:
        """Both legs of an opening (rules 3 and 4); None for another event or one done before."""
        if event.kind != "opened":
            return None
        session_id = await self.start()
        o = event.opportunity
        decided = await asyncio.to_thread(self._decide, session_id, o, opportunity_id)
        if decided is None:
            return None
        plan, orders = decided
        if not orders:
            return Execution(opportunity_id=opportunity_id, plan=plan, statuses={}, result=None)
        with self.store.transaction() as db:  # committed before the creates go out: at most once
            mark_sent(db, orders, now_ms=wall_ms(), with_legs=False)
        states = [await self._submit(order) for order in orders]
        return await asyncio.to_thread(self._store, session_id, o, opportunity_id, plan, orders, states)

    def _decide(self, session_id: int, o: Opportunity, opportunity_id: int) -> tuple[PairPlan, list[Order]] | None:
        ids = {side: leg_id(session_id, opportunity_id, side) for side in OrderSide}
        with self.store.transaction(immediate=True) as db:
            if db.scalar(select(Order.id).where(Order.client_order_id.in_(ids.values()))) is not None:
                return None  # rule 4: its legs exist
            status = OpsStore.session_row(db, session_id).status
            if status != "running":
                log.info(
                    "paper arbitrage: session %s is %s; opportunity %d not traded", session_id, status, opportunity_id
                )
                return None  # rule 6
            held = balances(self.config.inventory, self._fills(db, session_id))
            plan = plan_pair(o, config=self.config, taker_fees=self.taker_fees, held=held)
            detail = {"opportunity_id": opportunity_id, "symbol": o.symbol, "buy_venue": o.buy_venue,
                      "sell_venue": o.sell_venue, "net_bps": o.net_bps}  # fmt: skip
            if plan.skipped:
                OpsStore.audit(db, SKIPPED, session_id=session_id, detail={**detail, "limited_by": plan.limited_by})
                log.info("paper arbitrage: opportunity %d skipped (%s)", opportunity_id, plan.limited_by)
                return plan, []
            legs = ((OrderSide.BUY, o.buy_venue, o.buy_price), (OrderSide.SELL, o.sell_venue, o.sell_price))
            orders = [
                self._new_leg(db, session_id, o, side, venue, price, plan.size, ids[side])
                for side, venue, price in legs
            ]
            db.flush()
            for order, (_, _, price) in zip(orders, legs, strict=True):
                OpsStore.audit(
                    db, "order_decided", session_id=session_id, order_id=order.id,
                    detail={**detail, "leg": order.symbol, "side": order.side, "quantity": order.quantity,
                            "quoted": price},
                )  # fmt: skip
            return plan, orders

    @staticmethod
    def _new_leg(
        db: Session, session_id: int, o: Opportunity, side: OrderSide, venue: str, price: float, size: float, cid: str
    ) -> Order:
        key = quote_key(venue, o.symbol)
        intent = OrderIntent(
            instrument=InstrumentId(venue, key.partition(":")[2]), side=side, quantity=size, reference_price=price,
            kind=OrderIntentKind.ENTER_LONG if side is OrderSide.BUY else OrderIntentKind.EXIT_LONG,
            time_in_force=TimeInForce.IOC,
        )  # fmt: skip
        return new_order(
            db, session_id=session_id, venue="paper", ts=o.start_ts, intent=intent, symbol=key, client_id=cid
        )

    async def _submit(self, order: Order) -> OrderState:
        """One create; an unforeseen failure leaves the leg ``unknown``, never resent."""
        try:
            return await self.broker.submit(request_of(order))
        except Exception as exc:
            log.exception("paper arbitrage: sending %s failed", order.client_order_id)
            return OrderState(
                order.client_order_id, "unknown", reason=f"send failed: {type(exc).__name__}: {exc}"[:200]
            )

    def _store(
        self,
        session_id: int,
        o: Opportunity,
        opportunity_id: int,
        plan: PairPlan,
        orders: list[Order],
        states: list[OrderState],
    ) -> Execution:
        with self.store.transaction() as db:
            for state in states:
                apply_state(db, state, session_id=session_id)
            ids = [order.id for order in orders]
            fills = self._fills(db, session_id, order_ids=ids)
            result = pair_result(o, fills) if fills else None
            statuses = {r.client_order_id: r.status for r in db.scalars(select(Order).where(Order.id.in_(ids)))}
            done = Execution(opportunity_id=opportunity_id, plan=plan, statuses=statuses, result=result)
            detail = {"symbol": o.symbol, "buy_venue": o.buy_venue, "sell_venue": o.sell_venue, **done.event()}
            OpsStore.audit(db, EXECUTED, session_id=session_id, detail=detail)
        log.info("paper arbitrage: opportunity %d executed: %s", opportunity_id, done.event())
        return done

    @staticmethod
    def _fills(db: Session, session_id: int, *, order_ids: list[int] | None = None) -> list[LegFill]:
        query = select(Fill).where(Fill.session_id == session_id)
        if order_ids is not None:
            query = query.where(Fill.order_id.in_(order_ids))
        out = []
        for f in db.scalars(query.order_by(Fill.id)):
            venue, symbol = key_venue(f.symbol)  # every leg's symbol is its key (rule 3)
            out.append(
                LegFill(venue=venue, symbol=symbol, side=OrderSide(f.side), quantity=f.quantity,
                        price=f.price, fee=f.fee)
            )  # fmt: skip
        return out

    # ------------------------------------------------------------------ reads
    def executions(self) -> list[dict]:
        """Every executed pair of the session, oldest first (its ``arbitrage_executed`` rows)."""
        if self.session_id is None:
            return []
        return [dict(row.detail) for row in self.store.audit_log(self.session_id, events=(EXECUTED,))]

    def balances(self) -> dict[str, dict[str, float]]:
        """Venue -> asset -> held now (``tradeloop.arbitrage.execution`` rule 2)."""
        if self.session_id is None:
            return balances(self.config.inventory, [])
        with self.store.transaction() as db:
            return balances(self.config.inventory, self._fills(db, self.session_id))
