"""Orders whose outcome is unknown, restart recovery, run-time reconciliation with the venue,
and the reduce-only guards.

Rules:

* **A create goes out at most once.** ``orders.sent_at_ms`` is committed before a create is
  sent. At a restart (:func:`recover_orders`) an order still open in the database whose
  create may have gone out is only *resolved* by the broker (by client id within a
  visibility window, then among the venue's orders, then its trades); one never sent is
  sent now, its ``sent_at_ms`` committed first.
* An order that stays ``unknown`` (the venue unreachable, a trade nobody can attribute)
  **halts its symbol**: ``sessions.halted[symbol]`` and an audit row ``symbol_halted``
  (:func:`halt_if_unknown`, also after a send during the run). Only an operator lifts it:
  ``tradeloop live ack NAME --symbol SYMBOL``, refused while the order is still unknown.
* Every ``every_bars`` bars (:class:`VenueCheck`), against a broker that is a ``VenueAccount``:

  1. open orders are polled: an order the database has ``submitted`` that the venue no
     longer lists (by client id as the venue spells it), and every ``unknown`` one, is
     resolved (never resent);
  2. fills are fetched by trade id: the account's trades after the last stored trade id of
     each symbol, matched to our orders by venue order id (a fill is stored at most once);
  3. balances are compared, when no order is open (an order in flight moves the venue's
     balances before ours): each base asset with the session's positions, the quote asset
     with its cash, each plus a *baseline* (what the account holds apart from the session,
     recorded at the first comparison and again after an ack; with capital slices, the positions
     and cash of every book summed: ``whole``, ``live.slice_venue`` rule 4). A session on several venues
     (a ``live.brokers.router.BrokerRouter``) compares each venue's own balances, named
     ``venue:ASSET`` (``okx:USDT``): its base assets with the positions of its symbols, its
     quote asset with what that venue's fills moved (the baseline holds the rest of the
     account), so a shortfall on one venue is never cancelled by a surplus on another. (Sizing
     still spends the session's one cash figure, which is why a live session on several venues
     must keep to one quote asset: ``live.session_brokers``.) A difference beyond the
     market's precision (amount step for a base asset, price tick for the quote) is a
     drift: an audit row ``balance_drift`` and ``sessions.needs_ack``, so the whole session
     is reduce-only until ``tradeloop live ack NAME``. A margin account (perpetuals) compares
     its positions with the venue's instead (:mod:`live.perps_reconcile`, ``position_drift``).

  A venue that cannot be asked is written to the audit log (``venue_check_failed``) and
  asked again at the next check; nothing is concluded from it.
* Reduce-only (:func:`refuse_entry`): a halted symbol, or any symbol of a session that
  needs an acknowledgement, gets no entry (audit row ``entry_refused``); exits pass.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from live.brokers.base import Broker, FillReport, MarketAssets, OrderState, VenueAccount, VenueTrade, wall_ms
from live.brokers.ccxt_orders import venue_client_id
from live.orders import mark_sent, orders_in_flight, request_of, send_record
from live.perps_reconcile import PositionAccount, PositionDrift, compare_positions
from tradeloop.errors import VenueUnreachableError
from tradeloop.ops import Fill, OpsStore, Order
from tradeloop.ops.store import OPEN_STATUSES, RESTING_STATUSES
from tradeloop.trading import OrderIntent, OrderStatus

log = logging.getLogger(__name__)
Apply = Callable[[Session, OrderState], None]  # the engine's: store a state, update cash and positions


# ---------------------------------------------------------------------- restart and send
async def recover_orders(store: OpsStore, broker: Broker, session_id: int, *, apply: Apply) -> None:
    """After a (re)start: every order the database still has open, resolved or (never sent) sent."""
    for order in store.orders(session_id, statuses=OPEN_STATUSES):
        sent, since_ms = send_record(order)
        if not sent and order.parent_id is not None and order.venue != "paper":
            continue  # a venue's protective leg waits for its entry's fill (live.venue_protection)
        if not sent:
            with store.transaction() as db:
                mark_sent(db, [order], now_ms=wall_ms())
        state = await broker.recover(request_of(order), sent=sent, since_ms=since_ms)
        with store.transaction() as db:
            apply(db, state)
            OpsStore.audit(
                db,
                "order_reconciled",
                session_id=session_id,
                order_id=order.id,
                detail={"client_order_id": order.client_order_id, "status": state.status},
            )
            halt_if_unknown(db, session_id, state)


def halt_if_unknown(db: Session, session_id: int, state: OrderState) -> None:
    """An order whose outcome could not be resolved halts its symbol (reduce-only)."""
    if state.status != "unknown":
        return
    order = db.scalar(select(Order).where(Order.client_order_id == state.client_order_id))
    if order is None:
        return
    reason = f"order {order.client_order_id} has an unknown outcome: {state.reason}"
    if OpsStore.halt_symbol(db, session_id, order.symbol, reason, order_id=order.id):
        log.error("session %d: %s halted (reduce-only): %s", session_id, order.symbol, reason)


def refuse_entry(db: Session, session_id: int, intent: OrderIntent) -> bool:
    """True (and an ``entry_refused`` audit row) when ``intent`` opens a position the session's
    halts or its pending acknowledgement forbid. Exits are never refused."""
    if intent.kind.reduces:
        return False
    row = OpsStore.session_row(db, session_id)
    reason = (
        f"session needs `tradeloop live ack`: {row.needs_ack}"
        if row.needs_ack
        else (row.halted or {}).get(intent.instrument.symbol)
    )
    if not reason:
        return False
    OpsStore.audit(
        db, "entry_refused", session_id=session_id, detail={"symbol": intent.instrument.symbol, "reason": reason[:200]}
    )
    return True


# ---------------------------------------------------------------------- during the run


@dataclass(frozen=True, kw_only=True, slots=True)
class Drift:
    """One asset whose venue balance is not what the session's book says."""

    asset: str
    venue: float
    session: float  # the session's cash (quote) or positions (base)
    baseline: float  # the account's other funds, recorded at the first comparison
    tolerance: float

    @property
    def off_by(self) -> float:
        return self.venue - self.baseline - self.session

    def describe(self) -> str:
        return (
            f"{self.asset}: venue {self.venue:.10g}, expected {self.session + self.baseline:.10g} "
            f"(session {self.session:.10g} + other funds {self.baseline:.10g}), off by {self.off_by:+.10g} "
            f"(precision {self.tolerance:g})"
        )


class VenueCheck:
    """Run-time reconciliation (module rules); ``run`` does nothing between its intervals."""

    def __init__(self, venue: VenueAccount, *, symbols: list[str], every_bars: int):
        self.venue, self.symbols, self.every_bars = venue, list(symbols), every_bars

    @classmethod
    def of(cls, broker: Broker, *, symbols: list[str], every_bars: int) -> VenueCheck | None:
        """A check for a broker on a real venue; None for one without an account (paper)."""
        return cls(broker, symbols=symbols, every_bars=every_bars) if isinstance(broker, VenueAccount) else None

    async def run(
        self,
        bars: int,
        store: OpsStore,
        session_id: int,
        *,
        apply: Apply,
        holdings: Callable[[], tuple[float, dict[str, float]]],
        whole: Callable[[], tuple[float, dict[str, float]]] | None = None,
    ) -> list[Drift] | list[PositionDrift]:
        """Every ``every_bars`` bars (``bars``: bars processed so far): poll, fetch fills,
        compare. ``holdings`` gives the engine's (cash, positions) after ``apply`` (the cash is
        the session row's); ``whole``, what the venue's balances are compared with (default:
        ``holdings``; with capital slices, every book's)."""
        compared = whole or holdings
        if bars % self.every_bars:
            return []
        try:
            states = await self._poll(store, session_id)
            with store.transaction() as db:
                for state in states:
                    apply(db, state)
                    halt_if_unknown(db, session_id, state)
                OpsStore.session_row(db, session_id).cash = holdings()[0]
            if getattr(self.venue, "margin_account", False):  # perpetuals: balances are margin, positions compared
                if not isinstance(self.venue, PositionAccount):
                    return []
                return await compare_positions(
                    self.venue, store, session_id, symbols=self.symbols, positions=compared()[1]
                )
            return await self._compare(store, session_id, *compared())
        except VenueUnreachableError as exc:
            log.warning("session %d: venue check failed (%s); asking again at the next check", session_id, exc)
            with store.transaction() as db:
                OpsStore.audit(db, "venue_check_failed", session_id=session_id, detail={"error": str(exc)[:200]})
            return []

    async def _poll(self, store: OpsStore, session_id: int) -> list[OrderState]:
        states: list[OrderState] = []
        open_orders = store.orders(session_id, statuses=(*RESTING_STATUSES, OrderStatus.UNKNOWN.value))
        for symbol in self.symbols:
            mine = [o for o in open_orders if o.symbol == symbol]
            listed = await self.venue.open_orders(symbol) if any(o.status in RESTING_STATUSES for o in mine) else set()
            for order in mine:
                if order.status in RESTING_STATUSES and venue_client_id(order.venue, order.client_order_id) in listed:
                    continue
                states.append(await self.venue.resolve(request_of(order), since_ms=send_record(order)[1]))
            states += await self._new_fills(store, session_id, symbol, skip={s.client_order_id for s in states})
        return states

    async def _new_fills(self, store: OpsStore, session_id: int, symbol: str, *, skip: set[str]) -> list[OrderState]:
        """The symbol's trades after the last stored one, as fills of our orders (by venue order id)."""
        with store.transaction() as db:
            last = db.scalar(
                select(Fill.trade_id)
                .where(Fill.session_id == session_id, Fill.symbol == symbol)
                .order_by(Fill.id.desc())
                .limit(1)
            )
        trades = await self.venue.trades(symbol, after_trade_id=last)
        if not trades:
            return []
        with store.transaction() as db:
            ours = {
                o.venue_order_id: o
                for o in db.scalars(
                    select(Order).where(
                        Order.session_id == session_id, Order.venue_order_id.in_({t.venue_order_id for t in trades})
                    )
                )
            }
        per_order: defaultdict[str, list[VenueTrade]] = defaultdict(list)
        for t in trades:
            order = ours.get(t.venue_order_id)
            if order is not None and order.client_order_id not in skip:
                per_order[order.client_order_id].append(t)
        states = []
        for cid, rows in per_order.items():
            order = next(o for o in ours.values() if o.client_order_id == cid)
            fills = tuple(_fill(cid, t) for t in rows)
            states.append(OrderState(cid, order.status, venue_order_id=order.venue_order_id, fills=fills))
        return states

    def _accounts(self) -> list[tuple[str, VenueAccount, list[str]]]:
        """(venue name, account, its symbols): each venue's own behind a router (a session on
        several venues, ``live.brokers.router``), named; else the one venue, unnamed."""
        brokers, instrument = getattr(self.venue, "brokers", None), getattr(self.venue, "instrument", None)
        if not isinstance(brokers, dict) or instrument is None:
            return [("", self.venue, self.symbols)]
        out = []
        for name, broker in brokers.items():
            mine = [k for k in self.symbols if instrument(k).venue == name]
            if mine and isinstance(broker, VenueAccount):
                out.append((name, broker, mine))
        return out

    async def _compare(self, store: OpsStore, session_id: int, cash: float, positions: dict[str, float]) -> list[Drift]:
        if orders_in_flight(store, session_id):
            return []
        accounts = self._accounts()
        flows = _quote_flows(store, session_id) if accounts and accounts[0][0] else {}
        expected: dict[str, float] = {}
        tolerance: dict[str, float] = {}
        venue: dict[str, float] = {}
        for name, account, symbols in accounts:  # each venue's balances against its own share of the book
            markets = [(symbol, await self.venue.assets(symbol)) for symbol in symbols]
            mine, steps = _expected(markets, positions, cash=flows.get(name, 0.0) if name else cash)
            balances = await account.balances()
            for asset, amount in mine.items():
                key = f"{name}:{asset}" if name else asset
                expected[key], tolerance[key], venue[key] = amount, steps[asset], balances.get(asset, 0.0)
        with store.transaction() as db:
            row = OpsStore.session_row(db, session_id, for_update=True)
            baseline = row.venue_baseline
            if baseline is None:
                row.venue_baseline = {a: venue[a] - v for a, v in expected.items()}
                OpsStore.audit(db, "venue_baseline", session_id=session_id, detail=dict(row.venue_baseline))
                return []
            drifts = [
                Drift(
                    asset=a,
                    venue=venue[a],
                    session=v,
                    baseline=baseline.get(a, 0.0),
                    tolerance=tolerance[a],
                )
                for a, v in sorted(expected.items())
            ]
            drifts = [d for d in drifts if abs(d.off_by) > d.tolerance]
            if drifts:
                reason = "balance drift: " + "; ".join(d.describe() for d in drifts)
                if OpsStore.require_ack(
                    db,
                    session_id,
                    reason,
                    event="balance_drift",
                    detail={
                        d.asset: {
                            "venue": d.venue,
                            "session": d.session,
                            "baseline": d.baseline,
                            "off_by": d.off_by,
                            "tolerance": d.tolerance,
                        }
                        for d in drifts
                    },
                ):
                    log.error("session %d: %s; reduce-only until `tradeloop live ack`", session_id, reason)
        return drifts


def _expected(
    markets: list[tuple[str, MarketAssets]], positions: dict[str, float], *, cash: float
) -> tuple[dict[str, float], dict[str, float]]:
    """One account's expected balance of each asset (the session's share) and its precision:
    each base asset its positions, the quote asset ``cash`` when its markets have one quote."""
    expected: dict[str, float] = defaultdict(float)
    tolerance: dict[str, float] = defaultdict(float)
    for symbol, m in markets:
        expected[m.base] += positions.get(symbol, 0.0)
        tolerance[m.base] = max(tolerance[m.base], m.amount_step)
    quotes = {m.quote for _, m in markets}
    if len(quotes) == 1:  # one cash: comparable with one quote asset only
        quote = quotes.pop()
        expected[quote] = cash
        tolerance[quote] = max(m.price_tick for _, m in markets)
    return dict(expected), dict(tolerance)


def _quote_flows(store: OpsStore, session_id: int) -> dict[str, float]:
    """Each venue's share of the session's cash: what its fills moved (``tradeloop.portfolio``:
    ``-side.sign * quantity * price - fee``); the first comparison's baseline holds the rest."""
    flows: dict[str, float] = defaultdict(float)
    with store.transaction() as db:
        rows = db.execute(
            select(Fill.venue, Fill.side, Fill.quantity, Fill.price, Fill.fee).where(Fill.session_id == session_id)
        )
        for venue, side, quantity, price, fee in rows:
            flows[venue] += (quantity * price if side == "sell" else -quantity * price) - fee
    return dict(flows)


def _fill(cid: str, t: VenueTrade) -> FillReport:
    return FillReport(cid, t.symbol, t.side, t.trade_id, t.quantity, t.price, t.fee, t.ts)
