"""The engine's life around its bars: start or resume, trade the feed, wait out a lost
database, keep the heartbeat, exit (``LiveEngine`` inherits :class:`EngineLifecycle`).

After a crash the session resumes after ``last_bar_ts``; open orders are reconciled with
the broker (the paper broker's book is rebuilt from the database; a venue is asked about
an order that may have been sent, never sent it twice; one it cannot resolve halts its symbol).

The operational database going away is survived the same way, without the crash: a lost
connection (``tradeloop.ops.database.is_connection_error``) anywhere in a bar means its
transaction did not commit, so none of its orders is sent. The engine waits, pinging with
exponential backoff and full jitter (``db_retry_base_s`` .. ``db_retry_cap_s``, forever
unless ``stop`` is set), then resumes as a restart would: the session, cash and positions
re-read from the database, the rolling window cut back to the last committed bar, open
orders reconciled, the engine locks verified, and the feed read again after ``last_bar_ts``.
Redis going away only delays the relay: trading goes on.

Liveness: ``sessions.heartbeat_at`` is written with every bar and every ``heartbeat_s``
between bars, and cleared when the engine exits (``tradeloop.ops.status``). A replay that
reaches the end of its data marks the session ``finished``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import polars as pl
from sqlalchemy.orm import Session

from live.adaptation import ThresholdAdaptation
from live.brokers.base import Broker, OrderState
from live.engine_config import EngineConfig, risk_state_of
from live.engine_metrics import observe_bar, start_metrics
from live.feeds.base import FEED_ENDED, STOPPED, CandleBatch, Feed, next_or_stop
from live.locks import EngineLocks
from live.models import ModelSlot
from live.outage import DatabaseWatch
from live.outbox import OutboxRelay
from live.reconcile import recover_orders
from live.slices import SliceStage
from live.venues import key_of
from tradeloop.observability import SessionMetrics
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.ops.database import is_connection_error
from tradeloop.portfolio import Portfolio
from tradeloop.risk import RiskConfig, RiskState

log = logging.getLogger(__name__)


class EngineLifecycle:
    """Run, resume, heartbeat and exit; the bar itself is :meth:`on_batch` (``live.engine``)."""

    store: OpsStore
    session: TradingSession
    broker: Broker
    config: EngineConfig
    locks: EngineLocks | None
    relay: OutboxRelay
    database: DatabaseWatch
    portfolio: Portfolio
    risk_config: RiskConfig
    risk_state: RiskState
    last: dict[str, float]
    window: pl.DataFrame
    metrics: SessionMetrics
    slot: ModelSlot
    slices: SliceStage
    _wake: asyncio.Event

    async def on_batch(self, batch: CandleBatch) -> bool:  # the bar: live.engine
        raise NotImplementedError

    def _apply(self, db: Session, state: OrderState) -> None:  # a broker's report stored: live.engine
        raise NotImplementedError

    async def run(self, feed: Feed, *, max_bars: int | None = None, stop: asyncio.Event | None = None) -> None:
        """Trade ``feed`` until it ends (a replay: the session is then ``finished``), this call
        processed ``max_bars`` bars, ``stop`` is set or the session is stopped (``tradeloop
        live stop``; the heartbeat notices it between bars). A lost database is waited out
        (module rules), not raised. ``stop`` also ends a wait for the next bar (follow mode)."""
        stop = stop or asyncio.Event()
        start_metrics(self)  # the session's Prometheus series (live.engine_metrics), removed at exit
        helpers = [asyncio.create_task(self._beat_forever(stop))]
        if self.config.publish:
            helpers.append(asyncio.create_task(self.relay.serve(self._wake)))
        done = [0]
        try:
            while not await self._trade(feed, done=done, max_bars=max_bars, stop=stop):
                pass
        finally:
            self.relay.closing = True
            self._wake.set()
            for task in helpers:
                task.cancel()
            await asyncio.wait(helpers, timeout=10)  # a swallowed cancel ends on the flag
            try:
                await self._goodbye()
            finally:
                self.metrics.stop()

    async def _trade(self, feed: Feed, *, done: list[int], max_bars: int | None, stop: asyncio.Event | None) -> bool:
        """Resume, then trade; True when the run is over, False after a database outage."""
        try:
            await self._resume()
            batches = feed.batches(after_ts=self.session.last_bar_ts)
            async with contextlib.aclosing(batches):  # type: ignore[type-var]  # feeds are async generators
                while (batch := await next_or_stop(batches, stop)) is not FEED_ENDED:
                    if batch is STOPPED:
                        return True
                    if self.window.is_empty():
                        self.window = feed.history(before_ts=batch.ts, bars=self.config.window_bars)
                    if not await self.on_batch(batch):
                        return True
                    observe_bar(self, batch)
                    done[0] += 1
                    if (max_bars is not None and done[0] >= max_bars) or (stop is not None and stop.is_set()):
                        return True
            if self.store.finish(self.session.id):  # a replay reached the end of its data
                self.session.status = "finished"
                log.info("session %s: finished (the end of its data)", self.session.name)
            return True
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            await self.database.wait(exc, stop=stop, session=self.session.name)
            return stop is not None and stop.is_set()

    async def _resume(self) -> None:
        """Where the last committed bar left off: session, cash, positions, window, open orders."""
        if self.locks is not None:
            self.locks.verify()
        self.session = self.store.session(self.session.name)
        if self.session.status == "finished":  # new data since: trade on
            self.session = self.store.set_status(self.session.name, "running")
        if (outage := self.database.take_outage()) is not None:
            self.report("database_outage", **outage)
        stored = self.store.position_rows(self.session.id)
        self.portfolio = Portfolio.from_rows(self.session.cash, stored, venue=self.session.exchange)
        self.risk_state = risk_state_of(self.session, self.risk_config)  # as the last committed bar left it
        venue = self.session.exchange
        self.last.update({key_of(venue, p.instrument): p.last_price for p in stored if p.last_price is not None})
        last_ts = self.session.last_bar_ts
        # the learner as the committed bars left it (a bar that did not commit had moved it): it
        # rebuilds from the database at its next bar, by the replay a research run calls
        self.adaptation = ThresholdAdaptation(store=self.store, session=self.session)
        if not self.window.is_empty():  # a bar that did not commit comes again
            self.window = pl.DataFrame() if last_ts is None else self.window.filter(pl.col("ts") <= last_ts)
        await self.reconcile()
        self._wake.set()  # what an earlier run or an outage left in the outbox

    async def _beat_forever(self, stop: asyncio.Event) -> None:
        """Every ``heartbeat_s``: the heartbeat, and ``stop`` set once the session is stopped."""
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            try:
                self.store.beat(self.session.id)
                self.metrics.heartbeat()
                if self._status() == "stopped":  # `tradeloop live stop` while waiting for a bar
                    stop.set()
            except Exception as exc:  # noqa: BLE001 - the bar path handles an outage; never die here
                log.warning("session %s: heartbeat not written: %s", self.session.name, exc)

    async def _goodbye(self) -> None:
        """Exit: relay what is left (best effort: what the bus refuses waits in the outbox for
        the next run) and clear the heartbeat (readers see ``stale``), whatever the relay did."""
        try:
            if self.config.publish:
                await self.relay.flush()
        except Exception as exc:  # noqa: BLE001 - an exit never fails on the bus; the rows stay
            log.warning("session %s: exit with events left in the outbox: %s", self.session.name, exc)
        try:
            if self.session.status != "finished":
                self.store.beat(self.session.id, alive=False)
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            log.warning("session %s: exit without clearing the heartbeat: %s", self.session.name, exc)

    async def reconcile(self) -> None:
        """Bring open orders in line with the broker after a (re)start: never a second create;
        an outcome still unknown halts its symbol (``live.reconcile``). Each capital slice's book
        is rebuilt from its fills first: its orders' reports go to it (``live.slice_venue``)."""
        self.slices.reload(self.session)
        await recover_orders(self.store, self.broker, self.session.id, apply=self._apply)

    def report(self, event: str, **detail: object) -> None:
        """Record something that happened outside a bar (a stale feed, say) in the audit log."""
        with self.store.transaction() as db:
            OpsStore.audit(db, event, session_id=self.session.id, detail=dict(detail))

    def _status(self) -> str:
        with self.store.transaction() as db:
            return OpsStore.session_row(db, self.session.id).status
