"""A broker on USDⓈ-M perpetuals (ccxt ``binanceusdm``): the ccxt broker's orders (sent at most
once, resolved when unknown, canceled), plus what a perpetual needs.

Rules:

* Each instrument trades under an explicit :class:`PerpInstrument` (leverage, margin mode):
  before its first order the broker sets the margin mode, then the leverage (the venue's
  "no need to change" counts as set), never trusting the account's defaults. An order on an
  instrument without a config, or whose settings the venue refuses, is ``rejected`` unsent;
  a reduce-only order still goes out (closing exposure never waits on a setting).
* Symbols: ``BTC-USDT``, ``BTC-USDT-PERP`` and ``BTC/USDT:USDT`` all name the linear
  perpetual settled in its quote asset; instruments are ``InstrumentId(venue, 'BTC/USDT:USDT')``.
* A sell without a position opens a short. ``reduce_only`` is sent as ``reduceOnly``: the venue
  refuses one that would grow the position (-2022) and never lets one flip it.
* Stop and take-profit orders are Binance algo orders (``clientAlgoId`` = the client order
  id). Until they fire they are ``acknowledged``; once fired, their state is that of the
  order the venue placed for them (``actualOrderId``, which becomes ``venue_order_id`` so
  its trades are attributed).
* A market order sized by ``quote_amount`` is sized at the mark price.
* Funding (:meth:`PerpsBroker.funding_payments`): the account's FUNDING_FEE income as
  :class:`FundingPayment` cash flows (positive: received), each id (the venue's ``tranId``)
  reported once, across pages and across calls whose ``since_ms`` does not go back (ids are
  remembered back to the last call's ``since_ms``, so memory stays bounded; the operational
  database should store them unique by id too).
* Positions (:meth:`PerpsBroker.positions`): :class:`PerpPosition` with the venue's entry,
  mark and liquidation prices, and the leverage and margin mode in force on the venue.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import ccxt.async_support as ccxt
from pydantic import BaseModel, ConfigDict, Field

from live.brokers.base import OrderRequest, OrderState
from live.brokers.ccxt_broker import CcxtBroker, CcxtBrokerConfig
from tradeloop.data.schema import ccxt_symbol
from tradeloop.errors import BrokerError, ConfigError, VenueUnreachableError
from tradeloop.trading import InstrumentId, OrderStatus, OrderType

log = logging.getLogger(__name__)
FUNDING_PAGE = 1000  # Binance's largest income page


class PerpInstrument(BaseModel):
    """How one perpetual is traded: set on the venue before its first order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    leverage: int = Field(ge=1, le=125, description="initial leverage the venue applies, e.g. 3")
    margin_mode: Literal["isolated", "cross"] = Field(
        description="'isolated': the position's margin is its own (a liquidation takes only it); 'cross': the wallet's"
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class FundingPayment:
    """One funding settlement as a cash flow in the settle asset (``amount`` > 0: received)."""

    instrument: InstrumentId
    amount: float
    asset: str
    ts: int
    id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class PerpPosition:
    """A position as the venue reports it; ``quantity`` is signed (short < 0)."""

    instrument: InstrumentId
    quantity: float
    entry_price: float
    mark_price: float | None
    liquidation_price: float | None  # None: the venue reports none (e.g. fully collateralised)
    unrealized_pnl: float
    margin_mode: str | None
    leverage: float | None
    ts: int


def perp_symbol(symbol: str) -> str:
    """``BTC-USDT`` / ``BTC-USDT-PERP`` / ``BTC/USDT:USDT`` -> ``BTC/USDT:USDT`` (linear, settled in the quote)."""
    unified = ccxt_symbol(symbol)
    return unified if ":" in unified else f"{unified}:{unified.split('/')[1]}"


class PerpsBroker(CcxtBroker):
    #: balances are margin (wallet + unrealised P&L), not the session's holdings: the run-time
    #: check (``live.reconcile``) compares positions instead (``live.perps_reconcile``)
    margin_account = True

    def __init__(
        self,
        exchange: ccxt.Exchange,
        *,
        instruments: Mapping[str, PerpInstrument],
        config: CcxtBrokerConfig | None = None,
    ):
        super().__init__(exchange, config=config)
        self.instruments = {perp_symbol(s): spec for s, spec in instruments.items()}
        self._configured: set[str] = set()
        self._funding_seen: dict[str, int] = {}  # tranId -> ts, back to the oldest since_ms asked for

    def unified(self, symbol: str) -> str:
        return perp_symbol(symbol)

    def instrument(self, symbol: str) -> InstrumentId:
        return InstrumentId(self.venue, self.unified(symbol))

    # ------------------------------------------------------------------ settings
    async def configure(self, symbol: str) -> None:
        """Set ``symbol``'s margin mode, then its leverage, from its :class:`PerpInstrument`.
        Raises ``ConfigError`` without one, ``BrokerError`` when the venue refuses a setting,
        ``VenueUnreachableError`` when it cannot be asked."""
        unified = self.unified(symbol)
        spec = self.instruments.get(unified)
        if spec is None:
            raise ConfigError(f"no PerpInstrument for {unified}; add it to the broker's instruments")
        await self._read(self.exchange.load_markets)
        try:
            await self.exchange.set_margin_mode(spec.margin_mode, unified)
        except ccxt.MarginModeAlreadySet:
            pass
        except ccxt.OperationFailed as exc:
            raise VenueUnreachableError(f"margin mode of {unified}: {type(exc).__name__}: {exc}"[:160]) from exc
        except ccxt.ExchangeError as exc:
            raise BrokerError(f"{unified}: the venue refused margin mode {spec.margin_mode} ({exc})"[:200]) from exc
        try:
            await self.exchange.set_leverage(spec.leverage, unified)
        except ccxt.OperationFailed as exc:
            raise VenueUnreachableError(f"leverage of {unified}: {type(exc).__name__}: {exc}"[:160]) from exc
        except ccxt.ExchangeError as exc:
            raise BrokerError(f"{unified}: the venue refused leverage {spec.leverage} ({exc})"[:200]) from exc
        self._configured.add(unified)

    async def _before_create(self, order: OrderRequest, symbol: str) -> None:
        if symbol in self._configured:
            return
        try:
            await self.configure(symbol)
        except VenueUnreachableError:
            if not order.reduce_only:
                raise
        except (ConfigError, BrokerError) as exc:
            if not order.reduce_only:
                raise BrokerError(f"order {order.client_order_id} not sent: {exc}") from exc
            log.warning("%s: settings not confirmed (%s); reduce-only %s sent", symbol, exc, order.client_order_id)

    async def _reference_price(self, symbol: str) -> float | None:
        ticker = await self._read(lambda: self.exchange.fetch_mark_price(symbol))
        return float(ticker.get("markPrice") or 0.0) or None

    def _lookup(self, order: OrderRequest) -> dict[str, Any]:
        return {"trigger": True} if OrderType(order.order_type) in (OrderType.STOP, OrderType.TAKE_PROFIT) else {}

    async def _state(self, order: OrderRequest, symbol: str, reply: dict) -> OrderState:
        info = reply.get("info") or {}
        if "algoStatus" not in info and "algoId" not in info:
            return await super()._state(order, symbol, reply)
        if info.get("algoStatus") not in ("TRIGGERED", "FINISHED"):  # waiting, canceled or expired
            return await super()._state(order, symbol, reply)
        actual = str(info.get("actualOrderId") or "")
        if not actual:
            return OrderState(order.client_order_id, OrderStatus.ACKNOWLEDGED, venue_order_id=str(reply.get("id")))
        try:
            placed = await self._read(lambda: self.exchange.fetch_order(actual, symbol))
        except ccxt.OrderNotFound:
            reason = f"fired; its order {actual} not visible yet"
            return OrderState(order.client_order_id, OrderStatus.ACKNOWLEDGED, venue_order_id=actual, reason=reason)
        return await super()._state(order, symbol, placed)

    # ------------------------------------------------------------------ the account
    async def open_orders(self, symbol: str) -> set[str]:
        unified = self.unified(symbol)
        plain = await self._read(lambda: self.exchange.fetch_open_orders(unified))
        algo = await self._read(lambda: self.exchange.fetch_open_orders(unified, params={"trigger": True}))
        return {o.get("clientOrderId") for o in [*plain, *algo]}

    async def funding_payments(self, symbol: str, *, since_ms: int) -> list[FundingPayment]:
        """Funding settled on ``symbol`` at or after ``since_ms``, oldest first, each id once."""
        unified, instrument = self.unified(symbol), self.instrument(symbol)
        await self._read(self.exchange.load_markets)
        asset = self.exchange.market(unified)["settle"]
        rows: dict[str, dict] = {}
        cursor = since_ms
        while True:
            page = await self._read(
                partial(self.exchange.fetch_funding_history, unified, since=cursor, limit=FUNDING_PAGE)
            )
            fresh = [r for r in page if str(r["id"]) not in rows]
            rows.update((str(r["id"]), r) for r in fresh)
            if len(page) < FUNDING_PAGE:
                break
            newest = max(int(r["timestamp"]) for r in page)
            cursor = newest if fresh else newest + 1  # inclusive start: the overlap is dropped by id
        out = [
            FundingPayment(instrument=instrument, amount=float(r["amount"]), asset=asset, ts=int(r["timestamp"]), id=i)
            for i, r in rows.items()
            if i not in self._funding_seen
        ]
        self._funding_seen.update((p.id, p.ts) for p in out)  # older ids cannot come back for a later since
        self._funding_seen = {i: ts for i, ts in self._funding_seen.items() if ts >= since_ms}
        return sorted(out, key=lambda p: (p.ts, p.id))

    async def positions(self, symbols: Sequence[str] | None = None) -> list[PerpPosition]:
        """Open positions (all, or on ``symbols``) with the leverage and margin mode in force."""
        await self._read(self.exchange.load_markets)
        unified = [self.unified(s) for s in symbols] if symbols else None
        rows = await self._read(lambda: self.exchange.fetch_positions(unified))
        settings = await self._read(lambda: self.exchange.fetch_leverages(unified))
        out = []
        for p in rows:
            contracts = float(p.get("contracts") or 0.0) * float(p.get("contractSize") or 1.0)
            if contracts == 0.0:
                continue
            setting = settings.get(p["symbol"]) or {}
            out.append(
                PerpPosition(
                    instrument=InstrumentId(self.venue, p["symbol"]),
                    quantity=-contracts if p.get("side") == "short" else contracts,
                    entry_price=float(p["entryPrice"]),
                    mark_price=_number(p.get("markPrice")),
                    liquidation_price=_number(p.get("liquidationPrice")),
                    unrealized_pnl=float(p.get("unrealizedPnl") or 0.0),
                    margin_mode=setting.get("marginMode") or p.get("marginMode"),
                    leverage=_number(setting.get("longLeverage") or p.get("leverage")),
                    ts=int(p.get("timestamp") or 0),
                )
            )
        return out


def _number(value: object) -> float | None:
    return float(value) if value not in (None, "", 0, 0.0) else None  # type: ignore[arg-type]
