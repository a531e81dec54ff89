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
   opportunity's: the thinner side, the scanner's ``max_size``), ``max_notional / (ask * (1 +
   taker fee))`` (the buy leg spends at most ``max_notional``, its fee included), the base
   asset held on the sell venue (a sell leg never exceeds the inventory held) and the quote
   asset held on the buy venue over ``ask * (1 + taker fee)``, both net of the session's
   orders still in flight. The size is then rounded **down** to both venues' amount step
   (:class:`MarketLimits`, from ccxt's markets; :data:`DEFAULT_STEP` where a market gives
   none), so no balance ever goes below zero, fees included. A pair below either venue's
   minimum amount or minimum cost, worth no more than ``min_notional`` at the ask, or rounded
   to nothing (dust) is skipped, with the bound that limited it.
4. **Result** (:func:`pair_result`): realised net PnL, in the quote asset, is taken on the
   matched quantity ``min(bought, sold)``: what the sell leg's fills brought in for it after
   their fees less what the buy leg's fills cost for it with theirs (each leg's fees pro rata
   to the part matched); in bps of the matched buy notional (None when nothing matched, never
   NaN) it is compared with the scanner's predicted net spread (``net_bps`` of the opening;
   ``predicted_net_profit`` is it at the matched size). ``unhedged`` is the leftover,
   ``bought - sold`` base units (> 0: held long on the buy venue; < 0: sold from the sell
   venue's inventory and not bought back), exposure that is not profit. Paper fills at the
   quoted top of book with the venues' taker fees make realised and predicted equal.
5. **One quote asset per session** (:func:`session_quote`): the session's cash is the quote
   asset held over every venue, so every symbol shares one quote asset and some of it is
   held (a session with none could never buy).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
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
        Quote amount one pair's buy leg spends at most, its taker fee included (e.g. 1000 for
        1000 USDT).
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


DEFAULT_STEP = 1e-8  # base units: the finest amount step of the common spot venues (a satoshi)


@dataclass(frozen=True, kw_only=True, slots=True)
class MarketLimits:
    """A venue market's order limits (ccxt's ``markets[symbol]``: ``precision.amount`` as a
    step, ``limits.amount.min``, ``limits.cost.min``); 0: none known."""

    amount_step: float = DEFAULT_STEP
    min_amount: float = 0.0
    min_cost: float = 0.0

    def __post_init__(self) -> None:
        if not _number(self.amount_step) or not self.amount_step > 0:
            raise ConfigError(f"amount_step={self.amount_step!r}: give the market's amount step, > 0 (e.g. 1e-05)")
        for name in ("min_amount", "min_cost"):
            value = getattr(self, name)
            if not _number(value) or value < 0:
                raise ConfigError(f"{name}={value!r}: give the market's minimum, a finite number >= 0")


def floor_step(amount: float, step: float) -> float:
    """``amount`` rounded down to a multiple of ``step`` (decimal arithmetic: never above it)."""
    if not amount > 0:
        return 0.0
    units = (Decimal(repr(amount)) / Decimal(repr(step))).to_integral_value(rounding=ROUND_FLOOR)
    return float(units * Decimal(repr(step)))


def session_quote(inventory: Mapping[str, Mapping[str, float]], symbols: Iterable[str]) -> tuple[str, float]:
    """The session's quote asset and its cash, the quote asset held over every venue (rule 5);
    a ConfigError for symbols of several quote assets or no quote asset held."""
    quotes = sorted({assets(s)[1] for s in symbols})
    if len(quotes) != 1:
        raise ConfigError(
            f"symbols of quote assets {quotes or 'none'}: a paper arbitrage session keeps one quote asset (its cash); "
            "give --symbol of one quote asset (e.g. BTC/USDT and ETH/USDT) and a session per quote asset"
        )
    quote = quotes[0]
    cash = sum(held.get(quote, 0.0) for held in inventory.values())
    if not cash > 0:
        raise ConfigError(
            f"init_cash={cash}: the inventory holds no {quote} on any venue, so no pair could ever buy; "
            f"pre-fund it, e.g. --inventory VENUE={quote}:10000"
        )
    return quote, cash


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
    opportunity: Opportunity,
    *,
    config: PaperExecutionConfig,
    taker_fees: Mapping[str, float],
    held: Balances,
    limits: Mapping[str, MarketLimits] | None = None,
) -> PairPlan:
    """The pair's size (rule 3): bounded, rounded down to both venues' steps, skipped below a
    minimum; ``held`` net of the orders in flight, ``limits`` by venue (default: :class:`MarketLimits`)."""
    o = opportunity
    base, quote = assets(o.symbol)
    fee = taker_fees[o.buy_venue]
    cost = o.buy_price * (1 + fee)  # quote spent per base unit bought
    quote_held = held.get(o.buy_venue, {}).get(quote, 0.0)
    bounds = {
        "book": o.size,
        "max_notional": config.max_notional / cost,
        f"{base} held on {o.sell_venue}": held.get(o.sell_venue, {}).get(base, 0.0),
        f"{quote} held on {o.buy_venue}": quote_held / cost,
    }
    limited_by = min(bounds, key=lambda k: bounds[k])
    buy, sell = ((limits or {}).get(v, MarketLimits()) for v in (o.buy_venue, o.sell_venue))
    size = max(bounds[limited_by], 0.0)
    for step in sorted({buy.amount_step, sell.amount_step}, reverse=True):  # the coarser first
        size = floor_step(size, step)
    while size > 0 and size * o.buy_price + size * o.buy_price * fee > min(quote_held, config.max_notional):
        size = floor_step(size - min(buy.amount_step, sell.amount_step), min(buy.amount_step, sell.amount_step))
    floors = {
        f"dust (under an amount step of {max(buy.amount_step, sell.amount_step):g})": size <= 0,
        f"min amount on {o.buy_venue}": size < buy.min_amount,
        f"min amount on {o.sell_venue}": size < sell.min_amount,
        f"min cost on {o.buy_venue}": size * o.buy_price < buy.min_cost,
        f"min cost on {o.sell_venue}": size * o.sell_price < sell.min_cost,
        "min_notional": size * o.buy_price <= config.min_notional,
    }
    below = next((name for name, hit in floors.items() if hit), None)
    if below is not None:
        return PairPlan(size=0.0, limited_by=limited_by if size <= 0 and bounds[limited_by] <= 0 else below)
    return PairPlan(size=size, limited_by=limited_by)


@dataclass(frozen=True, kw_only=True, slots=True)
class PairResult:
    """An executed pair against the scanner's prediction (rule 4)."""

    bought: float  # base units the buy leg filled
    sold: float
    matched: float  # min(bought, sold): what the realised figures cover
    unhedged: float  # bought - sold, base units: exposure left, not profit
    buy_notional: float  # quote, before fees
    sell_notional: float
    fees: float  # both legs', quote
    realised_net_profit: float  # on the matched quantity
    realised_net_bps: float | None  # None: nothing matched
    predicted_net_bps: float
    predicted_net_profit: float  # the scanner's net spread at the matched size

    def as_dict(self) -> dict:
        return {
            "bought": self.bought, "sold": self.sold, "matched": self.matched, "unhedged": self.unhedged,
            "buy_notional": self.buy_notional, "sell_notional": self.sell_notional, "fees": self.fees,
            "realised_net_profit": self.realised_net_profit, "realised_net_bps": self.realised_net_bps,
            "predicted_net_bps": self.predicted_net_bps, "predicted_net_profit": self.predicted_net_profit,
        }  # fmt: skip


def pair_result(opportunity: Opportunity, fills: Iterable[LegFill]) -> PairResult:
    """Realised net PnL of a pair's fills on the matched quantity against the opportunity's
    predicted net spread, and the unhedged leftover (rule 4)."""
    buys = [f for f in fills if f.side is OrderSide.BUY]
    sells = [f for f in fills if f.side is OrderSide.SELL]
    if not buys and not sells:
        raise ValueError(f"no fill of the pair {opportunity.symbol} {opportunity.buy_venue}->{opportunity.sell_venue}")
    bought, sold = sum(f.quantity for f in buys), sum(f.quantity for f in sells)
    paid = sum(f.quantity * f.price for f in buys)
    got = sum(f.quantity * f.price for f in sells)
    buy_fees, sell_fees = sum(f.fee for f in buys), sum(f.fee for f in sells)
    matched = min(bought, sold)
    paid_matched = paid * matched / bought if bought > 0 else 0.0
    got_matched = got * matched / sold if sold > 0 else 0.0
    fees_matched = (buy_fees * matched / bought if bought > 0 else 0.0) + (
        sell_fees * matched / sold if sold > 0 else 0.0
    )
    realised = got_matched - paid_matched - fees_matched
    return PairResult(
        bought=bought, sold=sold, matched=matched, unhedged=bought - sold, buy_notional=paid, sell_notional=got,
        fees=buy_fees + sell_fees, realised_net_profit=realised,
        realised_net_bps=realised / paid_matched * 1e4 if paid_matched > 0 else None,
        predicted_net_bps=opportunity.net_bps,
        predicted_net_profit=opportunity.net_bps / 1e4 * matched * opportunity.buy_price,
    )  # fmt: skip
