"""Protective exits of a live position: the backtest kernel's stop rules, one bar at a time.

An entry carries its protection as a bracket (``OrderIntent.protection``): one leg per kind
the session's config turns on, each stored as a child order of the entry (intent
``stop_loss`` / ``trailing_stop`` / ``take_profit``, order type ``stop`` / ``take_profit``,
reduce-only, ``parent_id`` = the entry's row, client id :func:`child_order_id`),
in the entry's bar transaction, and sent with it.

Rules (the kernel's, ``tradeloop.backtest.kernel`` rule 5, through the helpers of
``tradeloop.backtest.fills``):

1. **Legs.** ``stop_loss`` when ``stop_loss`` or ``atr_stop`` is set (the fixed candidates),
   ``trailing_stop`` when ``trailing_stop`` or ``atr_trailing`` is (the trailing ones),
   ``take_profit`` when ``take_profit`` is. A leg exists whenever its option is set, even
   while its ATR warms up (its level is then off, as in the kernel). Its stored trigger is
   the level had the entry filled at the decision close (:func:`protection_legs`).
2. **One-triggers-the-other.** The legs are inactive until the entry fills. The level that
   counts is set from the fill: entry price (slippage included), the peak (trough) starting
   there, the ATR at the decision bar's close fixed for the position (:class:`Guard`).
3. **Checked on the fill's bar.** A market entry fills at a bar's open and its stop and
   target are checked on that same bar's high and low; a limit entry's bar checks the stop
   only, and its high (low) does not join the peak (trough).
4. **Each bar.** Levels from :func:`~tradeloop.backtest.fills.stop_levels` with the ATR at the
   previous bar's close; :func:`~tradeloop.backtest.fills.stop_exit` says whether and where
   the bar exits (a gap fills at the open; stop before target when one bar touches both,
   unless the open passed the target); the exit is a market order: ``price * (1 -/+
   slippage)`` with the taker fee, reported as the fill of the leg whose kind the kernel
   names (``stop_loss`` for the fixed candidates, ``trailing_stop`` for the trailing ones,
   ``take_profit``). Otherwise the bar's high (low) joins the peak (trough).
5. **One-cancels-the-other.** A leg's fill cancels its siblings; any other reduce-only fill
   of the symbol (a signal exit, a flatten) cancels all of them; an entry that does not
   fill (expired, lapsed, canceled) cancels its legs.

The paper broker (``live.brokers.paper``) applies these rules itself. On a venue the engine
places the legs once the entry has filled, at the levels rule 2 gives from the actual fill,
as native orders where the market lists them and engine-managed otherwise, and moves a
trailing one each bar (``live.venue_protection``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from tradeloop.backtest import BacktestConfig, next_extreme, stop_exit, stop_levels
from tradeloop.trading import OrderIntentKind, OrderSide, ProtectiveLeg

K = OrderIntentKind
NAN = math.nan
_LEG_CODES = {K.STOP_LOSS: "sl", K.TRAILING_STOP: "ts", K.TAKE_PROFIT: "tp"}
_FIXED = ("stop_loss", "atr_stop")
_TRAILING = ("trailing_stop", "atr_trailing")


def child_order_id(parent: str, kind: OrderIntentKind) -> str:
    """The client id of an entry's protective leg: ``<entry's id>-sl`` (``-ts``, ``-tp``), or
    its session prefix and a digest when that is over 36 characters."""
    plain = f"{parent}-{_LEG_CODES[kind]}"
    if len(plain) <= 36:
        return plain
    prefix = parent.split("-", 1)[0] + "-"
    return prefix + hashlib.sha1(plain.encode(), usedforsecurity=False).hexdigest()[: 36 - len(prefix)]


def protective_kinds(config: BacktestConfig) -> tuple[OrderIntentKind, ...]:
    """The legs every entry of a session with ``config`` carries (rule 1), in a fixed order."""
    kinds = []
    if config.stop_loss is not None or config.atr_stop is not None:
        kinds.append(K.STOP_LOSS)
    if config.trailing_stop is not None or config.atr_trailing is not None:
        kinds.append(K.TRAILING_STOP)
    if config.take_profit is not None:
        kinds.append(K.TAKE_PROFIT)
    return tuple(kinds)


def protection_legs(
    config: BacktestConfig, side: OrderSide, *, close: float, atr: float | None
) -> tuple[ProtectiveLeg, ...]:
    """The legs of an entry on ``side`` decided at ``close`` with the ATR ``atr`` there.

    Each leg's trigger is its level for an entry filled at ``close`` (``None`` when its
    candidates are off, e.g. an ATR stop while the ATR warms up); each keeps ``atr`` as its
    ``entry_atr`` (rule 2: the level that counts is measured from the fill with it). Example:
    a long with ``stop_loss=0.05, take_profit=0.1`` at close 100 -> a stop-loss at 95 and a
    take-profit at 110.
    """
    legs = []
    for kind in protective_kinds(config):
        level = leg_level(config, kind, side, entry_price=close, extreme=close, entry_atr=atr, prev_atr=atr)
        legs.append(ProtectiveLeg(kind=kind, trigger_price=level, entry_atr=atr))
    return tuple(legs)


def leg_level(
    config: BacktestConfig,
    kind: OrderIntentKind,
    side: OrderSide,
    *,
    entry_price: float,
    extreme: float,
    entry_atr: float | None,
    prev_atr: float | None,
) -> float | None:
    """One leg's trigger (rule 4) for a position entered on ``side`` at ``entry_price``, its peak
    (trough) ``extreme`` so far: the stop of its own candidates only (``stop_loss`` the fixed ones,
    ``trailing_stop`` the trailing ones), the target for ``take_profit``; ``None`` when off.
    Example: a long at 100 with ``stop_loss=0.05`` -> 95 for ``stop_loss``."""
    off = _TRAILING if kind is K.STOP_LOSS else _FIXED  # one leg's candidates only
    alone = config.model_copy(update=dict.fromkeys(off))
    levels = stop_levels(
        side=side, entry_price=entry_price, extreme=extreme, entry_atr=entry_atr, prev_atr=prev_atr, config=alone
    )
    level = levels.target if kind is K.TAKE_PROFIT else levels.stop
    return level if level is not None and level > 0 else None


@dataclass(frozen=True, kw_only=True, slots=True)
class ProtectiveExit:
    """A leg that fired on a bar: its kind and client order id, the fill price (slippage in)."""

    kind: OrderIntentKind
    client_order_id: str
    price: float


@dataclass(slots=True, kw_only=True)
class Guard:
    """The live protection of one filled entry (rules 2-5): what the broker keeps per position.

    ``legs`` maps each leg's kind to its child order's client id; ``config`` holds the
    options of those legs (a canceled leg's are off); ``fresh`` is True on the bar a limit
    entry filled (rule 3).
    """

    symbol: str
    side: OrderSide  # the entry's side: BUY = long
    quantity: float
    entry_price: float
    entry_atr: float | None
    legs: dict[OrderIntentKind, str]
    config: BacktestConfig
    extreme: float = field(default=NAN)
    fresh: bool = False

    def __post_init__(self) -> None:
        if math.isnan(self.extreme):
            self.extreme = self.entry_price

    @property
    def exit_side(self) -> OrderSide:
        return self.side.opposite

    def on_bar(self, *, open_: float, high: float, low: float, prev_atr: float | None) -> ProtectiveExit | None:
        """Check this bar (rule 4): the exit it triggers, or ``None`` (the peak moves on)."""
        config = self.config
        levels = stop_levels(
            side=self.side,
            entry_price=self.entry_price,
            extreme=self.extreme,
            entry_atr=self.entry_atr,
            prev_atr=prev_atr,
            config=config,
        )
        hit = stop_exit(levels, open_=open_, high=high, low=low, check_target=not self.fresh)
        fresh, self.fresh = self.fresh, False
        if hit is None:
            if not fresh and math.isfinite(high) and math.isfinite(low):
                self.extreme = next_extreme(self.side, self.extreme, high=high, low=low)
            return None
        price, kind = hit
        slip = config.slippage
        fill = price * (1.0 - slip) if self.side is OrderSide.BUY else price * (1.0 + slip)
        return ProtectiveExit(kind=kind, client_order_id=self.legs[kind], price=fill)
