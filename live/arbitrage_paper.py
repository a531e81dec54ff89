"""Paper execution of arbitrage opportunities: both legs through the live engine's order path.

Off by default: the arbitrage service (``live.arbitrage``) runs a :class:`PaperExecutor` only
when given one (``tradeloop arbitrage run --paper-execute``). Sizing, inventory and the result
follow ``tradeloop.arbitrage.execution``; here is how the legs travel.

Rules:

1. **A paper session** (``live.arbitrage_session``): the legs' orders and fills are stored in
   the operational database's ``orders`` and ``fills`` under one trading session
   (``PaperExecutionConfig.session``, mode ``paper``, strategy ``arbitrage``), made at the
   first start, resumed after a restart only with the settings it started with.
2. **One process per session.** :meth:`PaperExecutor.start` takes the session's engine lock
   (``live.locks``, ``session:<name>``, as ``tradeloop live run`` does): a second process on the
   same ``--paper-session`` is refused (SessionStateError naming the holder); only the holder
   writes or clears the heartbeat, and :meth:`PaperExecutor.close` releases the lock.
3. **Paper only.** The executor sends to the quote paper book (``live.brokers.quote_paper``) and
   refuses any other broker (a ccxt broker, a router, anything that is a ``VenueAccount``): this
   service never trades real money.
4. **The order manager's path** (``live.orders``, ``tradeloop.trading.order_state``): when an
   opportunity opens, it is sized from the running balances less what the session's orders
   still in flight may spend, and both legs are stored as ``new`` orders (market,
   immediate-or-cancel, the same base quantity; buy ``venue:BASE-QUOTE`` of the cheap venue,
   sell on the rich one; an ``order_decided`` audit row each) and committed. The **buy leg goes
   first**: marked ``sent`` (committed before its create goes out: at most once), submitted, its
   answer stored through ``apply_state``. The sell leg follows only for what the buy filled:
   when the buy filled nothing the sell is ``canceled`` unsent (an ``arbitrage_leg_skipped``
   row says why); when it filled part, the sell is cut to that (rounded down to the sell
   venue's step; an ``arbitrage_leg_resized`` row). Then the sell's answer, the session's cash
   (its quote asset over every venue), an equity point (``init_cash`` plus the realised PnL of
   every pair so far) and the pair's result (an ``arbitrage_executed`` row,
   ``tradeloop.arbitrage.execution`` rule 4: realised on the matched quantity, the rest
   ``unhedged``) in one transaction. A pair the balances, the venues' minimums or
   ``min_notional`` leave nothing for is an ``arbitrage_skipped`` row.
5. **Once per opportunity.** A leg's client order id is ``tl<session>-arb<opportunity row
   id>-b`` (``-s``: the sell leg); an opening whose legs are stored already (a repeated event)
   sends nothing. The service closes every opportunity row it left open at a restart
   (``live.arbitrage`` rule 5): a spread still open after a restart is a new opportunity, with a
   new row, and is traded again from what the session then holds.
6. **Restart.** Orders of the session still open (a crash between the steps of rule 4) are
   resolved by the book's ``recover`` before anything else: never filled, never resent (the
   quote they were priced on is gone). The balances are then read once from an aggregate of
   the session's fills and kept in memory after each pair.
7. **Operated like a session.** It executes only while the session is stored ``running``:
   ``tradeloop live pause`` / the API pause it (openings pass untraded, each logged; a session
   paused when the service starts is logged as a warning and audited ``arbitrage_paused``),
   ``tradeloop live resume`` resumes it, and ``tradeloop live stop`` ends it for good: the
   service exits at its next heartbeat or opening (SessionStateError). Its heartbeat
   (``sessions.heartbeat_at``) is written at the start and every :data:`HEARTBEAT_S` while
   quotes arrive, and cleared when the service ends (readers see ``stale`` then). Every
   database transaction runs off the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from live.arbitrage_session import (
    FINAL,
    STRATEGY,
    Execution,
    held_now,
    in_flight_left,
    leg_id,
    open_session,
    pair_fills,
    refuse_real_broker,
)
from live.brokers.base import Broker, OrderState, wall_ms
from live.brokers.quote_paper import quote_key
from live.locks import EngineLocks, session_lock_key
from live.orders import apply_state, mark_sent, new_order, request_of, send_record
from tradeloop.arbitrage import (
    ArbitrageEvent,
    MarketLimits,
    Opportunity,
    PairPlan,
    PairResult,
    PaperExecutionConfig,
    TopOfBook,
    assets,
    balances,
    floor_step,
    pair_result,
    plan_pair,
)
from tradeloop.arbitrage.execution import Balances
from tradeloop.errors import SessionStateError
from tradeloop.ops import EquityPoint, OpsStore, Order
from tradeloop.ops.store import OPEN_STATUSES
from tradeloop.trading import InstrumentId, OrderIntent, OrderIntentKind, OrderSide, TimeInForce

log = logging.getLogger(__name__)
__all__ = ["EXECUTED", "SKIPPED", "STRATEGY", "Execution", "PaperExecutor", "leg_id", "refuse_real_broker"]
EXECUTED, SKIPPED, PAUSED = "arbitrage_executed", "arbitrage_skipped", "arbitrage_paused"
LEG_SKIPPED, LEG_RESIZED = "arbitrage_leg_skipped", "arbitrage_leg_resized"
HEARTBEAT_S = 30.0


class PaperExecutor:
    """Paper-executes both legs of each opening (module rules). Cheap to construct; the
    session is made or resumed, and its lock taken, by :meth:`start`.

    Parameters
    ----------
    config
        The option (``tradeloop.arbitrage.PaperExecutionConfig``).
    broker
        The quote paper book, with the venues' taker fees; any other broker is refused (rule 3).
    symbols
        The ccxt spot symbols watched (the session's symbols, as ``venue:BASE-QUOTE`` keys).
    limits
        ``(venue, symbol)`` -> the market's amount step and minimums (``live.arbitrage.venue_limits``);
        a market not named rounds to ``tradeloop.arbitrage.DEFAULT_STEP``.

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
        limits: Mapping[tuple[str, str], MarketLimits] | None = None,
    ):
        self.config, self.store = config, store
        self.broker = refuse_real_broker(broker)
        self.taker_fees = self.broker.taker_fees  # the fills' fees (rule 4)
        self.symbols = [s for s in symbols if assets(s)]  # spot only
        self.limits = dict(limits or {})
        self.session_id: int | None = None
        self._locks: EngineLocks | None = None  # held between start and close (rule 2)
        self._held: Balances | None = None  # running balances (rule 6)
        self._equity: tuple[int, float] | None = None  # the last equity point (ts, equity)
        self._beat_at = -HEARTBEAT_S

    # ------------------------------------------------------------------ the session
    async def start(self) -> int:
        """Take the session's lock (rule 2), make or resume it (rule 1), resolve its open
        orders (rule 6) and read its balances; a session not running is logged and audited."""
        if self._locks is not None and self.session_id is not None:
            return self.session_id
        name = self.config.session
        locks = EngineLocks(self.store)
        await asyncio.to_thread(locks.acquire, session_lock_key(name), what=f"paper arbitrage session {name!r}")
        try:
            row = await asyncio.to_thread(
                open_session, self.store, self.config, symbols=self.symbols, taker_fees=self.taker_fees
            )
            stuck = await asyncio.to_thread(self._open_orders, row.id)
            states = []
            for order in stuck:
                sent, since_ms = send_record(order)
                states.append(await self.broker.recover(request_of(order), sent=sent, since_ms=since_ms))
            if states:
                log.warning("paper arbitrage %s: %d order(s) left open at a restart resolved", name, len(states))
                await asyncio.to_thread(self._apply, row.id, states)
            status = await asyncio.to_thread(self._resume, row.id)
        except BaseException:
            await asyncio.to_thread(locks.release)
            raise
        self._locks, self.session_id = locks, row.id
        if status != "running":
            log.warning(
                "paper arbitrage: session %r is %s at the start: openings are detected and stored but not traded "
                "until `tradeloop live resume %s`", name, status, name,
            )  # fmt: skip
        self._beat_at = -HEARTBEAT_S
        await self.beat()
        return row.id

    def _resume(self, session_id: int) -> str:
        with self.store.transaction() as db:
            row = OpsStore.session_row(db, session_id)
            self._held = held_now(db, session_id, self.config.inventory)
            last = db.scalars(
                select(EquityPoint).where(EquityPoint.session_id == session_id).order_by(EquityPoint.ts.desc())
            ).first()
            self._equity = (last.ts, last.equity) if last is not None else None
            if row.status != "running":
                OpsStore.audit(db, PAUSED, session_id=session_id, detail={"status": row.status, "at": "start"})
            return row.status

    async def beat(self) -> None:
        """The session's heartbeat, at most every :data:`HEARTBEAT_S`, while holding its lock
        (rule 2); a session stopped meanwhile ends the service (rule 7)."""
        if self._locks is None or self.session_id is None or time.monotonic() - self._beat_at < HEARTBEAT_S:
            return
        self._beat_at = time.monotonic()
        status = await asyncio.to_thread(self._beat, self._locks, self.session_id)
        if status in FINAL:
            raise SessionStateError(self._ended(status))

    def _beat(self, locks: EngineLocks, session_id: int) -> str:
        locks.verify()  # still ours (a PostgreSQL lock dies with its connection)
        self.store.beat(session_id)
        with self.store.transaction() as db:
            return OpsStore.session_row(db, session_id).status

    def _ended(self, status: str) -> str:
        name = self.config.session
        return (
            f"paper arbitrage session {name!r} is {status}: paper execution ends, and the service with it; "
            "give a new --paper-session name to trade again"
        )

    async def close(self) -> None:
        """The service ends: its heartbeat is cleared and the lock released (rule 2); only by the holder."""
        locks, self._locks = self._locks, None
        if locks is None or self.session_id is None:
            return
        try:
            await asyncio.to_thread(self.store.beat, self.session_id, alive=False)
        finally:
            await asyncio.to_thread(locks.release)

    # ------------------------------------------------------------------ execution
    def on_quote(self, top: TopOfBook) -> None:
        """Every quote the scanner sees, so the book fills at the quotes that opened it."""
        self.broker.on_quote(top)

    async def execute(self, event: ArbitrageEvent, *, opportunity_id: int) -> Execution | None:
        """Both legs of an opening, the buy first (rules 4 and 5); None for another event, one
        done before, or a session not running."""
        if event.kind != "opened":
            return None
        session_id = await self.start()
        o = event.opportunity
        status, plan, orders = await asyncio.to_thread(self._decide, session_id, o, opportunity_id)
        if status in FINAL:
            raise SessionStateError(self._ended(status))
        if plan is None:
            return None
        if not orders:
            return Execution(opportunity_id=opportunity_id, plan=plan, statuses={}, result=None)
        buy, sell = orders
        states = [await self._send(session_id, buy)]
        bought = sum(f.quantity for f in states[0].fills)
        step = self._limits(o.sell_venue, o.symbol).amount_step
        size = min(floor_step(bought, step), sell.quantity or 0.0)
        if size <= 0:  # the buy filled nothing (or dust): the sell would be a naked short of the inventory
            why = f"the buy leg {buy.client_order_id} filled {bought:g} ({states[0].status}: {states[0].reason})"
            states.append(OrderState(sell.client_order_id, "canceled", reason=f"not sent: {why}"[:200]))
            log.warning("paper arbitrage: opportunity %d: sell leg not sent: %s", opportunity_id, why)
        else:
            states.append(await self._send(session_id, sell, quantity=size))
        return await asyncio.to_thread(self._store, session_id, o, opportunity_id, plan, orders, states)

    def _limits(self, venue: str, symbol: str) -> MarketLimits:
        return self.limits.get((venue, symbol)) or MarketLimits()

    def _decide(self, session_id: int, o: Opportunity, opportunity_id: int) -> tuple[str, PairPlan | None, list[Order]]:
        ids = {side: leg_id(session_id, opportunity_id, side) for side in OrderSide}
        with self.store.transaction(immediate=True) as db:
            status = OpsStore.session_row(db, session_id).status
            if db.scalar(select(Order.id).where(Order.client_order_id.in_(ids.values()))) is not None:
                return status, None, []  # rule 5: its legs exist
            if status != "running":
                log.info("paper arbitrage: session %s is %s; opportunity %d not traded", session_id, status,
                         opportunity_id)  # fmt: skip
                return status, None, []  # rule 7
            held = self._held or balances(self.config.inventory, [])
            held = in_flight_left(db, session_id, held, tops=self.broker.tops, taker_fees=self.taker_fees)
            limits = {v: self._limits(v, o.symbol) for v in (o.buy_venue, o.sell_venue)}
            plan = plan_pair(o, config=self.config, taker_fees=self.taker_fees, held=held, limits=limits)
            detail = {"opportunity_id": opportunity_id, "symbol": o.symbol, "buy_venue": o.buy_venue,
                      "sell_venue": o.sell_venue, "net_bps": o.net_bps}  # fmt: skip
            if plan.skipped:
                OpsStore.audit(db, SKIPPED, session_id=session_id, detail={**detail, "limited_by": plan.limited_by})
                log.info("paper arbitrage: opportunity %d skipped (%s)", opportunity_id, plan.limited_by)
                return status, plan, []
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
            return status, plan, orders

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

    async def _send(self, session_id: int, order: Order, *, quantity: float | None = None) -> OrderState:
        """Mark ``order`` sent (committed first: at most once; cut to ``quantity`` when given),
        submit it, store the answer; an unforeseen failure leaves it ``unknown``, never resent."""
        await asyncio.to_thread(self._mark_sent, session_id, order, quantity)
        try:
            state = await self.broker.submit(request_of(order))
        except Exception as exc:
            log.exception("paper arbitrage: sending %s failed", order.client_order_id)
            state = OrderState(
                order.client_order_id, "unknown", reason=f"send failed: {type(exc).__name__}: {exc}"[:200]
            )
        await asyncio.to_thread(self._apply, session_id, [state])
        return state

    def _mark_sent(self, session_id: int, order: Order, quantity: float | None) -> None:
        with self.store.transaction() as db:
            if quantity is not None and quantity != order.quantity:
                db.execute(update(Order).where(Order.id == order.id).values(quantity=quantity))
                detail = {"from": order.quantity, "to": quantity, "why": "the buy leg filled part"}
                OpsStore.audit(db, LEG_RESIZED, session_id=session_id, order_id=order.id, detail=detail)
                order.quantity = quantity
            mark_sent(db, [order], now_ms=wall_ms(), with_legs=False)

    def _apply(self, session_id: int, states: list[OrderState]) -> None:
        with self.store.transaction() as db:
            for state in states:
                apply_state(db, state, session_id=session_id)

    def _open_orders(self, session_id: int) -> list[Order]:
        with self.store.transaction() as db:
            query = select(Order).where(Order.session_id == session_id, Order.status.in_(OPEN_STATUSES))
            return list(db.scalars(query))

    def _store(
        self,
        session_id: int,
        o: Opportunity,
        opportunity_id: int,
        plan: PairPlan,
        orders: list[Order],
        states: list[OrderState],
    ) -> Execution:
        """The sell leg's answer, the session's cash and equity and the pair's result, in one
        transaction (rule 4); the running balances after it commits."""
        buy, sell = orders
        ids = [buy.id, sell.id]
        with self.store.transaction() as db:
            apply_state(db, states[1], session_id=session_id)  # the buy's is stored already
            if not states[1].fills and states[1].reason.startswith("not sent"):
                OpsStore.audit(db, LEG_SKIPPED, session_id=session_id, order_id=sell.id,
                               detail={"opportunity_id": opportunity_id, "reason": states[1].reason})  # fmt: skip
            fills = pair_fills(db, session_id, order_ids=ids)
            result = pair_result(o, fills) if fills else None
            held = balances(self._held or self.config.inventory, fills)
            if result is not None:
                self._mark(db, session_id, o, held, result)
            statuses = {r.client_order_id: r.status for r in db.scalars(select(Order).where(Order.id.in_(ids)))}
            done = Execution(opportunity_id=opportunity_id, plan=plan, statuses=statuses, result=result)
            detail = {"symbol": o.symbol, "buy_venue": o.buy_venue, "sell_venue": o.sell_venue, **done.event()}
            OpsStore.audit(db, EXECUTED, session_id=session_id, detail=detail)
        self._held = held
        log.info("paper arbitrage: opportunity %d executed: %s", opportunity_id, done.event())
        return done

    def _mark(self, db: Session, session_id: int, o: Opportunity, held: Balances, result: PairResult) -> None:
        """The session's cash (its quote asset over every venue) and an equity point: the
        previous one plus the pair's realised PnL (rule 4)."""
        row = OpsStore.session_row(db, session_id, for_update=True)
        quote = (row.config or {}).get("quote") or assets(o.symbol)[1]
        row.cash = sum(venue.get(quote, 0.0) for venue in held.values())
        ts, equity = self._equity if self._equity is not None else (o.start_ts - 1, row.init_cash)
        point = EquityPoint(session_id=session_id, ts=max(o.start_ts, ts + 1),
                            equity=equity + result.realised_net_profit, cash=row.cash)  # fmt: skip
        db.add(point)
        db.flush()
        self._equity = (point.ts, point.equity)

    # ------------------------------------------------------------------ reads
    def executions(self) -> list[dict]:
        """Every executed pair of the session, oldest first (its ``arbitrage_executed`` rows)."""
        if self.session_id is None:
            return []
        return [dict(row.detail) for row in self.store.audit_log(self.session_id, events=(EXECUTED,))]

    def balances(self) -> dict[str, dict[str, float]]:
        """Venue -> asset -> held now (``tradeloop.arbitrage.execution`` rule 2; rule 6)."""
        return {v: dict(a) for v, a in (self._held or balances(self.config.inventory, [])).items()}
