"""Stop and limit-entry rules for one position or one order: the kernel's and the live paper broker's.

The lower-case ``*_rule`` functions are plain Python over floats (NaN = "none", directions
``+1.0`` long / ``-1.0`` short, exit reasons as the kernel's integer codes). The kernel
compiles these very functions with numba and calls them on every bar, so a live port that
calls them (or the typed wrappers at the bottom: ``stop_levels``, ``stop_exit``,
``next_extreme``, ``limit_price``, ``limit_fill_price``) applies one definition.

Rules
-----
**Stop level of a position** (``stop_rule``). Candidates, each ``None`` when its option is
off or its ATR is NaN:

- stop-loss ``entry * (1 -/+ stop_loss)`` (long/short);
- ATR stop ``entry -/+ atr_stop * ATR(decision bar)``: the ATR at the close of the bar whose
  signal opened the position, fixed for the position's life;
- trailing ``extreme * (1 -/+ trailing_stop)``;
- ATR trailing ``extreme -/+ atr_trailing * ATR(previous bar)``: the ATR at the close of the
  bar before the one checked, so the distance moves with volatility bar by bar.

``entry`` is the entry fill price (slippage included); ``extreme`` is the peak (long) or
trough (short) of the entry price and the highs (lows) of *previous* bars. The tighter
candidate is the stop (highest for a long, lowest for a short); on a tie the earlier one
in the list above wins. Its reason is ``stop_loss`` for the first two, ``trailing_stop``
for the last two. The take-profit is ``entry * (1 +/- take_profit)`` (``target_rule``).

**Stop exit on a bar** (``stop_fill_rule``), long (short mirrored): an open at or above the
take-profit fills at the open (``take_profit``); else a low at or below the stop fills at
the stop, or at the open if the open is already below it (a gap); else a high at or above
the take-profit fills at the take-profit. So when one bar touches both, the stop is
assumed first. The price returned is before slippage: the exit is a market order and
fills at ``price * (1 -/+ slippage)`` with the taker fee.

**Limit entry** (``limit_price_rule``, ``limit_fill_rule``). The price is
``close * (1 - limit_offset)`` for a buy, ``close * (1 + limit_offset)`` for a sell, from the
decision bar's close. Queue rule: we are last in the queue, so a bar that only *touches* the
price does not fill; a buy fills when the bar's low trades strictly through it
(``low < price``), at the price, or at the open if the open is already below it (a gap
gives the better price); a sell fills when ``high > price``, at the price or the higher
open. No slippage on limit fills.

Replaying the kernel one bar at a time (what a live port does)
---------------------------------------------------------------
A position keeps ``side``, ``entry_price``, ``extreme`` (starts at the entry price) and
``entry_atr`` (the ATR at its decision bar, ``tradeloop.backtest.atr.WilderAtr``). On each
bar after the open's orders: ``levels = stop_levels(..., prev_atr=ATR at the previous
close)``; ``stop_exit(levels, open_=, high=, low=, check_target=not filled_this_bar)`` gives
the exit, else ``extreme = next_extreme(...)`` (not on the bar a limit entry filled). A limit
entry decided at ``close`` rests at ``limit_price(side, close, limit_offset)`` for
``fraction * equity / price`` units; each of the symbol's next ``limit_ttl_bars`` candles
asks ``limit_fill_price(side, price, open, high, low)``, and a fill buys at most
``cash / (fill * (1 + maker fee))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tradeloop.backtest.config import BacktestConfig
from tradeloop.trading.enums import OrderIntentKind, OrderSide

# exit reasons: the kernel's codes, named by EXIT_REASONS (kill_switch: a flatten_on_kill exit, with a RiskConfig)
SIGNAL, STOP_LOSS, TAKE_PROFIT, TRAILING_STOP, END, OPEN, KILL_SWITCH = 0, 1, 2, 3, 4, 5, 6
EXIT_REASONS = ("signal", "stop_loss", "take_profit", "trailing_stop", "end", "open", "kill_switch")


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


# ----------------------------------------------------- the compiled core (plain Python, numba-compatible)
def stop_rule(
    direction: float,
    entry_price: float,
    extreme: float,
    entry_atr: float,
    prev_atr: float,
    stop_loss: float,
    trailing: float,
    atr_stop: float,
    atr_trailing: float,
) -> tuple[float, int]:
    """The stop level of one position and its exit reason; NaN options are off.

    Returns ``(-inf or inf, STOP_LOSS)`` when no stop applies.
    """
    if direction > 0.0:
        stop = -math.inf
        reason = STOP_LOSS
        if stop_loss == stop_loss:
            stop = entry_price * (1.0 - stop_loss)
        if atr_stop == atr_stop:
            level = entry_price - atr_stop * entry_atr
            if level > stop:
                stop = level
        if trailing == trailing:
            trail = extreme * (1.0 - trailing)
            if trail > stop:
                stop = trail
                reason = TRAILING_STOP
        if atr_trailing == atr_trailing:
            level = extreme - atr_trailing * prev_atr
            if level > stop:
                stop = level
                reason = TRAILING_STOP
        return stop, reason
    stop = math.inf
    reason = STOP_LOSS
    if stop_loss == stop_loss:
        stop = entry_price * (1.0 + stop_loss)
    if atr_stop == atr_stop:
        level = entry_price + atr_stop * entry_atr
        if level < stop:
            stop = level
    if trailing == trailing:
        trail = extreme * (1.0 + trailing)
        if trail < stop:
            stop = trail
            reason = TRAILING_STOP
    if atr_trailing == atr_trailing:
        level = extreme + atr_trailing * prev_atr
        if level < stop:
            stop = level
            reason = TRAILING_STOP
    return stop, reason


def target_rule(direction: float, entry_price: float, take_profit: float) -> float:
    """The take-profit level; ``+inf`` (long) or ``-inf`` (short) when ``take_profit`` is NaN."""
    if direction > 0.0:
        return entry_price * (1.0 + take_profit) if take_profit == take_profit else math.inf
    return entry_price * (1.0 - take_profit) if take_profit == take_profit else -math.inf


def stop_fill_rule(
    direction: float, stop: float, reason: int, target: float, open_: float, high: float, low: float
) -> tuple[float, int]:
    """``(price before slippage, reason)`` of a stop or take-profit exit on this bar; NaN price: none."""
    if direction > 0.0:
        if open_ >= target:
            return open_, TAKE_PROFIT
        if low <= stop:
            return (open_ if open_ <= stop else stop), reason
        if high >= target:
            return target, TAKE_PROFIT
        return math.nan, reason
    if open_ <= target:
        return open_, TAKE_PROFIT
    if high >= stop:
        return (open_ if open_ >= stop else stop), reason
    if low <= target:
        return target, TAKE_PROFIT
    return math.nan, reason


def limit_price_rule(direction: float, close: float, offset: float) -> float:
    """The limit price of an entry decided at ``close``: below it for a buy, above for a sell."""
    return close * (1.0 - offset) if direction > 0.0 else close * (1.0 + offset)


def limit_fill_rule(direction: float, price: float, open_: float, high: float, low: float) -> float:
    """Fill price of a resting limit entry on this bar (the queue rule), NaN when it does not fill."""
    if direction > 0.0:
        if low < price:
            return open_ if open_ < price else price
        return math.nan
    if high > price:
        return open_ if open_ > price else price
    return math.nan


# ----------------------------------------------------- typed wrappers (for the live engine)
_REASON_KIND = {
    STOP_LOSS: OrderIntentKind.STOP_LOSS,
    TRAILING_STOP: OrderIntentKind.TRAILING_STOP,
    TAKE_PROFIT: OrderIntentKind.TAKE_PROFIT,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class StopLevels:
    """Where one position's protective exits stand for the next bar (``None``: no such exit)."""

    side: OrderSide  # the side that opened the position: BUY = long
    stop: float | None
    stop_kind: OrderIntentKind  # STOP_LOSS or TRAILING_STOP: which candidate is the tightest
    target: float | None


def stop_levels(
    *,
    side: OrderSide,
    entry_price: float,
    extreme: float,
    entry_atr: float | None,
    prev_atr: float | None,
    config: BacktestConfig,
) -> StopLevels:
    """The stop and take-profit levels of one position for the coming bar.

    Parameters
    ----------
    side
        The side of the entry fill: ``OrderSide.BUY`` for a long, ``SELL`` for a short.
    entry_price
        The entry fill price (slippage included).
    extreme
        Peak (long) or trough (short) of the entry price and the previous bars' highs (lows);
        start it at ``entry_price`` and move it with :func:`next_extreme` after each bar.
    entry_atr
        ATR at the close of the bar that decided the entry (``tradeloop.backtest.atr``); ``None``
        or NaN while the ATR warms up: the ATR stop is off for this position.
    prev_atr
        ATR at the close of the bar before the one about to be checked; ``None``/NaN: the ATR
        trailing stop is off for that bar.
    config
        The backtest config: ``stop_loss``, ``trailing_stop``, ``atr_stop``, ``atr_trailing``,
        ``take_profit``.

    Returns
    -------
    StopLevels
        Example: long entry at 100, ``atr_stop=2``, entry ATR 3 -> ``stop=94.0`` (stop_loss kind).
    """
    d = float(side.sign)
    stop, reason = stop_rule(
        d,
        float(entry_price),
        float(extreme),
        _nan(entry_atr),
        _nan(prev_atr),
        _nan(config.stop_loss),
        _nan(config.trailing_stop),
        _nan(config.atr_stop),
        _nan(config.atr_trailing),
    )
    target = target_rule(d, float(entry_price), _nan(config.take_profit))
    return StopLevels(
        side=side,
        stop=stop if math.isfinite(stop) else None,
        stop_kind=_REASON_KIND[reason],
        target=target if math.isfinite(target) else None,
    )


def stop_exit(
    levels: StopLevels, *, open_: float, high: float, low: float, check_target: bool = True
) -> tuple[float, OrderIntentKind] | None:
    """The stop or take-profit exit this bar triggers, as ``(price before slippage, kind)``, or ``None``.

    ``check_target=False`` on the bar a limit entry filled (the bar is assumed to have run
    away from the take-profit before the fill). A bar without a finite high and low checks
    nothing.
    """
    if not (math.isfinite(high) and math.isfinite(low)):
        return None
    d = float(levels.side.sign)
    inf = math.inf * d
    stop = -inf if levels.stop is None else levels.stop
    target = inf if levels.target is None or not check_target else levels.target
    reason = STOP_LOSS if levels.stop_kind is OrderIntentKind.STOP_LOSS else TRAILING_STOP
    price, code = stop_fill_rule(d, stop, reason, target, float(open_), float(high), float(low))
    return None if price != price else (price, _REASON_KIND[code])


def next_extreme(side: OrderSide, extreme: float, *, high: float, low: float) -> float:
    """The peak (long) or trough (short) after a bar that did not exit: this bar's high (low) joins it."""
    if side is OrderSide.BUY:
        return high if high > extreme else extreme
    return low if low < extreme else extreme


def limit_price(side: OrderSide, close: float, offset: float) -> float:
    """The price of a limit entry decided at ``close``: ``close * (1 -/+ offset)`` for a buy/sell."""
    return limit_price_rule(float(side.sign), float(close), float(offset))


def limit_fill_price(side: OrderSide, price: float, open_: float, high: float, low: float) -> float | None:
    """Where a resting limit entry at ``price`` fills on a bar, or ``None`` (the queue rule).

    Example: a buy at 99 fills at 99 on a bar with low 98.5, at 98 on a bar that opens at 98,
    and not at all on a bar whose low is exactly 99.
    """
    fill = limit_fill_rule(float(side.sign), float(price), float(open_), float(high), float(low))
    return None if fill != fill else fill
