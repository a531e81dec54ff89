"""Paper broker: fills with the backtest's rules (``tradeloop.backtest.kernel``), bar by bar.

Built from the session's ``BacktestConfig`` (:meth:`PaperBroker.of`), it replays every rule
of the kernel for the orders the engine sends, in the kernel's order within each bar (the
symbol's candle at ``ts``; a symbol without one keeps its orders for its next candle):

0. **Replaced limit entries.** A limit entry whose symbol had a new signal since it was
   sent (``on_decision``, ``live.entries`` rule 3) is canceled at the symbol's next candle.
1. **Exits at the open**, every symbol before any entry, in symbol order: reduce-only market
   orders fill their quantity at ``open * (1 -/+ slippage)`` (sell/buy), whatever the cash.
   An exit closes the symbol's protection (its legs are canceled).
2. **Market entries at the open**, in symbol order: buys at ``open * (1 + slippage)``, short
   sales at ``open * (1 - slippage)``, for ``min(quote_amount / price, cash / (price * (1 +
   fee)))`` units (shorts: the same cap, as collateral); nothing to spend: ``rejected``.
3. **Limit entries** rest ``limit_ttl_bars`` of the symbol's candles from the first one after
   they were sent: ``limit_fill_price`` (the queue rule) says where a candle fills them, at no
   slippage and the maker fee, for ``min(quantity, cash / (fill * (1 + maker fee)))``;
   unfilled after their last candle: ``expired``; no cash at the fill: ``rejected``.
4. **Protection** (``live.protection``): an entry's legs, derived from its client id
   (``live.protection.child_order_id``), are inactive until it fills, then ``acknowledged``; a
   :class:`~live.protection.Guard` checks them on the fill's bar and every later one and
   reports the exit as the fill of the leg the kernel names, its siblings ``canceled``.
   An entry that does not fill cancels its legs.

5. **Capital slices** (``live.slices``): each slice has its own book (:meth:`PaperBroker.slice_book`,
   a child broker with the same rules, its own cash and protection), found by the client id
   prefix of its orders (``live.orders.slice_prefix``): :meth:`submit`, :meth:`recover`,
   :meth:`query` and :meth:`cancel` of such an order go to it. The slice stage fills a slice's
   book with the slice's cash (its ``on_bar``); this book's :meth:`on_bar` fills its own.

The fee is ``fee_rate * notional`` on every fill but limit fills (maker fee). Stops use the
ATR the engine reports after each decision (``on_decision``); an entry keeps the one of its
decision bar. The book lives in memory: after a restart it is rebuilt from the database's
open orders (``recover``), an entry with its legs; a leg whose entry filled before the
restart cannot be rebuilt (its peak, entry price and ATR are gone) and is ``canceled``
(logged). A bar that comes again (its transaction did not commit: a lost database) starts
over from the book as it found it the first time. The parity tests hold this module to the
compiled kernel, fill by fill.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from live.brokers.base import FillReport, OrderRequest, OrderState
from live.feeds.base import CandleBatch
from live.protection import Guard, child_order_id, protective_kinds
from tradeloop.backtest import BacktestConfig, limit_fill_price
from tradeloop.portfolio import DUST_ABS
from tradeloop.trading import PROTECTIVE_KINDS, OrderIntentKind, OrderSide, OrderType

log = logging.getLogger(__name__)
FILL_RULES = (  # the config fields this broker's fills depend on
    "fee_rate",
    "slippage",
    "stop_loss",
    "take_profit",
    "trailing_stop",
    "atr_stop",
    "atr_trailing",
    "entry_order",
    "limit_offset",
    "limit_ttl_bars",
    "maker_fee_rate",
)


@dataclass(slots=True, kw_only=True)
class _Booked:
    """An order in the paper book, with what its fill needs beyond the request."""

    request: OrderRequest
    legs: dict[OrderIntentKind, str] = field(default_factory=dict)  # an entry's protective legs
    entry_atr: float | None = None  # the ATR at its decision bar's close
    candles_left: int = 0  # a limit entry: the symbol's candles it still rests

    @property
    def side(self) -> OrderSide:
        return OrderSide(self.request.side)

    @property
    def symbol(self) -> str:
        return self.request.symbol


class PaperBroker:
    """The paper venue (module rules). ``rules`` brings the session's stops and limit-entry
    options (``None``: market orders only, no stops); ``fee_rate`` and ``slippage`` win over
    its own."""

    venue = "paper"

    def __init__(self, *, fee_rate: float, slippage: float = 0.0, rules: BacktestConfig | None = None):
        self.fee_rate, self.slippage = fee_rate, slippage
        self.config = (rules or BacktestConfig()).model_copy(update={"fee_rate": fee_rate, "slippage": slippage})
        maker = self.config.maker_fee_rate
        self.maker_fee = fee_rate if maker is None else maker
        self.kinds = protective_kinds(self.config)
        self.book: dict[str, _Booked] = {}
        self.guards: dict[str, Guard] = {}  # symbol -> its filled entry's protection
        self._atr: dict[str, float | None] = {}
        self._replaced: set[str] = set()  # limit entries a later signal cancels
        self._reports: list[OrderState] = []  # ends decided between bars, reported with the next one
        self._start: _Checkpoint | None = None  # the book as the last bar found it
        self.slices: dict[str, PaperBroker] = {}  # client id prefix -> a capital slice's book (rule 5)

    @classmethod
    def of(cls, config: BacktestConfig) -> PaperBroker:
        """The paper broker of a session whose fills follow ``config``."""
        return cls(fee_rate=config.fee_rate, slippage=config.slippage, rules=config)

    def replays(self, config: BacktestConfig) -> bool:
        """True when this broker fills as a backtest with ``config`` does (``FILL_RULES``)."""
        return all(getattr(self.config, k) == getattr(config, k) for k in FILL_RULES)

    def slice_book(self, prefix: str) -> PaperBroker:
        """The book of the capital slice whose orders' client ids start with ``prefix`` (rule 5),
        made the first time it is asked for."""
        if prefix not in self.slices:
            self.slices[prefix] = PaperBroker(fee_rate=self.fee_rate, slippage=self.slippage, rules=self.config)
        return self.slices[prefix]

    def _slice_of(self, client_order_id: str) -> PaperBroker | None:
        return next((b for p, b in self.slices.items() if client_order_id.startswith(p)), None)

    # ------------------------------------------------------------------ the Broker protocol
    async def submit(self, order: OrderRequest) -> OrderState:
        cid = order.client_order_id
        if (book := self._slice_of(cid)) is not None:
            return await book.submit(order)
        if _is_leg(order):
            if self._owner_of(cid) is not None:
                return OrderState(cid, "acknowledged", venue_order_id=f"paper-{cid}")
            log.warning("paper broker: protective order %s has no entry in the book (lost at a restart)", cid)
            return OrderState(cid, "canceled", reason="its entry is not in the paper book (lost at a restart)")
        booked = _Booked(request=order)
        if not order.reduce_only:
            booked.legs = {kind: child_order_id(cid, kind) for kind in self.kinds}
            booked.entry_atr = self._atr.get(order.symbol)
            if order.order_type == OrderType.LIMIT:
                booked.candles_left = self.config.limit_ttl_bars
        self.book[cid] = booked
        return OrderState(cid, "acknowledged", venue_order_id=f"paper-{cid}")

    async def recover(self, order: OrderRequest, *, sent: bool, since_ms: int) -> OrderState:
        return await self.submit(order)  # the paper book lives in memory: rebuild it from the database

    async def query(self, client_order_id: str, symbol: str) -> OrderState:
        if (book := self._slice_of(client_order_id)) is not None:
            return await book.query(client_order_id, symbol)
        known = client_order_id in self.book or self._owner_of(client_order_id) is not None
        return OrderState(client_order_id, "acknowledged" if known else "unknown")

    async def cancel(self, order: OrderRequest) -> OrderState:
        """An order still in the book is canceled at once (an entry's legs with it, reported
        with the next bar); a leg alone leaves the others; one not in the book is already over."""
        cid = order.client_order_id
        if (book := self._slice_of(cid)) is not None:
            return await book.cancel(order)
        booked = self.book.pop(cid, None)
        self._replaced.discard(cid)
        if booked is not None:
            self._reports += _ended(booked.legs.values(), "its entry was canceled")
            return OrderState(cid, "canceled", reason="canceled before its fill")
        owner = self._owner_of(cid)
        if owner is not None:
            kind = next(k for k, c in owner.legs.items() if c == cid)
            del owner.legs[kind]
            if isinstance(owner, Guard):  # the position keeps its other legs only
                owner.config = _without(owner.config, owner.legs)
            return OrderState(cid, "canceled", reason="canceled before it triggered")
        return OrderState(cid, "unknown", reason="not in the paper book")

    def on_decision(self, *, atr: Mapping[str, float | None], signalled: Iterable[str]) -> None:
        """The engine's decision at a close (``live.entries.DecisionListener``)."""
        self._atr.update(atr)
        symbols = set(signalled)
        self._replaced |= {
            cid
            for cid, b in self.book.items()
            if b.request.order_type == OrderType.LIMIT and not b.request.reduce_only and b.symbol in symbols
        }

    async def on_bar(self, batch: CandleBatch, *, cash: float) -> list[OrderState]:
        self._checkpoint(batch.ts)
        done, self._reports = self._reports, []
        if not self.book and not self.guards:
            return done
        bars = {
            s: (o, h, lo)
            for s, o, h, lo in batch.candles.select("symbol", "open", "high", "low").iter_rows()
            if o is not None
        }
        ready = sorted((b for b in self.book.values() if b.symbol in bars), key=lambda b: b.symbol)
        for b in [b for b in ready if b.request.client_order_id in self._replaced]:  # 0.
            self._drop(b, done, "canceled", "a new signal of its symbol replaced it")
        ready = [b for b in ready if b.request.client_order_id in self.book]
        for b in [b for b in ready if b.request.reduce_only]:  # 1. exits at the open
            cash = self._fill_exit(b, bars[b.symbol][0], cash, done, batch.ts)
        for b in [b for b in ready if not b.request.reduce_only and b.request.order_type != OrderType.LIMIT]:
            cash = self._fill_entry(b, bars[b.symbol][0], cash, done, batch.ts)  # 2. entries at the open
        for b in [b for b in ready if b.request.order_type == OrderType.LIMIT]:  # 3. resting limit entries
            cash = self._rest(b, bars[b.symbol], cash, done, batch.ts)
        for symbol in sorted(s for s in self.guards if s in bars):  # 4. protection on the bar's range
            self._guard(self.guards[symbol], bars[symbol], done, batch.ts)
        return done

    def is_dust(self, symbol: str, quantity: float) -> bool:
        # the backtest trades any amount; a remainder within the portfolio's dust is flat there too
        return quantity <= DUST_ABS

    async def close(self) -> None:
        return None

    # ------------------------------------------------------------------ the bar's steps
    def _fill_exit(self, b: _Booked, open_: float, cash: float, done: list[OrderState], ts: int) -> float:
        del self.book[b.request.client_order_id]
        px = open_ * (1.0 - self.slippage) if b.side is OrderSide.SELL else open_ * (1.0 + self.slippage)
        qty = b.request.quantity or 0.0  # exits always carry their quantity
        done.append(self._filled(b.request.client_order_id, b.symbol, b.side, qty, px, self.fee_rate, ts))
        guard = self.guards.pop(b.symbol, None)
        if guard is not None:
            done += _ended(guard.legs.values(), f"the position was closed by {b.request.client_order_id}")
        return cash - b.side.sign * qty * px - qty * px * self.fee_rate

    def _fill_entry(self, b: _Booked, open_: float, cash: float, done: list[OrderState], ts: int) -> float:
        px = open_ * (1.0 + self.slippage) if b.side is OrderSide.BUY else open_ * (1.0 - self.slippage)
        req = b.request
        wanted = req.quote_amount / px if req.quote_amount is not None else (req.quantity or 0.0)
        return self._open(b, min(wanted, cash / (px * (1.0 + self.fee_rate))), px, self.fee_rate, cash, done, ts)

    def _rest(self, b: _Booked, bar: tuple[float, float, float], cash: float, done: list[OrderState], ts: int) -> float:
        open_, high, low = bar
        fill = limit_fill_price(b.side, b.request.price or 0.0, open_, high, low)
        if fill is None:
            b.candles_left -= 1
            if b.candles_left <= 0:
                self._drop(b, done, "expired", f"not filled in {self.config.limit_ttl_bars} candle(s)")
            return cash
        qty = min(b.request.quantity or 0.0, cash / (fill * (1.0 + self.maker_fee)))
        return self._open(b, qty, fill, self.maker_fee, cash, done, ts, fresh=True)

    def _open(
        self,
        b: _Booked,
        qty: float,
        px: float,
        fee_rate: float,
        cash: float,
        done: list[OrderState],
        ts: int,
        *,
        fresh: bool = False,
    ) -> float:
        if not qty > 0.0:  # nothing to spend: the order lapses, as in the backtest
            self._drop(b, done, "rejected", "no cash at the fill")
            return cash
        del self.book[b.request.client_order_id]
        self._replaced.discard(b.request.client_order_id)
        done.append(self._filled(b.request.client_order_id, b.symbol, b.side, qty, px, fee_rate, ts))
        if b.legs:
            self.guards[b.symbol] = Guard(
                symbol=b.symbol,
                side=b.side,
                quantity=qty,
                entry_price=px,
                entry_atr=b.entry_atr,
                legs=dict(b.legs),
                config=_without(self.config, b.legs),
                fresh=fresh,
            )
            done += [OrderState(cid, "acknowledged", venue_order_id=f"paper-{cid}") for cid in b.legs.values()]
        return cash - b.side.sign * qty * px - qty * px * fee_rate

    def _guard(self, guard: Guard, bar: tuple[float, float, float], done: list[OrderState], ts: int) -> None:
        open_, high, low = bar
        hit = guard.on_bar(open_=open_, high=high, low=low, prev_atr=self._atr.get(guard.symbol))
        if hit is None:
            return
        del self.guards[guard.symbol]
        done.append(
            self._filled(
                hit.client_order_id, guard.symbol, guard.exit_side, guard.quantity, hit.price, self.fee_rate, ts
            )
        )
        siblings = [cid for cid in guard.legs.values() if cid != hit.client_order_id]
        done += _ended(siblings, f"{hit.kind} {hit.client_order_id} filled")

    # ------------------------------------------------------------------ helpers
    def _drop(self, b: _Booked, done: list[OrderState], status: str, reason: str) -> None:
        self.book.pop(b.request.client_order_id, None)
        self._replaced.discard(b.request.client_order_id)
        done.append(OrderState(b.request.client_order_id, status, reason=reason))
        done += _ended(b.legs.values(), f"its entry was {status}: {reason}")

    def _owner_of(self, leg: str) -> _Booked | Guard | None:
        """The booked entry or the guard that holds the leg ``leg`` (or held it when the last
        bar started: that bar may come again)."""
        owners: list[_Booked | Guard] = [*self.book.values(), *self.guards.values()]
        if self._start is not None:
            owners += [*self._start.book.values(), *self._start.guards.values()]
        return next((owner for owner in owners if leg in owner.legs.values()), None)

    def _checkpoint(self, ts: int) -> None:
        """Keep the book as bar ``ts`` finds it. The same bar again means the engine's transaction
        for it did not commit (a lost database, ``live.engine``): what it reported never happened,
        so the bar starts over from that book (re-sent orders of the database are in it already)."""
        if self._start is not None and self._start.ts == ts:
            self.book, self.guards = self._start.copy_book(), self._start.copy_guards()
            self._replaced, self._reports = set(self._start.replaced), list(self._start.reports)
            return
        self._start = _Checkpoint(
            ts=ts, book=self.book, guards=self.guards, replaced=set(self._replaced), reports=list(self._reports)
        )
        self._start = replace(self._start, book=self._start.copy_book(), guards=self._start.copy_guards())

    @staticmethod
    def _filled(cid: str, symbol: str, side: OrderSide, qty: float, px: float, fee_rate: float, ts: int) -> OrderState:
        fill = FillReport(cid, symbol, side.value, f"paper-{cid}", qty, px, qty * px * fee_rate, ts)
        return OrderState(cid, "filled", fills=(fill,))


@dataclass(frozen=True, kw_only=True, slots=True)
class _Checkpoint:
    ts: int
    book: dict[str, _Booked]
    guards: dict[str, Guard]
    replaced: set[str]
    reports: list[OrderState]

    def copy_book(self) -> dict[str, _Booked]:
        return {cid: replace(b, legs=dict(b.legs)) for cid, b in self.book.items()}

    def copy_guards(self) -> dict[str, Guard]:
        return {s: replace(g, legs=dict(g.legs)) for s, g in self.guards.items()}


def _is_leg(order: OrderRequest) -> bool:
    return order.reduce_only and order.order_type in (OrderType.STOP, OrderType.TAKE_PROFIT)


def _ended(legs: Iterable[str], reason: str) -> list[OrderState]:
    return [OrderState(cid, "canceled", reason=reason[:200]) for cid in legs]


_OPTIONS = {
    OrderIntentKind.STOP_LOSS: ("stop_loss", "atr_stop"),
    OrderIntentKind.TRAILING_STOP: ("trailing_stop", "atr_trailing"),
    OrderIntentKind.TAKE_PROFIT: ("take_profit",),
}


def _without(config: BacktestConfig, legs: Mapping[OrderIntentKind, str]) -> BacktestConfig:
    """``config`` with the options of the legs a position no longer has turned off."""
    off = [name for kind in PROTECTIVE_KINDS if kind not in legs for name in _OPTIONS[kind]]
    return config.model_copy(update=dict.fromkeys(off)) if off else config
