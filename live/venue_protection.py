"""Protective legs on a venue: placed, trailed and canceled by the engine (``live.protection``).

On the paper broker the legs ride with their entry. On a venue they wait: the engine stores
them with the entry (status ``new``, ``live.orders.new_order``) but sends the entry alone
(``mark_sent(with_legs=False)``), and :class:`VenueProtection` takes over once it has filled.
This module decides, in the bar's transaction; ``live.leg_actions`` sends what it decided
once that has committed, and answers its questions about the market.

Rules:

1. **Armed from the fill.** When the engine learns an entry filled (its ``OrderState``
   ``filled``, or ended with something filled), each leg's trigger is recomputed from the
   ACTUAL average fill price (:func:`live.protection.leg_level`; an ATR leg uses the ATR at the
   entry's decision bar, as the paper path does: stored with the leg when it was decided,
   ``orders.entry_atr``), its quantity set to the filled quantity (the broker truncates it to
   the market's step), and it is sent reduce-only as a native stop / take-profit. Trigger,
   quantity, the bar it was armed on (``orders.armed_ts``) and ``sent`` are committed before
   the create goes out.
2. **Engine-managed where not native.** A leg whose type the market does not list
   (``live.brokers.ccxt_orders.venue_order`` refuses it) stays ``new`` with its trigger stored
   (audit ``protection_engine_managed``). On each CLOSED bar after the one it was armed on, a
   bar whose low (a short's high) reached a stop's trigger, or whose high (low) reached a
   take-profit's, turns the leg into a reduce-only market exit of the position, sent after the
   bar (stop before target when one bar reaches both). Engine-managed stops therefore trigger on
   closed bars, not intrabar: the exit fills near the next bar's open, a gap included.
3. **Trailing.** After each bar that did not exit, its high (low) joins the peak (trough) and
   the trailing level is recomputed with the ATR at the bar's close; when it moved in the
   position's favour by at least one price tick, a native leg is moved by the broker's
   cancel-replace (the replacement is a new order row, client id :func:`moved_order_id`,
   committed ``sent`` with its predecessor's ``cancel_requested`` before the request: never two
   live stops for one position); an engine-managed one just stores the new trigger. A level
   never moves against the position. The peak is stored on the trailing leg's row
   (``orders.extreme``, a moved leg's row takes it over) in the bar's transaction, the one that
   stores a moved trigger.
4. **One-cancels-the-others.** Once a leg of an entry filled, or its position is gone (a
   signal exit, a flatten), the entry's other legs are canceled: ``new`` ones directly, resting
   ones through ``cancel_requested`` then the broker. A signal exit cancels the symbol's legs
   *before* it is sent (:meth:`VenueProtection.before_exits`: on spot a resting stop locks the
   coins the exit sells). A leg learns of its own fill through the venue check
   (``live.reconcile``), so a sibling lives until the next check; a contract venue's
   ``reduceOnly`` keeps it from opening anything meanwhile. An entry that ended unfilled
   cancels its legs.
5. **Per book.** With capital slices (``live.slices``) each entry's legs are its book's: they
   carry its ``capital_slice`` and client id prefix (a moved leg too), its position is the
   book's (``books``: each book's positions), so a slice's stop protects and sells the slice's
   coins only; a signal exit (a closing slice's flatten included) cancels its own book's legs
   of the symbol, never another's.
6. **Restart.** Nothing of a position's protection lives only in memory: a new engine reads its
   fill price from the entry's row and its decision ATR, armed bar and peak (trough) from its
   legs' rows, and goes on as the engine it replaces would have, bar for bar (the bar it was
   armed on is still not checked; every later one is). Legs never sent are left alone by
   ``recover_orders`` (a never-sent entry it sends goes alone, ``live.orders.mark_sent``) and
   armed here once the entry fills, with the stored decision ATR. Rows written before migration
   0006 have none of this: an ATR leg keeps its stored trigger, a peak restarts at the entry
   price.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from live.brokers.base import Broker, wall_ms
from live.leg_actions import Apply, LegActions, at_tick, load_markets, send_actions, takes_natively
from live.order_manager import request_cancel
from live.orders import mark_sent, request_of
from live.protection import leg_level
from tradeloop.backtest import BacktestConfig, next_extreme
from tradeloop.ops import OpsStore, Order
from tradeloop.ops.store import OPEN_STATUSES, RESTING_STATUSES
from tradeloop.trading import OrderIntentKind, OrderSide, OrderStatus, OrderType

log = logging.getLogger(__name__)
S, K = OrderStatus, OrderIntentKind
ENDED = (S.FILLED.value, S.CANCELED.value, S.EXPIRED.value, S.REJECTED.value)
STOPS = (K.STOP_LOSS.value, K.TRAILING_STOP.value)  # checked before the target (rule 2)


def moved_order_id(original: str, n: int) -> str:
    """The client id of the ``n``-th move of a trailing leg: ``<leg's id>-<n>``, or its session
    prefix and a digest when that is over 36 characters."""
    plain = f"{original}-{n}"
    if len(plain) <= 36:
        return plain
    prefix = original.split("-", 1)[0] + "-"
    return prefix + hashlib.sha1(plain.encode(), usedforsecurity=False).hexdigest()[: 36 - len(prefix)]


@dataclass(slots=True, kw_only=True)
class Held:
    """What the engine keeps of a filled entry: side, fill price, decision ATR, peak (trough);
    all of it also in the database (rule 6: :meth:`VenueProtection._restored`)."""

    side: OrderSide
    entry_price: float
    entry_atr: float | None
    extreme: float
    armed_ts: int


class VenueProtection:
    """The legs of a venue session's entries (module rules); the engine calls
    :meth:`before_exits` before it sends a bar's orders and :meth:`on_bar` after."""

    def __init__(self, *, store: OpsStore, broker: Broker, session_id: int, config: BacktestConfig, apply: Apply):
        self.store, self.broker, self.session_id, self.config, self.apply = store, broker, session_id, config, apply
        self._held: dict[int, Held] = {}  # entry row id ->

    # ------------------------------------------------------------------ the engine's hooks
    async def before_exits(self, orders: list[Order]) -> None:
        """Cancel every open leg of the symbols a signal exit among ``orders`` closes (rule 4)."""
        exits = {(o.capital_slice, o.symbol) for o in orders if o.reduce_only and o.parent_id is None}
        if not exits:
            return
        actions = LegActions()
        with self.store.transaction() as db:
            for leg in self._open_legs(db):
                if (leg.capital_slice, leg.symbol) in exits:  # its own book's (rule 5)
                    self._cancel_leg(db, leg, actions, reason="a signal exit closes the position")
                    self._held.pop(leg.parent_id or 0, None)
        await self._act(actions)

    async def on_bar(
        self,
        *,
        ts: int,
        candles: pl.DataFrame,
        atr: Mapping[str, float | None],
        books: Mapping[str | None, Mapping[str, float]],
    ) -> None:
        """The bar ``ts`` closed and its orders went out: check, trail, cancel, arm (rules 1-5);
        ``books``: each book's positions by symbol (None: the champion's; a slice's artifact)."""
        try:
            await load_markets(self.broker)
        except Exception as exc:  # noqa: BLE001 - asked again next bar; resting legs stay on the venue
            log.warning("session %d: protection skipped this bar (markets not loaded: %s)", self.session_id, exc)
            return
        bars = {r["symbol"]: r for r in candles.select("symbol", "high", "low").iter_rows(named=True)}
        actions = LegActions()
        with self.store.transaction() as db:
            by_entry: dict[int, list[Order]] = {}
            for leg in self._open_legs(db):
                by_entry.setdefault(leg.parent_id or 0, []).append(leg)
            for entry_id, legs in by_entry.items():
                entry = db.get(Order, entry_id)
                if entry is not None:
                    bar = bars.get(entry.symbol)
                    positions = books.get(entry.capital_slice, {})
                    self._entry(db, entry, legs, ts=ts, bar=bar, atr=atr, positions=positions, actions=actions)
        await self._act(actions)

    # ------------------------------------------------------------------ one entry's legs
    def _entry(
        self,
        db: Session,
        entry: Order,
        legs: list[Order],
        *,
        ts: int,
        bar: dict[str, Any] | None,
        atr: Mapping[str, float | None],
        positions: Mapping[str, float],
        actions: LegActions,
    ) -> None:
        if entry.status not in ENDED:
            return  # not filled yet: the legs wait
        if entry.filled_qty <= 0.0:
            for leg in legs:
                self._cancel_leg(db, leg, actions, reason=f"its entry {entry.client_order_id} ended unfilled")
            return
        side = OrderSide(entry.side)
        held_qty = positions.get(entry.symbol, 0.0) * side.sign
        fired = db.scalar(
            select(Order.id).where(Order.parent_id == entry.id, Order.status == S.FILLED.value, Order.id != entry.id)
        )
        if fired is not None or held_qty <= 0.0 or self.broker.is_dust(entry.symbol, held_qty):
            for leg in legs:
                self._cancel_leg(db, leg, actions, reason="its position is closed (one-cancels-the-others)")
            self._held.pop(entry.id, None)
            return
        held = self._held.get(entry.id) or self._restored(entry, legs)
        if held is None:
            self._arm(db, entry, legs, ts=ts, atr=atr, actions=actions)
            return
        if held.armed_ts >= ts or bar is None:
            return
        hit = self._crossed(held, [leg for leg in legs if leg.status == S.NEW.value], bar)
        if hit is not None:
            self._fire(db, hit, [leg for leg in legs if leg is not hit], held_qty, actions)
            self._held.pop(entry.id, None)
            return
        held.extreme = next_extreme(side, held.extreme, high=bar["high"], low=bar["low"])
        for leg in legs:
            if leg.intent == K.TRAILING_STOP.value:
                leg.extreme = held.extreme  # rule 3: stored with the bar's moves
                self._trail(db, entry, leg, held, prev_atr=atr.get(entry.symbol), actions=actions)

    def _restored(self, entry: Order, legs: list[Order]) -> Held | None:
        """Rule 6: the protection of an entry armed before a restart, from its rows (``None``:
        not armed yet)."""
        armed = [leg.armed_ts for leg in legs if leg.armed_ts is not None]
        if not armed:
            return None
        price = float(entry.avg_price or 0.0)
        peaks = [leg.extreme for leg in legs if leg.intent == K.TRAILING_STOP.value and leg.extreme is not None]
        side = OrderSide(entry.side)
        extreme = price if not peaks else (max(peaks) if side is OrderSide.BUY else min(peaks))
        entry_atr = next((leg.entry_atr for leg in legs if leg.entry_atr is not None), None)
        held = Held(side=side, entry_price=price, entry_atr=entry_atr, extreme=extreme, armed_ts=max(armed))
        self._held[entry.id] = held
        return held

    def _arm(
        self,
        db: Session,
        entry: Order,
        legs: list[Order],
        *,
        ts: int,
        atr: Mapping[str, float | None],
        actions: LegActions,
    ) -> None:
        """Rule 1 (and 2 for a leg the market cannot take natively)."""
        side, price = OrderSide(entry.side), float(entry.avg_price or 0.0)
        entry_atr = next((leg.entry_atr for leg in legs if leg.entry_atr is not None), None)
        held = Held(side=side, entry_price=price, entry_atr=entry_atr, extreme=price, armed_ts=ts)
        self._held[entry.id] = held
        for leg in legs:
            leg.armed_ts = ts
            if leg.intent == K.TRAILING_STOP.value:
                leg.extreme = price
            if leg.status != S.NEW.value:
                continue  # sent before a restart by a version without 0006's columns: it rests on the venue
            level = self._level(leg, held, prev_atr=atr.get(entry.symbol))
            leg.trigger_price, leg.quantity = level, entry.filled_qty
            native = level is not None and takes_natively(self.broker, request_of(leg), session_id=self.session_id)
            OpsStore.audit(
                db,
                "protection_armed" if native else "protection_engine_managed",
                session_id=self.session_id,
                order_id=leg.id,
                detail={"intent": leg.intent, "trigger_price": level, "quantity": leg.quantity, "fill_price": price},
            )
            if native:
                mark_sent(db, [leg], now_ms=wall_ms(), with_legs=False)
                actions.submits.append(request_of(leg))

    def _level(self, leg: Order, held: Held, *, prev_atr: float | None) -> float | None:
        """The leg's level now (its stored trigger while its candidates are off); :meth:`_trail`
        never moves it against the position (rule 3)."""
        level = leg_level(
            self.config,
            OrderIntentKind(leg.intent),
            held.side,
            entry_price=held.entry_price,
            extreme=held.extreme,
            entry_atr=held.entry_atr,
            prev_atr=prev_atr,
        )
        return leg.trigger_price if level is None else level

    def _crossed(self, held: Held, managed: list[Order], bar: dict[str, Any]) -> Order | None:
        """The engine-managed leg this closed bar triggers (rule 2): stops first."""
        long = held.side is OrderSide.BUY
        for leg in sorted(managed, key=lambda o: o.intent not in STOPS):
            at = leg.trigger_price
            if at is None:
                continue
            stop = leg.intent in STOPS
            if (long == stop and bar["low"] <= at) or (long != stop and bar["high"] >= at):
                return leg
        return None

    def _fire(self, db: Session, leg: Order, siblings: list[Order], quantity: float, actions: LegActions) -> None:
        """An engine-managed leg triggered: cancel the others, then a reduce-only market exit."""
        for other in siblings:
            self._cancel_leg(db, other, actions, reason=f"{leg.client_order_id} triggered (one-cancels-the-others)")
        OpsStore.audit(
            db,
            "protection_triggered",
            session_id=self.session_id,
            order_id=leg.id,
            detail={"intent": leg.intent, "trigger_price": leg.trigger_price, "quantity": quantity},
        )
        leg.order_type, leg.quantity = OrderType.MARKET.value, quantity
        mark_sent(db, [leg], now_ms=wall_ms(), with_legs=False)
        actions.submits.append(request_of(leg))

    def _trail(
        self, db: Session, entry: Order, leg: Order, held: Held, *, prev_atr: float | None, actions: LegActions
    ) -> None:
        """Rule 3: a trailing leg follows the peak (trough)."""
        level, now = self._level(leg, held, prev_atr=prev_atr), leg.trigger_price
        if level is None or (
            now is not None and at_tick(self.broker, leg.symbol, level) == at_tick(self.broker, leg.symbol, now)
        ):
            return
        if now is not None and (level < now if held.side is OrderSide.BUY else level > now):
            return
        if leg.status == S.NEW.value:  # engine-managed: only its stored trigger moves
            leg.trigger_price = level
            return
        if leg.status != S.ACKNOWLEDGED.value:
            return  # partly filled or a cancel pending: left as it is
        moves = db.scalars(select(Order.id).where(Order.parent_id == entry.id, Order.intent == leg.intent)).all()
        moved = Order(
            session_id=leg.session_id,
            client_order_id=moved_order_id(leg.client_order_id, len(moves)),
            venue=leg.venue,
            symbol=leg.symbol,
            side=leg.side,
            intent=leg.intent,
            quantity=leg.quantity,
            order_type=leg.order_type,
            time_in_force=leg.time_in_force,
            trigger_price=level,
            reduce_only=True,
            parent_id=entry.id,
            capital_slice=leg.capital_slice,
            decided_ts=leg.decided_ts,
            status=S.NEW.value,
            entry_atr=leg.entry_atr,
            armed_ts=leg.armed_ts,
            extreme=held.extreme,
        )
        db.add(moved)
        db.flush()
        request_cancel(db, leg, reason=f"trailing stop moved to {level:.10g}")
        mark_sent(db, [moved], now_ms=wall_ms(), with_legs=False)
        actions.replaces.append((request_of(leg), request_of(moved)))

    def _cancel_leg(self, db: Session, leg: Order, actions: LegActions, *, reason: str) -> None:
        if leg.status == S.NEW.value:  # never sent (waiting, or engine-managed): nothing to ask the venue
            leg.status = S.CANCELED.value
            OpsStore.audit(db, "order_canceled", session_id=self.session_id, order_id=leg.id, detail={"reason": reason})
        elif leg.status in RESTING_STATUSES:
            request_cancel(db, leg, reason=reason)
            actions.cancels.append(request_of(leg))

    async def _act(self, actions: LegActions) -> None:
        await send_actions(actions, broker=self.broker, store=self.store, session_id=self.session_id, apply=self.apply)

    def _open_legs(self, db: Session) -> list[Order]:
        return list(
            db.scalars(
                select(Order)
                .where(
                    Order.session_id == self.session_id,
                    Order.parent_id.is_not(None),
                    Order.status.in_(OPEN_STATUSES),
                )
                .order_by(Order.id)
            )
        )
