"""A bar's decided signals to order intents, one symbol at a time.

The rules mirror the backtest kernel (``tradeloop.backtest.kernel`` rule 1): an exit flag on
a position closes all of it (``exit_long`` sells a long, ``exit_short`` buys a short back);
an entry flag on a flat symbol, or one exiting on the same bar (a reversal), opens that side
for ``fraction * equity at the close``: a market entry spends it as a quote amount, capped
by cash at the fill; a limit entry (``limit_offset``) buys ``fraction * equity / price``
units fixed now. The side already held does nothing (no pyramiding); both entry flags at
once do nothing. A short entry needs ``shorts=True`` (a derivative market:
``live.entries``).
"""

from __future__ import annotations

from tradeloop.backtest import limit_price
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT
from tradeloop.trading import InstrumentId, OrderIntent, OrderIntentKind, OrderSide, OrderType

__all__ = ["intents"]

EXITS_LONG = EXIT_LONG | ENTER_SHORT
EXITS_SHORT = EXIT_SHORT | ENTER_LONG


def intents(
    flags: int,
    *,
    instrument: InstrumentId,
    position: float,
    equity: float,
    fraction: float,
    price: float,
    limit_offset: float | None = None,
    shorts: bool = False,
) -> list[OrderIntent]:
    """Orders one symbol's signal asks for, given its signed position and ``price`` at the close.

    Parameters
    ----------
    flags
        The symbol's signal bits (``tradeloop.strategies.signals``).
    position
        Signed quantity held (+ long, - short).
    equity, fraction
        An entry is worth ``fraction * equity``; nothing is entered when that is not > 0.
    limit_offset
        ``None``: market entries; else limit entries at ``limit_price(side, price, limit_offset)``.
    shorts
        Whether a short may be opened (a derivative market); a spot symbol never shorts.

    Returns
    -------
    list[OrderIntent]
        The exit first (reduce-only, the whole position), then the entry. Example: flags
        ``ENTER_SHORT`` on a long of 2 with ``shorts=True`` -> ``exit_long`` of 2, then
        ``enter_short``.
    """
    out = []
    exit_kind: OrderIntentKind | None = None
    if position > 0.0 and (flags & EXITS_LONG) != 0:
        exit_kind, side = OrderIntentKind.EXIT_LONG, OrderSide.SELL
    elif position < 0.0 and (flags & EXITS_SHORT) != 0:
        exit_kind, side = OrderIntentKind.EXIT_SHORT, OrderSide.BUY
    if exit_kind is not None:
        out.append(
            OrderIntent(
                instrument=instrument,
                side=side,
                kind=exit_kind,
                quantity=abs(position),
                reference_price=price,
                reduce_only=True,
            )
        )
    flat = position == 0.0 or exit_kind is not None
    want_long, want_short = (flags & ENTER_LONG) != 0, (flags & ENTER_SHORT) != 0
    amount = fraction * equity
    if not flat or want_long == want_short or (want_short and not shorts) or not amount > 0.0:
        return out
    side = OrderSide.BUY if want_long else OrderSide.SELL
    kind = OrderIntentKind.ENTER_LONG if want_long else OrderIntentKind.ENTER_SHORT
    if limit_offset is None:
        out.append(OrderIntent(instrument=instrument, side=side, kind=kind, quote_amount=amount, reference_price=price))
        return out
    limit = limit_price(side, price, limit_offset)
    out.append(
        OrderIntent(
            instrument=instrument,
            side=side,
            kind=kind,
            order_type=OrderType.LIMIT,
            quantity=amount / limit,
            price=limit,
            reference_price=price,
        )
    )
    return out
