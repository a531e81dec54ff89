"""The engine's figures into its session's Prometheus series (``tradeloop.observability.engine``
states the rules): started with the run, one report per committed bar, read back from the
database at each scrape, removed at exit. Called from the engine's I/O layer
(``live.engine_lifecycle``) only: nothing here is on the decision's path.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from live.feeds.base import CandleBatch
from tradeloop.data.schema import timeframe_ms
from tradeloop.observability import BarFigures, SessionState
from tradeloop.ops import OpsStore, Order
from tradeloop.trading import OrderStatus

if TYPE_CHECKING:
    from live.engine_lifecycle import EngineLifecycle

STATE_TTL_S = 1.0  # one scrape reads the database once for its three gauges


def start_metrics(engine: EngineLifecycle) -> None:
    """The session's info, zeros and database gauges, as its engine starts trading."""
    session = engine.session
    engine.metrics.start(
        timeframe=session.timeframe,
        bar_interval_s=timeframe_ms(session.timeframe) / 1000,
        mode=session.mode,
        strategy=session.strategy,
        state=StateReader(engine.store, session.id),
    )


def observe_bar(engine: EngineLifecycle, batch: CandleBatch) -> None:
    """A committed bar: bar count and time, each instrument's arrival, the heartbeat, the book,
    the risk state and the model in force."""
    portfolio, model = engine.portfolio, engine.slot.current.model
    equity = portfolio.equity()
    engine.metrics.bar(
        BarFigures(
            ts_ms=batch.ts,
            symbols=batch.candles["symbol"].to_list(),
            equity=equity,
            cash=portfolio.cash,
            drawdown=engine.risk_state.drawdown,
            gross_exposure=portfolio.gross_exposure(),
            net_exposure=portfolio.net_exposure(),
            open_positions=portfolio.open_positions(),
            kill_switch_tripped=engine.risk_state.tripped is not None,
            model_age_s=None if model is None else (batch.ts - model.trained_until) / 1000,
            model_max_age_s=None if model is None else model.max_age_ms / 1000,
        )
    )


class StateReader:
    """The session's unknown orders, halted symbols and pending ack, read at most once per
    ``STATE_TTL_S`` (a scrape asks three times)."""

    def __init__(self, store: OpsStore, session_id: int):
        self.store, self.session_id = store, session_id
        self._lock = threading.Lock()
        self._read: tuple[float, SessionState] | None = None

    def __call__(self) -> SessionState:
        with self._lock:
            if self._read is None or time.monotonic() - self._read[0] > STATE_TTL_S:
                self._read = (time.monotonic(), self._query())
            return self._read[1]

    def _query(self) -> SessionState:
        with self.store.transaction() as db:
            unknown = db.scalar(
                select(func.count())
                .select_from(Order)
                .where(Order.session_id == self.session_id, Order.status == OrderStatus.UNKNOWN.value)
            )
            row = OpsStore.session_row(db, self.session_id)
            return SessionState(
                unknown_orders=int(unknown or 0),
                halted_symbols=len(row.halted or {}),
                needs_ack=row.needs_ack is not None,
            )
