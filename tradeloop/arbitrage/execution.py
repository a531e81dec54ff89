"""Paper execution of an arbitrage opportunity's two legs: the option, the sizing and the
result (pure, no I/O; ``live.arbitrage_paper`` sends the legs through the order manager).

Rules:

1. **Off unless configured.** The scanner only detects; a :class:`PaperExecutionConfig` turns on
   paper execution of both legs when an opportunity *opens* (never on a later update: the
   figures that opened it are the ones traded). It is paper only: nothing here or in the
   service that runs it can reach a real venue.
2. **Pre-funded inventory, no transfer.** Spot venues cannot sell what they do not hold, and a
   withdrawal takes minutes to hours, so (as the usual cross-exchange arbitrage bots do) each
   venue holds inventory of both assets before the session starts (``inventory``: venue ->
   asset -> amount) and a pair buys on one venue while it sells on the other at the same
   time; the coins are never moved (rebalancing is the operator's, outside). What a venue holds
   is its pre-funded inventory plus its fills (:func:`balances`): a buy adds the base asset and
   spends ``quantity * price + fee`` of the quote asset, a sell the reverse. A scanner that
   counts a transfer (``ArbitrageConfig.transfer``) is refused with paper execution.
3. **Size** (:func:`plan_pair`): the smallest of the size quoted at both prices (the
   opportunity's: the thinner side, the scanner's ``max_size``), ``max_notional / ask``, the
   base asset held on the sell venue (a sell leg never exceeds the inventory held) and the
   quote asset held on the buy venue over ``ask * (1 + taker fee)``. A pair worth no more than
   ``min_notional`` at the ask (nothing held, say) is skipped, with the bound that limited it.
4. **Result** (:func:`pair_result`): realised net PnL, in the quote asset, is what the sell
   leg's fills brought in after their fees less what the buy leg's fills cost with theirs; in
   bps of the buy leg's notional it is compared with the scanner's predicted net spread
   (``net_bps`` of the opening; ``predicted_net_profit`` is it at the size executed). Paper
   fills at the quoted top of book with the venues' taker fees make the two equal; a leg filled
   short of its size shows the difference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from tradeloop.arbitrage.scanner import Opportunity
from tradeloop.errors import ConfigError
from tradeloop.trading import OrderSide

_EXAMPLE = "inventory={'binance': {'USDT': 10000, 'BTC': 0.5}, 'kraken': {'USDT': 10000, 'BTC': 0.5}}"


@dataclass(frozen=True, kw_only=True, slots=True)
class PaperExecutionConfig:
    """Paper execution of both legs (module rules; the arbitrage service is detection only
    without one).

    Parameters
    ----------
    max_notional
        Quote amount one pair's buy leg spends at most (e.g. 1000 for 1000 USDT).
    inventory
        Venue -> asset -> amount held there when the paper session starts (rule 2); a venue or
        asset not named holds nothing.
    min_notional
        A pair worth no more than this at the buy price is skipped (a venue's minimum order).
    session
        The paper trading session the legs' orders and fills are stored under (created at the
        first start, resumed after).

    Raises
    ------
    ConfigError
        A value out of range, naming the field, the value and what to give instead.
    """

    max_notional: float
    inventory: Mapping[str, Mapping[str, float]]
    min_notional: float = 0.0
    session: str = "arbitrage-paper"

    def __post_init__(self) -> None:
        _positive("max_notional", self.max_notional, example="max_notional=1000 (quote units)")
        if not _number(self.min_notional) or not 0.0 <= self.min_notional < self.max_notional:
            raise ConfigError(
                f"min_notional={self.min_notional!r}: give a quote amount from 0 up to max_notional="
                f"{self.max_notional} (e.g. min_notional=10, a venue's minimum order)"
            )
        if not isinstance(self.session, str) or not 0 < len(self.session.strip()) <= 100:
            raise ConfigError(f"session={self.session!r}: give the paper session a name of 1 to 100 characters")
        if not isinstance(self.inventory, Mapping) or not self.inventory:
            raise ConfigError(
                f"inventory={self.inventory!r}: pre-fund the venues (rule 2: a spot venue sells only what it "
                f"holds), e.g. {_EXAMPLE}"
            )
        frozen: dict[str, Mapping[str, float]] = {}
        for venue, held in self.inventory.items():
            if not isinstance(held, Mapping):
                raise ConfigError(f"inventory[{venue!r}]={held!r}: give asset -> amount, e.g. {_EXAMPLE}")
            for asset, amount in held.items():
                if not _number(amount) or amount < 0:
                    raise ConfigError(
                        f"inventory[{venue!r}][{asset!r}]={amount!r}: give the amount of {asset} held on {venue}, "
                        "a finite number >= 0"
                    )
            frozen[venue] = MappingProxyType({str(a): float(x) for a, x in held.items()})
        object.__setattr__(self, "inventory", MappingProxyType(frozen))
        object.__setattr__(self, "max_notional", float(self.max_notional))
        object.__setattr__(self, "min_notional", float(self.min_notional))

    def as_dict(self) -> dict:
        """As stored with the paper session (JSON)."""
        return {
            "max_notional": self.max_notional,
            "min_notional": self.min_notional,
            "inventory": {v: dict(held) for v, held in self.inventory.items()},
            "session": self.session,
        }


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive(name: str, value: object, *, example: str) -> None:
    if not _number(value) or not value > 0:  # type: ignore[operator]
        raise ConfigError(f"{name}={value!r}: give a finite number > 0, e.g. {example}")


def assets(symbol: str) -> tuple[str, str]:
    """``BTC/USDT`` -> ``("BTC", "USDT")``; spot only: a derivative (``BTC/USDT:USDT``) is refused."""
    base, sep, quote = symbol.partition("/")
    if not sep or not base or not quote or ":" in quote:
        raise ConfigError(f"symbol={symbol!r}: paper arbitrage trades spot markets BASE/QUOTE only, e.g. BTC/USDT")
    return base, quote


@dataclass(frozen=True, kw_only=True, slots=True)
class LegFill:
    """One fill of a leg, on ``venue`` (its quote-asset ``fee``)."""

    venue: str
    symbol: str  # ccxt spot symbol
    side: OrderSide
    quantity: float
    price: float
    fee: float


Balances = dict[str, dict[str, float]]


def balances(inventory: Mapping[str, Mapping[str, float]], fills: Iterable[LegFill]) -> Balances:
    """Venue -> asset -> amount held: the pre-funded ``inventory`` plus ``fills`` (rule 2)."""
    held: Balances = {v: dict(a) for v, a in inventory.items()}
    for f in fills:
        base, quote = assets(f.symbol)
        venue = held.setdefault(f.venue, {})
        cash = f.side.sign * f.quantity * f.price
        venue[base] = venue.get(base, 0.0) + f.side.sign * f.quantity
        venue[quote] = venue.get(quote, 0.0) - cash - f.fee
    return held


@dataclass(frozen=True, kw_only=True, slots=True)
class PairPlan:
    """What to send for an opportunity (rule 3): ``size`` base units on both legs, or nothing
    (``size`` 0) with ``limited_by`` saying why."""

    size: float
    limited_by: str  # book | max_notional | base held on <venue> | quote held on <venue>

    @property
    def skipped(self) -> bool:
        return self.size <= 0.0


def plan_pair(
    opportunity: Opportunity, *, config: PaperExecutionConfig, taker_fees: Mapping[str, float], held: Balances
) -> PairPlan:
    """The pair's size (rule 3); skipped when worth no more than ``min_notional``."""
    o = opportunity
    base, quote = assets(o.symbol)
    fee = taker_fees[o.buy_venue]
    bounds = {
        "book": o.size,
        "max_notional": config.max_notional / o.buy_price,
        f"{base} held on {o.sell_venue}": held.get(o.sell_venue, {}).get(base, 0.0),
        f"{quote} held on {o.buy_venue}": held.get(o.buy_venue, {}).get(quote, 0.0) / (o.buy_price * (1 + fee)),
    }
    limited_by = min(bounds, key=lambda k: bounds[k])
    size = max(bounds[limited_by], 0.0)
    if size * o.buy_price <= config.min_notional:
        return PairPlan(size=0.0, limited_by=limited_by)
    return PairPlan(size=size, limited_by=limited_by)


@dataclass(frozen=True, kw_only=True, slots=True)
class PairResult:
    """An executed pair against the scanner's prediction (rule 4)."""

    bought: float  # base units the buy leg filled
    sold: float
    buy_notional: float  # quote, before fees
    sell_notional: float
    fees: float  # both legs', quote
    realised_net_profit: float
    realised_net_bps: float
    predicted_net_bps: float
    predicted_net_profit: float  # the scanner's net spread at the size bought

    def as_dict(self) -> dict:
        return {
            "bought": self.bought, "sold": self.sold, "buy_notional": self.buy_notional,
            "sell_notional": self.sell_notional, "fees": self.fees, "realised_net_profit": self.realised_net_profit,
            "realised_net_bps": self.realised_net_bps, "predicted_net_bps": self.predicted_net_bps,
            "predicted_net_profit": self.predicted_net_profit,
        }  # fmt: skip


def pair_result(opportunity: Opportunity, fills: Iterable[LegFill]) -> PairResult:
    """Realised net PnL of a pair's fills against the opportunity's predicted net spread (rule 4)."""
    buys = [f for f in fills if f.side is OrderSide.BUY]
    sells = [f for f in fills if f.side is OrderSide.SELL]
    if not buys and not sells:
        raise ValueError(f"no fill of the pair {opportunity.symbol} {opportunity.buy_venue}->{opportunity.sell_venue}")
    bought, sold = sum(f.quantity for f in buys), sum(f.quantity for f in sells)
    paid = sum(f.quantity * f.price for f in buys)
    got = sum(f.quantity * f.price for f in sells)
    fees = sum(f.fee for f in (*buys, *sells))
    realised = got - paid - fees
    predicted = opportunity.net_bps / 1e4 * bought * opportunity.buy_price
    return PairResult(
        bought=bought, sold=sold, buy_notional=paid, sell_notional=got, fees=fees, realised_net_profit=realised,
        realised_net_bps=realised / paid * 1e4 if paid > 0 else float("nan"), predicted_net_bps=opportunity.net_bps,
        predicted_net_profit=predicted,
    )  # fmt: skip
