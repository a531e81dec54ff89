"""The risk rules' arithmetic over plain floats: one definition for the Python check and the compiled backtest.

``tradeloop.risk.checks`` and ``tradeloop.risk.state`` call these functions with numbers
taken from their records; ``tradeloop.backtest.kernel_risk`` compiles the very same functions
with numba (they use nothing numba cannot type: floats, ints, ``math``, each other), the way
``tradeloop.backtest.fills`` shares the stop rules. Conventions:

* A limit that is off is NaN (``None`` in ``RiskConfig``); a price not known is NaN.
* A rule answers ``(code, limit, value)``: ``APPROVED`` (-1) or the failing rule's code (its
  index in ``tradeloop.risk.records.RiskRule``), the limit and the value that broke it, in the
  rule's unit (``tradeloop.risk.records.RiskDenied``).
* Comparisons use one tolerance, ``TOL = 1e-9`` relative to the limit (at least ``1e-9``
  absolute), so float noise never decides a verdict: a cap is exceeded when
  ``value - limit > TOL * max(1, |limit|)`` (holding exactly the cap is allowed); a minimum is
  missed when ``limit - value > TOL * max(1, |limit|)``; a loss limit is reached when
  ``value - limit >= -TOL * max(1, |limit|)`` (losing exactly the limit trips it).
* A ``|position|`` at or below ``FLAT_QTY = 1e-12`` units is flat.

The numbered rules and their order are ``tradeloop.risk.checks``' (pre-trade) and
``tradeloop.risk.state``'s (kill switch); each function below names the rules it computes.
"""

from __future__ import annotations

import math

TOL = 1e-9
FLAT_QTY = 1e-12  # a |position| at or below this many units is flat

APPROVED = -1
# the rules' codes: their index in tradeloop.risk.records.RiskRule (a test holds the two together)
(
    INVALID,
    NOT_REDUCING,
    KILL_SWITCH,
    THROTTLE,
    NO_PRICE,
    PRICE_BAND,
    MIN_AMOUNT,
    MIN_NOTIONAL,
    MAX_ORDER_NOTIONAL,
    MAX_POSITION_NOTIONAL,
    MAX_OPEN_POSITIONS,
    MAX_GROSS_EXPOSURE,
    MAX_NET_EXPOSURE,
    DAILY_LOSS,
    MAX_DRAWDOWN,
) = range(15)


def exceeds(value: float, limit: float) -> bool:
    """``value`` is above the cap ``limit`` by more than the tolerance."""
    return value - limit > TOL * max(1.0, abs(limit))


def short_of(value: float, minimum: float) -> bool:
    """``value`` is below ``minimum`` by more than the tolerance."""
    return minimum - value > TOL * max(1.0, abs(minimum))


def reaches(value: float, limit: float) -> bool:
    """``value`` is at ``limit`` (within the tolerance) or beyond it."""
    return value - limit >= -TOL * max(1.0, abs(limit))


def reduction_rule(position: float, sign: float, quantity: float) -> tuple[int, float, float]:
    """Rule 2 of the pre-trade check: a reduction of ``quantity`` units (NaN: a quote amount with
    no price to convert it at) on the ``sign`` side (+1 buy, -1 sell) of ``position``.

    ``NOT_REDUCING`` when the position is flat or the side would grow it (limit 0, value the
    position), ``NO_PRICE`` when ``quantity`` is NaN, ``NOT_REDUCING`` when ``quantity`` exceeds
    ``|position|`` (limit ``|position|``, value ``quantity``).
    """
    if abs(position) <= FLAT_QTY or sign * position > 0.0:
        return NOT_REDUCING, 0.0, position
    if quantity != quantity:
        return NO_PRICE, 0.0, 0.0
    if exceeds(quantity, abs(position)):
        return NOT_REDUCING, abs(position), quantity
    return APPROVED, 0.0, 0.0


def throttle_rule(count: float, max_orders: float) -> tuple[int, float, float]:
    """Rule 4: ``count`` orders already in the window (recorded plus approved earlier in the batch)
    against ``max_orders``; the value is the number this order would have (``count + 1``)."""
    if max_orders == max_orders and count >= max_orders:
        return THROTTLE, max_orders, count + 1.0
    return APPROVED, 0.0, 0.0


def price_band_rule(price: float, last: float, band: float) -> tuple[int, float, float]:
    """Rule 6: the order price ``price`` more than ``band`` (a fraction) from the last trade
    ``last``; skipped when any of the three is NaN. The value is ``|price / last - 1|``."""
    if band == band and price == price and last == last:
        dev = abs(price / last - 1.0)
        if exceeds(dev, band):
            return PRICE_BAND, band, dev
    return APPROVED, 0.0, 0.0


def market_rule(
    quantity: float, notional: float, reducing: bool, min_amount: float, min_notional: float
) -> tuple[int, float, float]:
    """Rules 7-8, for an instrument with market rules: the (rounded) ``quantity`` is flat or short
    of ``min_amount`` (``MIN_AMOUNT``, all intents); an entry's ``notional`` is short of
    ``min_notional`` (``MIN_NOTIONAL``). A minimum of 0 or NaN is no rule."""
    has_min = min_amount == min_amount and min_amount > 0.0
    if quantity <= FLAT_QTY or (has_min and short_of(quantity, min_amount)):
        return MIN_AMOUNT, (min_amount if has_min else 0.0), quantity
    if not reducing and min_notional == min_notional and min_notional > 0.0 and short_of(notional, min_notional):
        return MIN_NOTIONAL, min_notional, notional
    return APPROVED, 0.0, 0.0


def exposure_rule(
    signed: float,
    held_i: float,
    opens: bool,
    others_abs: float,
    held_sum: float,
    held_count: float,
    equity: float,
    max_order_notional: float,
    max_position_notional: float,
    max_open_positions: float,
    max_gross_exposure: float,
    max_net_exposure: float,
) -> tuple[int, float, float]:
    """Rules 9-13 for an entry of ``signed`` quote (+ buys, - sells) on instrument ``i``.

    ``held_i`` is ``i``'s signed notional (0 when flat), ``opens`` whether ``i`` is flat (the
    entry opens a position), ``others_abs``
    the sum of ``|notional|`` of the other held instruments, ``held_sum`` the sum of every held
    signed notional (``i``'s included), ``held_count`` how many instruments are held.
    Exposures are multiples of ``equity`` (infinite while ``equity <= 0``).
    """
    notional = abs(signed)
    if max_order_notional == max_order_notional and exceeds(notional, max_order_notional):  # 9
        return MAX_ORDER_NOTIONAL, max_order_notional, notional
    after_i = abs(held_i + signed)
    if max_position_notional == max_position_notional and exceeds(after_i, max_position_notional):  # 10
        return MAX_POSITION_NOTIONAL, max_position_notional, after_i
    if max_open_positions == max_open_positions and opens:  # 11
        count = held_count + 1.0
        if exceeds(count, max_open_positions):
            return MAX_OPEN_POSITIONS, max_open_positions, count
    if max_gross_exposure == max_gross_exposure:  # 12
        gross = others_abs + after_i
        ratio = gross / equity if equity > 0.0 else math.inf
        if exceeds(ratio, max_gross_exposure):
            return MAX_GROSS_EXPOSURE, max_gross_exposure, ratio
    if max_net_exposure == max_net_exposure:  # 13
        net = abs(held_sum + signed)
        ratio = net / equity if equity > 0.0 else math.inf
        if exceeds(ratio, max_net_exposure):
            return MAX_NET_EXPOSURE, max_net_exposure, ratio
    return APPROVED, 0.0, 0.0


def kill_switch_rule(
    equity: float, day_start: float, high_water: float, daily_loss_limit: float, max_drawdown: float
) -> tuple[int, float, float, float]:
    """Rule 4 of ``tradeloop.risk.state``: ``(code, reference, value, limit)`` of the trip the
    equity at a close causes, ``code = APPROVED`` when none.

    Daily loss ``1 - equity / day_start`` reaching ``daily_loss_limit`` (skipped while
    ``day_start`` is not positive), else drawdown ``1 - equity / high_water`` reaching
    ``max_drawdown`` (skipped while ``high_water`` is not positive).
    """
    if daily_loss_limit == daily_loss_limit and day_start > 0.0:
        loss = 1.0 - equity / day_start
        if reaches(loss, daily_loss_limit):
            return DAILY_LOSS, day_start, loss, daily_loss_limit
    if max_drawdown == max_drawdown and high_water > 0.0:
        dd = 1.0 - equity / high_water
        if reaches(dd, max_drawdown):
            return MAX_DRAWDOWN, high_water, dd, max_drawdown
    return APPROVED, 0.0, 0.0, 0.0
