"""Signals: the decisions a session's engine made, bar by bar.

Where they come from (nothing else stores them):

- ``source: signals``: each bar's signal flags exactly as the engine decided them (after the
  model's threshold, before sizing and the risk checks), from the bar's ``signals`` event in
  the outbox (``OutboxEvent``, written with the bar). The outbox keeps an event for a day
  after it reached the bus, then deletes it; ``held_from`` is the first bar it still holds
  (the oldest ``candles`` event: one per bar, so bars from there on without a signal decided
  nothing). A session run without publishing has no events.
- ``source: orders``: for the bars before ``held_from`` (all bars, without events), the
  entry and exit orders the decisions produced (``orders``, kept for good). A signal that
  produced no order is not there: an entry while already in the position, an exit with
  nothing held, an entry the risk checks denied. Stops, take-profits, trailing stops and the
  kill switch's exits are not signals and are left out.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.deps import Context, Viewer
from api.timequery import SessionId, Since, Until, owned_session, window
from tradeloop.ops import Order
from tradeloop.ops.models import OutboxEvent
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT
from tradeloop.trading import OrderIntentKind

router = APIRouter(prefix="/sessions", tags=["signals"])

FLAG_OF_INTENT = {
    OrderIntentKind.ENTER_LONG: ENTER_LONG,
    OrderIntentKind.ENTER_SHORT: ENTER_SHORT,
    OrderIntentKind.EXIT_LONG: EXIT_LONG,
    OrderIntentKind.EXIT_SHORT: EXIT_SHORT,
}


class SymbolSignal(BaseModel):
    symbol: str = Field(examples=["BTC-USD"])
    flags: int = Field(description="bit set: 1 enter long, 2 enter short, 4 exit long, 8 exit short", examples=[1])
    actions: list[str] = Field(description="the flags in words", examples=[["enter_long"]])


class BarSignals(BaseModel):
    ts: int = Field(description="open time (ms) of the bar whose close decided them")
    source: str = Field(description="signals: the engine's own record; orders: read back from the orders it produced")
    signals: list[SymbolSignal] = Field(description="symbols with a signal, by name")


class SignalPage(BaseModel):
    items: list[BarSignals] = Field(description="bars with a signal, oldest first")
    held_from: int | None = Field(
        default=None, description="the first bar whose signals the outbox still holds (None: it holds none)"
    )
    next_since: int | None = Field(default=None, description="pass as since for the next page; None: the last page")


def actions(flags: int) -> list[str]:
    return [intent.value for intent, flag in FLAG_OF_INTENT.items() if flags & flag]


def _bar(ts: int, source: str, flags: dict[str, int]) -> BarSignals:
    items = [SymbolSignal(symbol=s, flags=f, actions=actions(f)) for s, f in sorted(flags.items()) if f]
    return BarSignals(ts=ts, source=source, signals=items)


@router.get(
    "/{session_id}/signals",
    response_model=SignalPage,
    summary="The entries and exits the session's engine decided, bar by bar (see the description for what is kept)",
    description=__doc__,
)
def list_signals(
    session_id: SessionId,
    principal: Viewer,
    ctx: Context,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=500, description="bars per page")] = 100,
) -> SignalPage:
    owned_session(ctx, principal, session_id)
    lo, hi = window(since, until)

    def wanted(ts: int) -> bool:
        return (lo is None or ts >= lo) and (hi is None or ts <= hi)

    events = select(OutboxEvent.payload).where(OutboxEvent.session_id == session_id).order_by(OutboxEvent.id)
    with ctx.store.transaction() as db:
        first = db.scalar(events.where(OutboxEvent.stream == "candles").limit(1))
        held = list(db.scalars(events.where(OutboxEvent.stream == "signals")))
        held_from = int(first["ts"]) if first is not None else None
        query = select(Order.decided_ts, Order.symbol, Order.intent).where(
            Order.session_id == session_id, Order.intent.in_([i.value for i in FLAG_OF_INTENT])
        )
        if held_from is not None:
            query = query.where(Order.decided_ts < held_from)
        if lo is not None:
            query = query.where(Order.decided_ts >= lo)
        if hi is not None:
            query = query.where(Order.decided_ts <= hi)
        ordered = db.execute(query).all()
    bars: dict[int, BarSignals] = {}
    from_orders: dict[int, dict[str, int]] = {}
    for ts, symbol, intent in ordered:
        flags = from_orders.setdefault(int(ts), {})
        flags[symbol] = flags.get(symbol, 0) | FLAG_OF_INTENT[OrderIntentKind(intent)]
    for ts, flags in from_orders.items():
        bars[ts] = _bar(ts, "orders", flags)
    for payload in held:
        ts = int(payload["ts"])
        if wanted(ts):
            bars[ts] = _bar(ts, "signals", {str(s): int(f) for s, f in payload["signals"]})
    ordered_ts = sorted(bars)
    page = ordered_ts[:limit]
    return SignalPage(
        items=[bars[ts] for ts in page],
        held_from=held_from,
        next_since=page[-1] + 1 if len(ordered_ts) > limit else None,
    )
