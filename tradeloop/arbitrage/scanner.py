"""Cross-venue arbitrage detection over top of book (detection only: nothing is traded).

Rules:

1. **Same asset, same symbol.** Quotes are compared across venues for one ccxt unified
   symbol (``BTC/USDT`` on binance and on kraken); a venue pair is ordered: buy on
   ``buy_venue`` at its best ask, sell on ``sell_venue`` at its best bid.
2. **Simultaneous quotes only.** A quote older than ``max_quote_age_ms`` behind the newest
   quote of the symbol (by the quotes' own ``ts``, never the wall clock) takes no part: a
   stale book shows spreads that are not there.
3. **Spreads** (basis points of the buy price)::

       gross_bps  = (bid_sell - ask_buy) / ask_buy * 1e4
       size       = min(ask_size_buy, bid_size_sell, max_size)      the thinner side limits it
       net_profit = size * (bid_sell * (1 - taker_sell) - ask_buy * (1 + taker_buy))
                    - withdrawal_fee(buy venue, base) * ask_buy     only with ``transfer``
       net_bps    = net_profit / (size * ask_buy) * 1e4

   Taker fees on both legs (both legs cross the spread). With ``transfer`` the bought asset is
   withdrawn from the buy venue to the sell venue, at that venue's withdrawal fee (in base
   units, valued at the buy price); without it both venues are assumed to hold inventory.
4. **Lifetime.** An opportunity opens at the first quote with ``net_bps > min_net_bps`` and
   ``size > 0``, is updated while it stays so (figures: the latest; ``best_net_bps``: the best
   seen), and closes at the first quote that ends it (or makes a leg stale); its duration is
   ``end_ts - start_ts`` in quote time. Each open, change and close is an
   :class:`ArbitrageEvent`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tradeloop.errors import ConfigError

EventKind = Literal["opened", "updated", "closed"]


@dataclass(frozen=True, kw_only=True, slots=True)
class TopOfBook:
    """A venue's best bid and ask for a symbol at ``ts`` (epoch ms)."""

    venue: str
    symbol: str
    ts: int
    bid: float
    bid_size: float
    ask: float
    ask_size: float


class ArbitrageConfig(BaseModel):
    """Fees, transfer costs and thresholds (module rule 3)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    taker_fees: dict[str, float] = Field(description="venue -> taker fee rate (0.001 is 0.1%)")
    transfer: bool = Field(default=False, description="True: the bought asset is withdrawn to the selling venue")
    withdrawal_fees: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="venue -> asset -> withdrawal fee in units of the asset"
    )
    min_net_bps: float = Field(default=0.0, description="an opportunity needs a net spread above this")
    max_size: float | None = Field(default=None, gt=0, description="base amount taken at most")
    max_quote_age_ms: int = Field(default=2_000, ge=0)

    def taker(self, venue: str) -> float:
        if venue not in self.taker_fees:
            raise ConfigError(
                f"taker_fees has no fee for venue={venue!r}; add it (e.g. taker_fees={{{venue!r}: 0.001}}), "
                "from ccxt's markets[symbol]['taker']"
            )
        return self.taker_fees[venue]

    def withdrawal(self, venue: str, asset: str) -> float:
        if not self.transfer:
            return 0.0
        fee = self.withdrawal_fees.get(venue, {}).get(asset)
        if fee is None:
            raise ConfigError(
                f"transfer=True needs withdrawal_fees[{venue!r}][{asset!r}] (the fee to withdraw {asset} from "
                f"{venue}, in {asset}); add it or set transfer=False"
            )
        return fee


@dataclass(frozen=True, kw_only=True, slots=True)
class Opportunity:
    """Buy ``symbol`` on ``buy_venue``, sell it on ``sell_venue`` (module rules 3 and 4)."""

    symbol: str
    buy_venue: str
    sell_venue: str
    start_ts: int
    end_ts: int | None
    last_ts: int  # the quote time of the latest figures
    buy_price: float
    sell_price: float
    size: float
    gross_bps: float
    net_bps: float
    net_profit: float
    best_net_bps: float
    transfer: bool

    @property
    def duration_ms(self) -> int:
        """Quote time from the start to the end (to the latest quote while still open)."""
        return (self.end_ts if self.end_ts is not None else self.last_ts) - self.start_ts

    def event(self) -> dict:
        """As published on the bus."""
        return {
            "symbol": self.symbol, "buy_venue": self.buy_venue, "sell_venue": self.sell_venue,
            "start_ts": self.start_ts, "end_ts": self.end_ts, "duration_ms": self.duration_ms,
            "buy_price": self.buy_price, "sell_price": self.sell_price, "size": self.size,
            "gross_bps": self.gross_bps, "net_bps": self.net_bps, "net_profit": self.net_profit,
            "best_net_bps": self.best_net_bps, "transfer": self.transfer,
        }  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True)
class ArbitrageEvent:
    kind: EventKind
    opportunity: Opportunity


@dataclass(frozen=True, kw_only=True, slots=True)
class Quote:
    """What buying on one venue and selling on another yields now (rule 3)."""

    buy: TopOfBook
    sell: TopOfBook
    size: float
    gross_bps: float
    net_bps: float
    net_profit: float


def quote(buy: TopOfBook, sell: TopOfBook, config: ArbitrageConfig) -> Quote:
    """The spreads of buying at ``buy``'s ask and selling at ``sell``'s bid (rule 3)."""
    size = min(buy.ask_size, sell.bid_size, config.max_size if config.max_size is not None else float("inf"))
    size = max(size, 0.0)
    gross = (sell.bid - buy.ask) / buy.ask * 1e4
    per_unit = sell.bid * (1 - config.taker(sell.venue)) - buy.ask * (1 + config.taker(buy.venue))
    base = buy.symbol.split("/")[0]
    profit = size * per_unit - config.withdrawal(buy.venue, base) * buy.ask
    net = profit / (size * buy.ask) * 1e4 if size > 0 else float("-inf")
    return Quote(buy=buy, sell=sell, size=size, gross_bps=gross, net_bps=net, net_profit=profit)


class ArbitrageScanner:
    """Keeps every venue's latest top of book per symbol and reports opportunities (module rules)."""

    def __init__(self, config: ArbitrageConfig):
        self.config = config
        self._tops: dict[str, dict[str, TopOfBook]] = {}  # symbol -> venue -> latest
        self._open: dict[tuple[str, str, str], Opportunity] = {}  # (symbol, buy, sell) -> open opportunity

    def open_opportunities(self) -> list[Opportunity]:
        return list(self._open.values())

    def update(self, top: TopOfBook) -> list[ArbitrageEvent]:
        """Take ``top`` (a venue's newer quote) and return what it opened, changed or closed."""
        if not (top.bid > 0 and top.ask > 0):
            raise ConfigError(f"a top of book needs positive prices; got bid={top.bid}, ask={top.ask} from {top.venue}")
        tops = self._tops.setdefault(top.symbol, {})
        previous = tops.get(top.venue)
        if previous is not None and previous.ts > top.ts:
            return []  # an older quote than the one held
        tops[top.venue] = top
        newest = max(t.ts for t in tops.values())
        fresh = {v: t for v, t in tops.items() if newest - t.ts <= self.config.max_quote_age_ms}
        events: list[ArbitrageEvent] = []
        for buy_venue, sell_venue in itertools.permutations(sorted(tops), 2):
            key = (top.symbol, buy_venue, sell_venue)
            current = self._open.get(key)
            q = None
            if buy_venue in fresh and sell_venue in fresh:
                q = quote(fresh[buy_venue], fresh[sell_venue], self.config)
            good = q is not None and q.size > 0 and q.net_bps > self.config.min_net_bps
            if current is not None and not good:
                closed = replace(current, end_ts=newest, last_ts=newest)
                del self._open[key]
                events.append(ArbitrageEvent(kind="closed", opportunity=closed))
            elif good and q is not None:
                if current is None:
                    opened = Opportunity(
                        symbol=top.symbol, buy_venue=buy_venue, sell_venue=sell_venue, start_ts=newest, end_ts=None,
                        last_ts=newest, buy_price=q.buy.ask, sell_price=q.sell.bid, size=q.size,
                        gross_bps=q.gross_bps, net_bps=q.net_bps, net_profit=q.net_profit, best_net_bps=q.net_bps,
                        transfer=self.config.transfer,
                    )  # fmt: skip
                    self._open[key] = opened
                    events.append(ArbitrageEvent(kind="opened", opportunity=opened))
                    continue
                changed = replace(
                    current, last_ts=newest, buy_price=q.buy.ask, sell_price=q.sell.bid, size=q.size,
                    gross_bps=q.gross_bps, net_bps=q.net_bps, net_profit=q.net_profit,
                    best_net_bps=max(current.best_net_bps, q.net_bps),
                )  # fmt: skip
                self._open[key] = changed
                if _figures(changed) != _figures(current):
                    events.append(ArbitrageEvent(kind="updated", opportunity=changed))
        return events


def _figures(o: Opportunity) -> tuple[float, ...]:
    return o.buy_price, o.sell_price, o.size, o.net_bps
