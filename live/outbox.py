"""The transactional outbox relay: events committed with their bar reach the bus afterwards.

Rules:

* The engine writes every event for the bus (candles, signals, orders, fills) as an
  ``outbox`` row inside the transaction of the bar that produced it (``OpsStore.add_event``):
  an event exists exactly when its bar committed. The bus is never written inside a bar.
* :meth:`OutboxRelay.relay` publishes the session's unrelayed rows in id order (the commit
  order within a session: one engine per session, one bar at a time) with
  ``bus.publish_once(mark=<session mark>, seq=<outbox id>, session_id=...)``, then stamps them
  ``relayed_at``; the entry names its session for readers outside the engine (the API's WebSocket).
  The bus records the highest id published per mark in the same atomic step as the append, so
  a relay that dies between publishing and stamping (crash, database lost) repeats nothing
  when it runs again: every row appears on its stream once.
* The engine never waits for the bus: :meth:`OutboxRelay.serve` runs beside it as a task,
  woken after every committed bar. Redis down (connection refused, timeout) or refusing writes
  (an error reply: out of memory, read-only, MISCONF): the relay stops
  for now and is not tried again before a backoff (exponential, full jitter, capped at
  ``retry_cap_s``) has passed; the engine keeps trading and the rows wait in the outbox. A
  later relay, the final one when the engine exits, or the next run of the session catches
  up. One relay at a time per session. The latest-price hash is a cache, not an event: the
  newest prices are written after each relay while the bus is up, best effort.
* Relayed rows are kept ``keep_s`` (a day by default, for inspection) and then deleted by the
  relay, at most once an hour. Unrelayed rows are never deleted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import timedelta

from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from live.bus import EventBus
from live.feeds.base import CandleBatch
from tradeloop.ops import OpsStore, Order, TradingSession
from tradeloop.ops.database import is_connection_error
from tradeloop.ops.models import OutboxEvent, utcnow
from tradeloop.retry import backoff_delay

log = logging.getLogger(__name__)

#: the bus cannot take events now: unreachable, or refusing writes (out of memory, read-only
#: replica, MISCONF): every Redis error waits in the outbox, none stops the engine
BUS_DOWN: tuple[type[BaseException], ...] = (RedisError, OSError)
PRUNE_EVERY_S = 3600.0


def outbox_mark(session: TradingSession) -> str:
    """The name under which the bus remembers the session's last relayed outbox id: the
    session's id and creation time, so a recreated database never collides with an old mark."""
    created = session.created_at
    stamp = created.strftime("%Y%m%d%H%M%S%f") if created is not None else "0"
    return f"{session.id}-{stamp}"


class OutboxRelay:
    """Relays one session's outbox rows to ``bus`` (see the module rules)."""

    def __init__(
        self,
        store: OpsStore,
        bus: EventBus,
        *,
        session_id: int,
        mark: str,
        batch: int = 500,
        retry_base_s: float = 0.5,
        retry_cap_s: float = 30.0,
        keep_s: float = 86_400.0,
        rng: random.Random | None = None,
    ):
        self.store, self.bus, self.session_id, self.mark = store, bus, session_id, mark
        self.batch, self.retry_base_s, self.retry_cap_s, self.keep_s = batch, retry_base_s, retry_cap_s, keep_s
        self.rng = rng or random.Random()
        self.failures = 0  # bus failures in a row
        self.relayed = 0  # rows stamped by this relay
        self._retry_at = 0.0  # monotonic time before which the bus is not tried again
        self._pruned_at: float | None = None
        self._prices: dict[str, tuple[float, int]] = {}
        self.behind = False  # the last relay left rows unrelayed (the bus failed)
        self.closing = False

    async def serve(self, wake: asyncio.Event) -> None:
        """Relay each time ``wake`` is set (the engine sets it after a bar commits), not before
        the backoff after a bus failure has passed; until ``closing`` is set (redis-py may swallow
        a task cancellation mid-command, so a flag ends the loop). A lost database is left to the
        engine (its bar path waits it out and wakes this again)."""
        self.closing = False
        while not self.closing:
            await wake.wait()
            if not self.up and not self.closing:
                await asyncio.sleep(self._retry_at - time.monotonic())
            wake.clear()
            if self.closing:
                return
            try:
                await self.flush(force=False)
            except Exception as exc:
                if is_connection_error(exc):
                    log.warning(
                        "outbox relay: operational database lost (%s); the engine resumes it",
                        str(exc).strip().splitlines()[0][:200],
                    )
                else:  # a bug: say so loudly, keep the engine trading, try again later
                    log.exception("outbox relay failed; events wait in the outbox")
                    self._failed(exc)
                continue
            if self.behind:  # the bus went away with rows left: again after the backoff, bar or no bar
                wake.set()

    async def flush(self, *, force: bool = True) -> int:
        """:meth:`relay`, then the newest staged prices (while the bus is up)."""
        stamped = await self.relay(force=force)
        if self._prices and self.up:
            prices, self._prices = self._prices, {}
            await self.set_prices(prices)
        return stamped

    def stage_prices(self, prices: dict[str, tuple[float, int]]) -> None:
        """The newest prices, written to the bus's price cache after the next relay."""
        self._prices.update(prices)

    @property
    def up(self) -> bool:
        """False while backing off after a bus failure."""
        return time.monotonic() >= self._retry_at

    async def relay(self, *, force: bool = False) -> int:
        """Publish every unrelayed row of the session and stamp it; the number stamped. Does
        nothing while backing off, unless ``force``. A lost database propagates (the engine
        retries); a lost bus is logged and backed off."""
        if not (force or self.up):
            self.behind = True
            return 0
        stamped, self.behind = 0, False
        while True:
            events = self.store.unrelayed_events(self.session_id, limit=self.batch)
            if not events:
                break
            done = await self.publish(events)
            self.store.mark_relayed(done)
            stamped += len(done)
            if len(done) < len(events):  # the bus went away midway
                self.behind = True
                break
        self.relayed += stamped
        self._prune()
        return stamped

    async def publish(self, events: list[OutboxEvent]) -> list[int]:
        """Publish ``events`` in order (repeats are ignored by the bus); the ids handled
        before the bus failed, if it did."""
        done: list[int] = []
        try:
            for event in events:
                await self.bus.publish_once(
                    event.stream, event.payload, mark=self.mark, seq=event.id, session_id=event.session_id
                )
                done.append(event.id)
        except BUS_DOWN as exc:
            self._failed(exc)
            return done
        if self.failures:
            log.warning("event bus back after %d failed relay(s)", self.failures)
        self.failures, self._retry_at = 0, 0.0
        return done

    async def set_prices(self, prices: dict[str, tuple[float, int]]) -> None:
        """The latest-price cache: best effort, only while the bus is up."""
        if not self.up:
            return
        try:
            await self.bus.set_prices(prices)
        except BUS_DOWN as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        wait = backoff_delay(self.failures, base=self.retry_base_s, cap=self.retry_cap_s, rng=self.rng)
        self._retry_at = time.monotonic() + wait
        log.warning(
            "event bus unreachable (%s: %s); events wait in the outbox, next try in %.2fs",
            type(exc).__name__,
            exc,
            wait,
        )

    def _prune(self) -> None:
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        self.store.prune_outbox(relayed_before=utcnow() - timedelta(seconds=self.keep_s))


def add_bar_events(
    db: Session, session_id: int, batch: CandleBatch, signals: list[tuple[str, int]], orders: list[Order]
) -> None:
    """The bar's events for the bus (candles, signals, orders), in its transaction; fills are
    added where they are stored (``LiveEngine._apply``)."""
    OpsStore.add_event(
        db,
        "candles",
        {"ts": batch.ts, "symbols": batch.candles["symbol"].to_list(), "close": batch.candles["close"].to_list()},
        session_id=session_id,
    )
    if signals:
        OpsStore.add_event(
            db, "signals", {"ts": batch.ts, "signals": [[s, f] for s, f in signals]}, session_id=session_id
        )
    for order in orders:
        OpsStore.add_event(
            db,
            "orders",
            {"client_order_id": order.client_order_id, "symbol": order.symbol, "side": order.side, "ts": batch.ts},
            session_id=session_id,
        )
