"""One broker over several venues: each order goes to the broker of its instrument's venue.

A session on several venues (``live.venues``) names each instrument by its key: ``BTC-BUSD`` on
the session's own exchange, ``okx:BTC-USDT`` on OKX. :class:`BrokerRouter` is the engine's one
``Broker`` (and ``VenueAccount``) for such a session:

* **Routing.** An order, a cancel, a recovery, a query or a read of the account on a key goes to
  the broker of the key's venue, with the venue's own symbol (``okx:BTC-USDT`` -> the OKX broker,
  ``BTC-USDT``); what comes back names the key again, so orders, fills and positions stay the
  session's. A key whose venue has no broker is refused before anything is sent (``rejected``,
  nothing went out) or, for a read, raises ``BrokerError`` naming the venues it has.
* **Reports merge.** ``on_bar`` gathers every venue's ended orders; ``balances`` sums each
  asset over the venues (the session's positions are the sum of what it holds on each);
  ``open_orders`` and ``trades`` are the key's venue's.
* **Each venue's rules.** Precision and minimums (``market_rules``), dust (``is_dust``),
  fees (``fees``: taker and maker rates) and assets come from each venue's own ccxt markets,
  keyed by the session's keys.
* **A create still goes out at most once**: the router adds no retry; each venue's broker keeps
  its own rule (``live.brokers.ccxt_broker``). A cancel-replace (``replace``, a protective leg
  moved) goes to the venue's broker, the old and new order on one venue; orders on two venues
  are refused with nothing sent (``rejected``), and a cancel or create that raises is ``unknown``.
* **Market questions** of a key (``live.leg_actions``: native order types, price ticks) go to its
  venue's broker with the venue's symbol (:meth:`BrokerRouter.venue_broker`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import replace
from typing import Any

from live.brokers.base import Broker, MarketAssets, OrderRequest, OrderState, VenueAccount, VenueTrade
from live.feeds.base import CandleBatch
from live.venues import instrument_of
from tradeloop.errors import BrokerError, ConfigError
from tradeloop.risk import MarketRules
from tradeloop.trading import InstrumentId, OrderStatus


class BrokerRouter:
    """The brokers of a session's venues behind one ``Broker`` (module rules).

    Parameters
    ----------
    brokers
        Each venue's broker by ccxt exchange id, e.g. ``{"binance": ..., "okx": ...}``.
    default_venue
        The session's exchange: its keys are plain symbols. It has a broker only when a symbol
        is on it (``okx:BTC-USDT`` alone under ``--exchange binance`` trades on OKX only).
    """

    venue = "router"

    def __init__(self, brokers: Mapping[str, Broker], *, default_venue: str):
        if not brokers:
            raise ConfigError("a router needs at least one venue's broker")
        wrong = {v: b.venue for v, b in brokers.items() if b.venue != v}
        if wrong:
            raise ConfigError(f"brokers are keyed by a venue other than their own: {wrong}; key each by its venue")
        self.brokers = dict(brokers)
        self.default_venue = default_venue

    # ------------------------------------------------------------------ routing
    def instrument(self, key: str) -> InstrumentId:
        return instrument_of(self.default_venue, key)

    def venue_for(self, instrument: InstrumentId) -> str:
        """The venue an order of ``instrument`` is sent to (``live.venues.sent_to``)."""
        self._broker(instrument.venue)
        return instrument.venue

    def venue_broker(self, key: str) -> tuple[Any, str]:
        """The broker of ``key``'s venue and the venue's symbol (``okx:BTC-USDT`` -> OKX's, ``BTC-USDT``)."""
        inst = self.instrument(key)
        return self._broker(inst.venue), inst.symbol

    def _broker(self, venue: str) -> Any:
        broker = self.brokers.get(venue)
        if broker is None:
            raise BrokerError(
                f"no broker for venue {venue!r}; this session trades on {', '.join(sorted(self.brokers))}"
            )
        return broker

    def _route(self, order: OrderRequest) -> tuple[Any, OrderRequest]:
        inst = self.instrument(order.symbol)
        return self._broker(inst.venue), replace(order, symbol=inst.symbol)

    def _back(self, key: str, state: OrderState) -> OrderState:
        """``state`` naming the session's key (its fills were reported with the venue's symbol)."""
        return replace(state, fills=tuple(replace(f, symbol=key) for f in state.fills))

    async def _send(self, order: OrderRequest, call: str, **kwargs: Any) -> OrderState:
        try:
            broker, routed = self._route(order)
        except BrokerError as exc:
            return OrderState(order.client_order_id, OrderStatus.REJECTED, reason=f"{exc}; nothing went out"[:200])
        return self._back(order.symbol, await getattr(broker, call)(routed, **kwargs))

    # ------------------------------------------------------------------ Broker
    async def submit(self, order: OrderRequest) -> OrderState:
        return await self._send(order, "submit")

    async def recover(self, order: OrderRequest, *, sent: bool, since_ms: int) -> OrderState:
        return await self._send(order, "recover", sent=sent, since_ms=since_ms)

    async def cancel(self, order: OrderRequest) -> OrderState:
        broker, routed = self._route(order)
        return self._back(order.symbol, await broker.cancel(routed))

    async def replace(self, old: OrderRequest, new: OrderRequest) -> tuple[OrderState, OrderState]:
        """Cancel-replace on the orders' venue (module rules): its broker's ``replace``, or else
        the cancel, and the create only once the cancel came back ``canceled``. Orders on two
        venues (or one without a broker) are refused with nothing sent: ``old`` as its venue
        shows it (``acknowledged`` if it cannot say), ``new`` rejected. A cancel or create that
        raises is ``unknown`` (never resent), as ``live.leg_actions`` has it."""
        try:
            broker, routed_old = self._route(old)
            new_broker, routed_new = self._route(new)
        except BrokerError as exc:
            return await self._refused(old, new, str(exc))
        if new_broker is not broker:
            why = f"{old.symbol} and {new.symbol} are on different venues; a replace stays on one"
            return await self._refused(old, new, why, broker=broker, routed_old=routed_old)
        move = getattr(broker, "replace", None)
        if move is not None:
            gone, placed = await move(routed_old, routed_new)
        else:
            gone = await _unknown_if_raises(old, broker.cancel(routed_old))
            placed = (
                await _unknown_if_raises(new, broker.submit(routed_new))
                if gone.status == OrderStatus.CANCELED.value
                else OrderState(new.client_order_id, OrderStatus.REJECTED, reason="not sent: the cancel is not proven")
            )
        return self._back(old.symbol, gone), self._back(new.symbol, placed)

    async def _refused(
        self, old: OrderRequest, new: OrderRequest, why: str, *, broker: Any = None, routed_old: Any = None
    ) -> tuple[OrderState, OrderState]:
        """A replace refused before anything went out: ``old`` as its venue shows it, ``new`` rejected."""
        rejected = OrderState(new.client_order_id, OrderStatus.REJECTED, reason=f"{why}; nothing went out"[:200])
        current = None
        if broker is not None and hasattr(broker, "query"):
            try:
                current = await broker.query(routed_old)
            except Exception:  # noqa: BLE001 - the venue check asks again; nothing was sent
                current = None
        if current is None:
            current = OrderState(old.client_order_id, OrderStatus.ACKNOWLEDGED, reason=f"not canceled: {why}"[:200])
        return self._back(old.symbol, current), rejected

    async def on_bar(self, batch: CandleBatch, *, cash: float) -> list[OrderState]:
        ended = await asyncio.gather(*(b.on_bar(batch, cash=cash) for b in self.brokers.values()))
        return [state for states in ended for state in states]

    def is_dust(self, symbol: str, quantity: float) -> bool:
        inst = self.instrument(symbol)
        return bool(self._broker(inst.venue).is_dust(inst.symbol, quantity))

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self.brokers.values()))

    # ------------------------------------------------------------------ VenueAccount
    async def resolve(self, order: OrderRequest, *, since_ms: int) -> OrderState:
        broker, routed = self._route(order)
        return self._back(order.symbol, await broker.resolve(routed, since_ms=since_ms))

    async def query(self, order: OrderRequest) -> OrderState | None:
        broker, routed = self._route(order)
        found = await broker.query(routed)
        return None if found is None else self._back(order.symbol, found)

    async def open_orders(self, symbol: str) -> set[str]:
        inst = self.instrument(symbol)
        return set(await self._broker(inst.venue).open_orders(inst.symbol))

    async def trades(self, symbol: str, *, after_trade_id: str | None) -> list[VenueTrade]:
        inst = self.instrument(symbol)
        rows = await self._broker(inst.venue).trades(inst.symbol, after_trade_id=after_trade_id)
        return [replace(t, symbol=symbol) for t in rows]

    async def balances(self) -> dict[str, float]:
        """Each asset's total over the venues (module rules)."""
        accounts = [b for b in self.brokers.values() if isinstance(b, VenueAccount)]
        total: dict[str, float] = {}
        for balance in await asyncio.gather(*(b.balances() for b in accounts)):
            for asset, amount in balance.items():
                total[asset] = total.get(asset, 0.0) + amount
        return total

    async def assets(self, symbol: str) -> MarketAssets:
        inst = self.instrument(symbol)
        return await self._broker(inst.venue).assets(inst.symbol)

    # ------------------------------------------------------------------ each venue's rules
    def market_rules(self, symbols: list[str]) -> dict[str, MarketRules]:
        """Each key's precision and minimums from its venue's ccxt markets (those loaded)."""
        out: dict[str, MarketRules] = {}
        for venue, broker in self.brokers.items():
            rules = getattr(broker, "market_rules", None)
            mine = {self.instrument(k).symbol: k for k in symbols if self.instrument(k).venue == venue}
            if rules is not None and mine:
                out |= {mine[s]: r for s, r in rules(list(mine)).items()}
        return out

    def fees(self, symbols: list[str]) -> dict[str, tuple[float, float]]:
        """Each key's (taker, maker) fee rate from its venue's ccxt market (those loaded)."""
        out: dict[str, tuple[float, float]] = {}
        for key in symbols:
            inst = self.instrument(key)
            broker = self._broker(inst.venue)
            exchange = getattr(broker, "exchange", None)
            markets = getattr(exchange, "markets", None) or {}
            market = markets.get(broker.unified(inst.symbol)) if exchange is not None else None
            if market is not None:
                out[key] = (float(market["taker"]), float(market["maker"]))
        return out


async def _unknown_if_raises(request: OrderRequest, call: Awaitable[OrderState]) -> OrderState:
    """``call``'s state, or ``unknown`` (never resent) when it raises (``live.leg_actions``' rule)."""
    try:
        return await call
    except Exception as exc:  # noqa: BLE001 - its outcome is unknown: the venue check resolves it
        return OrderState(request.client_order_id, OrderStatus.UNKNOWN, reason=f"failed: {exc}; never resent"[:200])
