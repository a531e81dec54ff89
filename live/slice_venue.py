"""Capital slices of a live session on one spot venue (``live.slices``): one venue account
that the champion's book and every slice's book share.

Rules:

1. **Where.** A live session splits on a broker that is a ``VenueAccount`` of one spot venue
   (:func:`splits_on`): not a margin account (perpetuals net every book's position into one;
   their funding and liquidation are per position), not a router over several venues (balances
   per venue), and only where ``tradeloop.challengers.slices.check_split`` allows the
   session's symbols. Elsewhere the engine trades no slice: naming refuses it, and a slice
   named before is logged as an error at each start and runs in shadow (``live.shadow``).
2. **Every fill to the book whose order it is.** A report of an order tagged with a slice
   (``orders.capital_slice``, else its client id's prefix ``live.orders.slice_prefix``) moves
   that slice's book, whatever path brought it: the create's reply, a restart's recovery, the
   venue check's trades by id, a cancel, a protective leg (``LiveEngine._apply``). Only the
   champion's fills touch ``sessions.cash`` and the ``positions`` rows.
3. **Each book spends its own cash** (:func:`cap_entries`): a book's entries of a bar, buys,
   are cut so that together with the notional its open entries still hold on the venue
   (:func:`committed`) and the fee (the larger of the taker and maker rates) they never pass the
   book's cash: no slice, nor the champion, pays with another book's money on the shared
   account. Exits sell only what the book holds (they are sized from its positions).
4. **Balances against the sum of the books.** The venue check compares the account's balances
   with the champion's cash and positions plus every funded (open or closing) slice's
   (``LiveEngine._whole``), so a slice's holdings are not a drift and what no book holds is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from live.brokers.base import VenueAccount
from tradeloop.backtest import BacktestConfig
from tradeloop.challengers.slices import check_split
from tradeloop.errors import ConfigError
from tradeloop.ops import Order, TradingSession
from tradeloop.ops.store import OPEN_STATUSES
from tradeloop.trading import OrderIntent, OrderSide

log = logging.getLogger(__name__)

__all__ = ["cap_entries", "committed", "splits_on", "sum_books"]


def splits_on(broker: object, session: TradingSession) -> str | None:
    """Rule 1: why ``session``'s slices cannot trade on ``broker`` (a venue's); None: they can."""
    if session.mode != "live" or not isinstance(broker, VenueAccount):
        return f"a {session.mode} session on {getattr(broker, 'venue', 'a broker')} without a venue account"
    if getattr(broker, "margin_account", False):
        return "its venue account is a margin account (perpetuals)"
    if getattr(broker, "venue_for", None) is not None:
        return "it trades on several venues"
    try:
        check_split(mode=session.mode, exchange=session.exchange, symbols=session.symbols, share=0.0)
    except ConfigError as exc:
        return str(exc)
    return None


def committed(db: Session, session_id: int, capital_slice: str | None) -> float:
    """What the book's open entries (buys; ``capital_slice`` None: the champion's) may still
    spend on the venue: each one's notional not filled yet."""
    rows = db.scalars(
        select(Order).where(
            Order.session_id == session_id,
            Order.status.in_(OPEN_STATUSES),
            Order.side == OrderSide.BUY.value,
            Order.reduce_only.is_(False),
            Order.parent_id.is_(None),
            Order.capital_slice.is_(None) if capital_slice is None else Order.capital_slice == capital_slice,
        )
    )
    total = 0.0
    for o in rows:
        asked = o.quote_amount if o.quote_amount is not None else (o.quantity or 0.0) * (o.price or 0.0)
        total += max(0.0, asked - o.filled_qty * (o.avg_price or 0.0))
    return total


def cap_entries(
    intents: Iterable[OrderIntent], *, cash: float, config: BacktestConfig, last: Mapping[str, float]
) -> list[OrderIntent]:
    """Rule 3: ``intents`` with their buys cut, in order, to what ``cash`` (the book's cash less
    :func:`committed`) pays with the fee; a buy nothing is left for is dropped."""
    fee = max(config.fee_rate, config.maker_fee_rate or 0.0)
    left = max(0.0, cash) / (1.0 + fee)
    out = []
    for intent in intents:
        if intent.kind.reduces or intent.side is not OrderSide.BUY:
            out.append(intent)
            continue
        price = intent.price or intent.reference_price or last.get(intent.instrument.symbol)
        if intent.quote_amount is not None:
            asked = intent.quote_amount
        elif intent.quantity is not None and price:
            asked = intent.quantity * price
        else:
            out.append(intent)  # nothing to measure it by: its risk check refuses it
            continue
        spend = min(asked, left)
        left -= spend
        if spend <= 0.0:
            log.warning("entry of %s dropped: its book has no cash left for it", intent.instrument)
            continue
        if spend < asked:
            if intent.quote_amount is not None:
                intent = replace(intent, quote_amount=spend)
            else:
                assert intent.quantity is not None and price
                intent = replace(intent, quantity=spend / price)
        out.append(intent)
    return out


def sum_books(books: Iterable[tuple[float, Mapping[str, float]]]) -> tuple[float, dict[str, float]]:
    """Rule 4: (cash, positions by session key) summed over ``books``."""
    cash, positions = 0.0, dict[str, float]()
    for book_cash, held in books:
        cash += book_cash
        for key, qty in held.items():
            positions[key] = positions.get(key, 0.0) + qty
    return cash, positions
