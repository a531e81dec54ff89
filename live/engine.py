"""The live engine: on every closed bar, the research decision, sizing, orders and fills.

Per bar (one ``CandleBatch`` with every symbol's closed candle):

1. Pick up a promotion or rollback between bars (``ModelSlot.refresh``).
2. The broker reports orders that ended with this bar (paper: filled at its open). On a
   venue, every ``venue_check_every_bars`` bars, open orders, fills and balances are
   reconciled first (``live.reconcile``).
3. One database transaction: store those fills (at most once), positions and cash, mark
   equity at the close, decide on a rolling window of every symbol at once with the same
   ``tradeloop`` code as research (``decide``), write the new orders (status ``new``) and
   ``last_bar_ts``. Orders are committed before anything is sent. A halted symbol, or a
   session awaiting ``tradeloop live ack``, gets no entry (reduce-only: exits pass).
   The bar's events for the bus (candle, signals, orders, fills) and the heartbeat are
   written in that same transaction (the outbox, ``live.outbox``).
   Between decide and persist, the risk stage (``live.risk_stage``): the kill switch on the
   bar's equity, then every intent through the pre-trade checks. Challengers named with a
   ``capital_share`` trade real slices of the capital beside the champion's book, through the
   same stages (``live.slices``).
4. Commit ``sent_at_ms``, send the orders (each create at most once), store what the broker
   answered; an outcome still unknown halts its symbol. Then the order manager: a venue's
   protective legs (``live.venue_protection``), orders past their age or cancel pending, limit
   entries past their TTL (``live.order_manager``). Relay the outbox to the bus.

With ``adapt_thresholds``, after settle and before decide, closed trades' outcomes move the
threshold in force (``live.adaptation``); each entry's model probability is in its
``order_decided`` audit row.

Start, resume after a crash or a lost database, heartbeat and exit: ``live.engine_lifecycle``;
order rows, sends and broker reports: ``live.engine_orders``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import polars as pl

from live.adaptation import ThresholdAdaptation
from live.brokers.base import Broker, OrderState
from live.brokers.paper import PaperBroker
from live.bus import EventBus
from live.engine_config import (
    EngineConfig,
    Latency,
    check_live_config,
    check_window,
    risk_config_of,
    risk_state_of,
)
from live.engine_lifecycle import EngineLifecycle
from live.engine_orders import EngineOrders
from live.entries import EntryPlanner, can_short
from live.feeds.base import CandleBatch, roll_window
from live.funding import FundingVenue, record_funding, record_liquidation_prices
from live.locks import EngineLocks
from live.models import ModelSlot
from live.order_manager import cancel_stale, expire_entries
from live.outage import DatabaseWatch
from live.outbox import OutboxRelay, add_bar_events, outbox_mark
from live.protection import protective_kinds
from live.reconcile import VenueCheck
from live.risk_stage import kill_switch, portfolio_snapshot, pre_trade
from live.shadow import ShadowStage
from live.slice_venue import cap_entries, committed, sum_books
from live.slices import SliceStage
from live.venue_protection import VenueProtection
from live.venues import instrument_of, key_of
from tradeloop.backtest import BacktestConfig
from tradeloop.bus import price_key
from tradeloop.errors import ConfigError
from tradeloop.observability import SessionMetrics
from tradeloop.ops import OpsStore, Order, Position, TradingSession
from tradeloop.ops.database import is_connection_error
from tradeloop.ops.models import EquityPoint, utcnow
from tradeloop.portfolio import Portfolio
from tradeloop.risk import MarketRules, PortfolioSnapshot
from tradeloop.strategies.signals import ENTRIES
from tradeloop.thresholds.decide import apply_model, enrich_latest
from tradeloop.trading import InstrumentId, OrderIntent

log = logging.getLogger(__name__)

__all__ = ["EngineConfig", "LiveEngine", "check_live_config", "check_window", "risk_config_of", "risk_state_of"]


class LiveEngine(EngineOrders, EngineLifecycle):
    def __init__(
        self,
        *,
        store: OpsStore,
        session: TradingSession,
        broker: Broker,
        bus: EventBus,
        slot: ModelSlot,
        backtest: BacktestConfig,
        config: EngineConfig | None = None,
        locks: EngineLocks | None = None,
    ):
        check_live_config(backtest, paper=isinstance(broker, PaperBroker))
        if isinstance(broker, PaperBroker) and not broker.replays(backtest):
            raise ConfigError(
                "the paper broker fills with other rules than the session's backtest config; "
                "build it with PaperBroker.of(the session's BacktestConfig)"
            )
        spot = [s for s in session.symbols if not can_short(instrument_of(session.exchange, s))]
        if slot.current.strategy.rule.allow_short and spot:
            raise ConfigError(
                f"{session.exchange} {spot} are spot: shorts need a derivative market; trade perpetuals "
                "(BTC/USDT:USDT, in the lake BTC-USDT-PERP) or use a rule with allow_short=False"
            )
        self.store, self.session, self.broker, self.bus, self.slot = store, session, broker, bus, slot
        self.backtest, self.config = backtest, config or EngineConfig()
        check_window(slot.current.strategy, self.config.window_bars, backtest=backtest)
        stored = store.position_rows(session.id)
        self.portfolio = Portfolio.from_rows(session.cash, stored, venue=session.exchange)
        self.risk_config = risk_config_of(session)
        self.risk_state = risk_state_of(session, self.risk_config)
        self.last = {key_of(session.exchange, p.instrument): p.last_price for p in stored if p.last_price is not None}
        self.window = pl.DataFrame()
        self.metrics = SessionMetrics(session=session.name, venue=session.exchange)  # live.engine_metrics
        self.latency = Latency(metrics=self.metrics)
        self.bars = 0
        self.venue_check = VenueCheck.of(broker, symbols=session.symbols, every_bars=self.config.venue_check_every_bars)
        self.protection = (  # a venue's protective legs, armed once their entry fills (live.venue_protection)
            VenueProtection(store=store, broker=broker, session_id=session.id, config=backtest, apply=self._apply)
            if protective_kinds(backtest) and not isinstance(broker, PaperBroker)
            else None
        )
        self.locks = locks
        self.relay = OutboxRelay(
            store,
            bus,
            session_id=session.id,
            mark=outbox_mark(session),
            retry_base_s=self.config.bus_retry_base_s,
            retry_cap_s=self.config.bus_retry_cap_s,
        )
        self.database = DatabaseWatch(store, base_s=self.config.db_retry_base_s, cap_s=self.config.db_retry_cap_s)
        self.shadow = ShadowStage(  # the session's challengers beside the champion (live.shadow)
            store=store, session=session, registry=slot.registry, backtest=backtest, window_bars=self.config.window_bars
        )
        self.slices = SliceStage(  # challengers trading a real share of the capital (live.slices)
            store=store, session=session, broker=broker, backtest=backtest, risk_config=self.risk_config,
            shadow=self.shadow,
        )  # fmt: skip
        self._swap_unrecorded = False  # a model swap whose bar did not commit
        self.adaptation = ThresholdAdaptation(store=store, session=session)  # live.adaptation
        self.entry_proba: dict[str, float] = {}  # the model's probability of this bar's entries
        self._wake = asyncio.Event()  # set after a commit: the relay task has events to send

    @property
    def markets(self) -> dict[InstrumentId, MarketRules]:
        """Each instrument's precision and minimums, from the broker (none for the paper broker)."""
        rules = getattr(self.broker, "market_rules", None)
        return {} if rules is None else {self.instrument(s): r for s, r in rules(self.session.symbols).items()}

    @property
    def positions(self) -> dict[str, float]:
        """Open positions by symbol (signed quantity), from the portfolio."""
        return {key_of(self.session.exchange, p.instrument): p.quantity for p in self.portfolio.positions()}

    # ------------------------------------------------------------------ one bar
    async def on_batch(self, batch: CandleBatch) -> bool:
        """One closed bar through the named stages (module rules); False once the session is stopped.

        Before the bar's transaction: the session's status, the locks, the venue check, a model
        swap, and what the broker reports for this bar. Inside it, in order: :meth:`_settle`
        (fills to cash and positions), :meth:`_mark` (prices and the equity point),
        :meth:`_decide_intents` (signals to order intents), :meth:`_risk` (what may be sent) and
        :meth:`_persist` (order rows, audit, events, ``last_bar_ts``). After the commit:
        :meth:`_send`. The challengers run in shadow beside it (``live.shadow``: simulated before
        the transaction, their paired returns stored in it after the mark).
        """
        status = self._status()
        if status == "stopped":
            return False
        if self.locks is not None:  # still the only engine of this session and account (live.locks)
            self.locks.verify()
        if isinstance(self.broker, FundingVenue) and self.bars % self.config.venue_check_every_bars == 0:
            await record_funding(
                self.store, self.broker, session_id=self.session.id, symbols=self.session.symbols, book=self._fund
            )
            await record_liquidation_prices(
                self.store, self.broker, session_id=self.session.id, venue=self.session.exchange
            )
        if self.venue_check is not None:  # open orders, fills by trade id, balances (live.reconcile)
            drifts = await self.venue_check.run(
                self.bars,
                self.store,
                self.session.id,
                apply=self._apply,
                holdings=lambda: (self.cash, self.positions),
                whole=self._whole,
            )
            self.metrics.drifted(len(drifts))
        changed = self.slot.refresh(batch.ts) or self._swap_unrecorded
        self._swap_unrecorded = changed
        ended = await self.broker.on_bar(batch, cash=self.cash)
        self.window, backfilled = roll_window(self.window, batch, bars=self.config.window_bars)
        if backfilled:  # candles a symbol missed, fetched before this bar: its window has no hole
            self.report("candles_backfilled", bar_ts=batch.ts, candles=backfilled)
        closes = batch.candles.select("symbol", "close").rows()
        self.last.update(closes)
        await self.slices.run(batch, equity=self.portfolio.equity())
        await self.shadow.run(batch, window=self.window, last=self.last, equity=self.portfolio.equity())
        orders: list[Order] = []
        signals: list[tuple[str, int]] = []
        with self.store.transaction() as db:
            if changed:
                self.slot.record(db, session=self.session, bar_ts=batch.ts)
            row = OpsStore.session_row(db, self.session.id, for_update=True)
            self._settle(db, ended)
            self.slices.settle(db, batch.ts, last=self.last)
            self.adaptation.on_bar(db, batch.ts, slot=self.slot)
            equity = self._mark(db, batch.ts)  # the champion's book (the session's equity point: every slice's)
            flatten = self._kill_switch(db, row, batch.ts, equity + self.slices.equity)
            decides = status == "running" and row.needs_ack is None and not flatten  # entries allowed too
            self.shadow.persist(db, batch.ts, equity=equity, champion=self.slot.current.artifact, decided=decides)
            self.slices.evidence(batch.ts, equity=equity, champion=self.slot.current.artifact, decided=decides)
            equity = self.slices.transfer(db, batch.ts, champion=self.portfolio)
            if status == "running" or flatten:
                signals = self._decide_or_fall_back(db, batch.ts) if status == "running" else []
                self.latency.decided(time.perf_counter_ns() - batch.received_ns)
                intents = self._decide_intents(signals, equity=equity) + flatten
                self.slices.decide(db, batch.ts, window=self.window, last=self.last, flatten=bool(flatten))
                orders = self._persist(db, batch.ts, self._risk(db, intents, ts=batch.ts))
                orders += self.slices.persist(db, batch.ts)
                self.metrics.decided(signals=len(signals), intents=[o.intent for o in orders])
            if self.config.publish:
                add_bar_events(db, self.session.id, batch, signals, orders)
            row.cash, row.last_bar_ts, row.heartbeat_at = self.cash, batch.ts, utcnow()
            row.risk_state = json.loads(self.risk_state.to_json())
        self._swap_unrecorded = False
        self.latency.committed(time.perf_counter_ns() - batch.received_ns)
        self.session.last_bar_ts, self.session.status = batch.ts, status
        if orders and self.protection is not None:
            await self.protection.before_exits(orders)  # a signal exit's legs go first
        if orders:
            await self._send(orders)
        if self.protection is not None:
            await self.protection.on_bar(ts=batch.ts, candles=batch.candles, atr=self._atr(), books=self._books())
        await cancel_stale(
            self.store,
            self.broker,
            self.session.id,
            now_ts=batch.ts,
            max_age_ms=self.config.max_order_age_ms,
            apply=self._apply,
        )
        await expire_entries(
            self.store, self.broker, self.session.id, now_ts=batch.ts, window=self.window, config=self.backtest,
            signalled=[s for s, _ in signals], apply=self._apply,
        )  # fmt: skip
        if self.config.publish:
            self.relay.stage_prices({price_key(self.session.exchange, s): (c, batch.ts) for s, c in closes})
            self._wake.set()
        self.bars += 1
        return True

    # ------------------------------------------------------------------ the bar's stages
    def _settle(self, db, ended: list[OrderState]) -> None:
        """Settle: what the broker reported for this bar (fills, ends) into cash and positions."""
        for state in ended:
            self._apply(db, state)

    def _mark(self, db, ts: int) -> float:
        """Mark: positions at the bar's closes (the last known close for a symbol without one);
        the equity point of the bar (the whole session's). Returns the champion book's equity."""
        self.portfolio.mark({self.instrument(s): self.last.get(s) for s in self.positions})
        for held in self.portfolio.positions():
            db.get(
                Position, (self.session.id, held.instrument.venue, held.instrument.symbol)
            ).last_price = held.last_price
        equity = self.portfolio.equity()
        whole, cash = equity + self.slices.equity, self.cash + self.slices.cash  # with the capital slices
        db.add(EquityPoint(session_id=self.session.id, ts=ts, equity=whole, cash=cash))
        return equity

    def _decide_intents(self, signals: list[tuple[str, int]], *, equity: float) -> list[OrderIntent]:
        """Decide: each symbol's signal flags to order intents, given its position at the close,
        with the backtest's sizing, entry orders, shorts and protection (``live.entries``)."""
        if getattr(self, "_planner", None) is None:
            self._planner = EntryPlanner(self.backtest, venue=self.session.exchange, timeframe=self.session.timeframe)
        return self._planner.decide(
            signals, window=self.window, positions=self.positions, equity=equity, last=self.last, broker=self.broker
        )

    def _books(self) -> dict[str | None, dict[str, float]]:
        """Each book's positions by session key: the champion's (None), then each funded slice's."""
        return {None: self.positions, **{a: held for a, _, held in self.slices.holdings()}}

    def _whole(self) -> tuple[float, dict[str, float]]:
        """The whole session's cash and positions: every book's summed (``live.slice_venue`` rule 4)."""
        return sum_books([(self.cash, self.positions), *((c, p) for _, c, p in self.slices.holdings())])

    def _atr(self) -> dict[str, float | None]:
        """Each symbol's ATR at the last close (the planner's; empty when no leg uses one)."""
        planner = getattr(self, "_planner", None)
        if planner is None or planner.atr_book is None or self.window.is_empty():
            return {}
        return planner.atr_book.update(self.window)

    def _kill_switch(self, db, row: TradingSession, ts: int, equity: float) -> list[OrderIntent]:
        """The kill switch on the bar's equity (``live.risk_stage.kill_switch``)."""
        return kill_switch(
            db, session=self.session, row=row, state=self.risk_state, config=self.risk_config, ts=ts,
            equity=equity, snapshot=self._snapshot,
        )  # fmt: skip

    def _snapshot(self) -> PortfolioSnapshot:
        return portfolio_snapshot(self.portfolio, {self.instrument(s): px for s, px in self.last.items()})

    def _risk(self, db, intents: list[OrderIntent], *, ts: int) -> list[OrderIntent]:
        """Risk: the intents that may be sent (``live.risk_stage.pre_trade``; with capital slices,
        ``live.slices``: each slice's and the whole session's limits)."""
        if self.slices.active:
            if not isinstance(self.broker, PaperBroker):  # one venue account: the champion spends its own cash
                cash = self.cash - committed(db, self.session.id, None)  # (live.slice_venue rule 3)
                intents = cap_entries(intents, cash=cash, config=self.backtest, last=self.last)
            return self.slices.pre_trade(
                db, intents, snapshot=self._snapshot(), state=self.risk_state, ts=ts, markets=self.markets
            )
        if not intents:
            return []
        return pre_trade(
            db, session=self.session, intents=intents, snapshot=self._snapshot, state=self.risk_state, ts=ts,
            markets=self.markets,
        )  # fmt: skip

    def _decide_or_fall_back(self, db, ts: int) -> list[tuple[str, int]]:
        """The decision; a model that fails at it is dropped for reduce-only (audited), never
        a dead engine."""
        try:
            return self._decide(ts)
        except Exception as exc:
            if is_connection_error(exc) or self.slot.current.model is None:
                raise
            log.exception("session %s: the model failed to decide", self.session.name)
            self.slot.fail(f"failed to decide: {type(exc).__name__}: {exc}"[:180])
            self.slot.record(db, session=self.session, bar_ts=ts)
            return self._decide(ts)

    def _decide(self, ts: int) -> list[tuple[str, int]]:
        """(symbol, signal flags) of every symbol with a candle at ``ts``, all in one computation."""
        inforce = self.slot.current
        if inforce.model is not None:  # features and the model at this bar only; signals over the window
            model = inforce.model
            enriched = enrich_latest(self.window, model.strategy, model.features, ts=ts)
            decided = apply_model(enriched, model, now_ms=ts)
            self.entry_proba = dict(decided.filter(pl.col("proba").is_not_null()).select("symbol", "proba").rows())
        else:  # reduce-only: the strategy's exits, never an entry
            decided = inforce.strategy.signals(self.window, by="symbol").with_columns(
                pl.col("signal") & pl.lit(~ENTRIES, dtype=pl.Int8)
            )
        last = decided.filter(pl.col("ts") == ts).select("symbol", "signal").sort("symbol")
        return [(s, int(f)) for s, f in last.rows() if f]
