"""The live engine: on every closed bar, the research decision, sizing, orders and fills.

Per bar (one ``CandleBatch`` with every symbol's closed candle):

1. Pick up a promotion or rollback between bars (``ModelSlot.refresh``).
2. The broker reports orders that ended with this bar (paper: filled at its open).
3. One database transaction: store those fills (at most once), positions and cash, mark
   equity at the close, decide on a rolling window of every symbol at once with the same
   ``tradeloop`` code as research (``decide``), write the new orders (status ``new``) and
   ``last_bar_ts``. Orders are committed before anything is sent.
4. Send the orders; store what the broker answered. Publish events to the bus.

After a crash the session resumes after ``last_bar_ts``; open orders are reconciled with
the broker (the paper broker's book is rebuilt from the database; a venue is queried by
client order id, never sent an order twice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import polars as pl
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from live.brokers.base import Broker
from live.bus import EventBus
from live.feeds.base import CandleBatch, Feed, last_bars
from live.models import ModelSlot
from live.orders import apply_state, intents, new_order, request_of
from tradeloop.backtest import BacktestConfig
from tradeloop.errors import ConfigError
from tradeloop.ops import OpsStore, Order, Position, ThresholdInForce, TradingSession
from tradeloop.ops.models import EquityPoint
from tradeloop.ops.store import OPEN_STATUSES
from tradeloop.strategies.signals import ENTRIES
from tradeloop.thresholds.decide import decide

log = logging.getLogger(__name__)


class EngineConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    window_bars: int = Field(default=400, ge=10, description="bars of history per symbol each decision sees")
    publish: bool = True


def check_live_config(backtest: BacktestConfig) -> None:
    """What the live engine can trade today: spot, long only, market orders, fixed fraction."""
    unsupported = {k: getattr(backtest, k) for k in ("stop_loss", "take_profit", "trailing_stop")
                   if getattr(backtest, k) is not None}
    if unsupported:
        raise ConfigError(f"live trading does not place stop orders yet; unset {sorted(unsupported)} "
                          "in the session's backtest config")
    if backtest.sizing != "fixed_fraction":
        raise ConfigError(f"sizing={backtest.sizing!r} is not supported live; use sizing='fixed_fraction'")


@dataclass
class Latency:
    """Nanoseconds from a bar's arrival to its decision and to its orders being committed."""

    decision: list[int] = field(default_factory=list)
    stored: list[int] = field(default_factory=list)


class LiveEngine:
    def __init__(self, *, store: OpsStore, session: TradingSession, broker: Broker, bus: EventBus,
                 slot: ModelSlot, backtest: BacktestConfig, config: EngineConfig | None = None):
        check_live_config(backtest)
        if slot.current.strategy.rule.allow_short:
            raise ConfigError("live trading is spot and long only; use a rule with allow_short=False")
        self.store, self.session, self.broker, self.bus, self.slot = store, session, broker, bus, slot
        self.backtest, self.config = backtest, config or EngineConfig()
        self.cash = session.cash
        stored = store.positions(session.id)
        self.positions = {s: p.quantity for s, p in stored.items()}
        self.last: dict[str, float] = {s: p.last_price for s, p in stored.items() if p.last_price is not None}
        self.window = pl.DataFrame()
        self.latency = Latency()
        self.bars = 0

    # ------------------------------------------------------------------ lifecycle
    async def run(self, feed: Feed, *, max_bars: int | None = None, stop: asyncio.Event | None = None) -> None:
        """Trade ``feed`` until it ends, this call processed ``max_bars`` bars, ``stop`` is set
        or the session is stopped (``tradeloop live stop``)."""
        self.session = self.store.session(self.session.name)  # where the last run left off
        await self.reconcile()
        done = 0
        async for batch in feed.batches(after_ts=self.session.last_bar_ts):
            if self.window.is_empty():
                self.window = feed.history(before_ts=batch.ts, bars=self.config.window_bars)
            if not await self.on_batch(batch):
                break
            done += 1
            if (max_bars is not None and done >= max_bars) or (stop is not None and stop.is_set()):
                break

    async def reconcile(self) -> None:
        """Bring open orders in line with the broker after a (re)start."""
        for order in self.store.orders(self.session.id, statuses=OPEN_STATUSES):
            state = await self.broker.recover(request_of(order), acknowledged=order.status != "new")
            with self.store.transaction() as db:
                self._apply(db, state)
                OpsStore.audit(db, "order_reconciled", session_id=self.session.id,
                               detail={"client_order_id": order.client_order_id, "status": state.status})

    # ------------------------------------------------------------------ one bar
    async def on_batch(self, batch: CandleBatch) -> bool:
        status = self._status()
        if status == "stopped":
            return False
        changed = self.slot.refresh(batch.ts)
        ended = await self.broker.on_bar(batch, cash=self.cash)
        self.window = self._roll(batch.candles)
        closes = batch.candles.select("symbol", "close").rows()
        self.last.update(closes)
        orders: list[Order] = []
        signals: list[tuple[str, int]] = []
        with self.store.transaction() as db:
            if changed:
                self._record_threshold(db)
            for state in ended:
                self._apply(db, state)
            equity = self.cash
            for symbol, q in self.positions.items():
                if q:
                    equity += q * self.last[symbol]
                    db.get(Position, (self.session.id, symbol)).last_price = self.last[symbol]
            db.add(EquityPoint(session_id=self.session.id, ts=batch.ts, equity=equity, cash=self.cash))
            if status == "running":
                signals = self._decide(batch.ts)
                self.latency.decision.append(time.perf_counter_ns() - batch.received_ns)
                for symbol, flags in signals:
                    held = self.positions.get(symbol, 0.0)
                    held = 0.0 if self.broker.is_dust(symbol, held) else held  # unsellable remainder
                    for intent in intents(flags, symbol=symbol, position=held, equity=equity,
                                          fraction=self.backtest.fraction):
                        orders.append(new_order(db, session_id=self.session.id, venue=self.broker.venue,
                                                ts=batch.ts, intent=intent))
            db.flush()  # order ids for the audit rows
            for order in orders:
                OpsStore.audit(db, "order_decided", session_id=self.session.id, order_id=order.id,
                               detail={"symbol": order.symbol, "side": order.side, "quantity": order.quantity,
                                       "quote_amount": order.quote_amount})
            row = db.get(TradingSession, self.session.id)
            row.cash, row.last_bar_ts = self.cash, batch.ts
        self.latency.stored.append(time.perf_counter_ns() - batch.received_ns)
        self.session.last_bar_ts, self.session.status = batch.ts, status
        if orders:
            await self._send(orders)
        if self.config.publish:
            await self._publish(batch, signals, orders, ended)
        self.bars += 1
        return True

    def _decide(self, ts: int) -> list[tuple[str, int]]:
        """(symbol, signal flags) of every symbol with a candle at ``ts``, all in one computation."""
        inforce = self.slot.current
        if inforce.model is not None:
            decided = decide(self.window, inforce.model, now_ms=ts)
        else:  # reduce-only: the strategy's exits, never an entry
            decided = inforce.strategy.signals(self.window, by="symbol").with_columns(
                pl.col("signal") & pl.lit(~ENTRIES, dtype=pl.Int8))
        last = decided.filter(pl.col("ts") == ts).select("symbol", "signal").sort("symbol")
        return [(s, int(f)) for s, f in last.rows() if f]

    def _roll(self, candles: pl.DataFrame) -> pl.DataFrame:
        frame = pl.concat([self.window, candles], how="vertical_relaxed") if not self.window.is_empty() else candles
        return last_bars(frame, self.config.window_bars)

    def _apply(self, db, state) -> None:
        delta, fills = apply_state(db, state, session_id=self.session.id, venue=self.broker.venue)
        self.cash += delta
        for fill in fills:  # the stored position is the one truth (orders.apply_state updated it)
            self.positions[fill.symbol] = db.get(Position, (self.session.id, fill.symbol)).quantity

    async def _send(self, orders: list[Order]) -> None:
        states = [await self.broker.submit(request_of(o)) for o in orders]
        with self.store.transaction() as db:
            for state in states:
                self._apply(db, state)
            db.get(TradingSession, self.session.id).cash = self.cash

    def _record_threshold(self, db) -> None:
        now = self.slot.current
        known = now.threshold == now.threshold  # NaN: no model ever loaded, no p* known
        db.add(ThresholdInForce(session_id=self.session.id, source=now.source, artifact=now.artifact,
                                threshold=now.threshold if known else None, reason=now.reason[:200]))
        OpsStore.audit(db, "model_swapped" if now.model is not None else "model_fallback",
                       session_id=self.session.id, detail={"artifact": now.artifact, "reason": now.reason})
        log.info("session %s: entries now decided by %s (%s)", self.session.name, now.source, now.reason)

    def report(self, event: str, **detail: object) -> None:
        """Record something that happened outside a bar (a stale feed, say) in the audit log."""
        with self.store.transaction() as db:
            OpsStore.audit(db, event, session_id=self.session.id, detail=dict(detail))

    def _status(self) -> str:
        with self.store.transaction() as db:
            return db.scalar(select(TradingSession.status).where(TradingSession.id == self.session.id))

    async def _publish(self, batch: CandleBatch, signals: list[tuple[str, int]], orders: list[Order],
                       ended) -> None:
        await self.bus.publish("candles", {"ts": batch.ts, "symbols": batch.candles["symbol"].to_list(),
                                           "close": batch.candles["close"].to_list()})
        if signals:
            await self.bus.publish("signals", {"ts": batch.ts, "signals": [[s, f] for s, f in signals]})
        await self.bus.set_prices({s: (c, batch.ts) for s, c in batch.candles.select("symbol", "close").rows()})
        for order in orders:
            await self.bus.publish("orders", {"client_order_id": order.client_order_id, "symbol": order.symbol,
                                              "side": order.side, "ts": batch.ts})
        for state in ended:
            for fill in state.fills:
                await self.bus.publish("fills", {"client_order_id": fill.client_order_id, "symbol": fill.symbol,
                                                 "side": fill.side, "qty": fill.quantity, "price": fill.price})
