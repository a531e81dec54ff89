"""A market's trading rules: minimum amount and notional, amount step and price tick.

Rules:

1. ``None`` or ``0`` means the venue sets no such rule.
2. Amounts round **down** to a multiple of ``amount_step`` (never sell more than is held,
   never spend more than asked): ``floor(amount / step + 1e-9) * step``. The ``1e-9`` (in
   steps) keeps a value that is a multiple up to float error, such as ``0.3 / 0.1``, where
   it is; the result is then rounded to the step's decimals so it prints as the venue wants.
3. Prices round to a multiple of ``price_tick`` in the trader's favour: a buy's limit price
   down, a sell's up (``mode="down"|"up"``); ``"nearest"`` for a trigger price. The same
   ``1e-9`` of a tick keeps a price already on the grid.
4. From a ccxt market (:meth:`MarketRules.from_ccxt`): ``limits.amount.min``,
   ``limits.cost.min``, ``precision.amount`` and ``precision.price``. ccxt 4.5 reports
   binance's precision in ``TICK_SIZE`` mode (the values are step sizes, e.g. ``1e-05``);
   exchanges in ``DECIMAL_PLACES`` mode report digits (``5`` means a step of ``1e-05``).
   ``SIGNIFICANT_DIGITS`` has no fixed step and is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from tradeloop.errors import ConfigError

#: ccxt's precision modes (``ccxt.DECIMAL_PLACES`` etc.; tradeloop.risk does not import ccxt)
DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE = 2, 3, 4
GRID_TOL = 1e-9  # in steps: a value this close below the next multiple counts as on it


def _decimals(step: float) -> int:
    """Digits after the point of a step as written (``0.001`` -> 3, ``5.0`` -> 0, ``1e-05`` -> 5)."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def round_to_step(value: float, step: float | None, *, mode: Literal["down", "up", "nearest"] = "down") -> float:
    """``value`` on the grid of ``step`` (unchanged when ``step`` is ``None`` or ``0``).

    Parameters
    ----------
    value
        A non-negative amount or price.
    step
        The grid's spacing, e.g. ``0.001``.
    mode
        ``"down"`` (floor), ``"up"`` (ceil) or ``"nearest"``; a value within ``1e-9`` of a
        step from a multiple counts as that multiple in every mode.
    """
    if not step:
        return value
    steps = value / step
    if mode == "down":
        n = math.floor(steps + GRID_TOL)
    elif mode == "up":
        n = math.ceil(steps - GRID_TOL)
    else:
        n = math.floor(steps + 0.5)
    return round(n * step, _decimals(step))


@dataclass(frozen=True, kw_only=True, slots=True)
class MarketRules:
    """What a venue accepts on one instrument; ``None`` (or 0) = no such rule.

    ``min_amount`` and ``amount_step`` are in the base asset, ``min_notional`` in quote,
    ``price_tick`` in quote per unit.
    """

    min_amount: float | None = None
    min_notional: float | None = None
    amount_step: float | None = None
    price_tick: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_amount", "min_notional", "amount_step", "price_tick"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"MarketRules {name}={value!r} must be a finite number >= 0, or None for no rule")

    def amount(self, quantity: float) -> float:
        """``quantity`` rounded down to the amount step (rule 2)."""
        return round_to_step(quantity, self.amount_step, mode="down")

    def price(self, price: float, *, mode: Literal["down", "up", "nearest"] = "nearest") -> float:
        """``price`` on the tick grid (rule 3)."""
        return round_to_step(price, self.price_tick, mode=mode)

    @classmethod
    def from_ccxt(cls, market: dict[str, Any], *, precision_mode: int = TICK_SIZE) -> MarketRules:
        """The rules of a ccxt unified market (``exchange.markets[symbol]``).

        Parameters
        ----------
        market
            ccxt's market dict, with ``limits`` and ``precision``.
        precision_mode
            ``exchange.precisionMode``: ``TICK_SIZE`` (4, binance in ccxt 4.5) or
            ``DECIMAL_PLACES`` (2).

        Raises
        ------
        ConfigError
            For ``SIGNIFICANT_DIGITS`` (3) or an unknown mode.
        """
        limits = market.get("limits") or {}
        precision = market.get("precision") or {}

        def step(value: Any) -> float | None:
            if value is None:
                return None
            if precision_mode == TICK_SIZE:
                return float(value)
            if precision_mode == DECIMAL_PLACES:
                return 10.0 ** -int(value)
            raise ConfigError(
                f"market {market.get('symbol', '?')}: precision mode {precision_mode} has no fixed step; "
                f"MarketRules takes TICK_SIZE ({TICK_SIZE}) or DECIMAL_PLACES ({DECIMAL_PLACES})"
            )

        def least(kind: str) -> float | None:
            value = (limits.get(kind) or {}).get("min")
            return float(value) if value else None

        return cls(
            min_amount=least("amount"),
            min_notional=least("cost"),
            amount_step=step(precision.get("amount")) or None,
            price_tick=step(precision.get("price")) or None,
        )
