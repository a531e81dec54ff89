"""The live engine's metrics, one series per trading session (label ``session``, its name).

Rules:

1. **Bar time and wall time.** ``tradeloop_last_bar_timestamp_seconds`` and the model's age
   are bar time (the candle's open, as everywhere in tradeloop); the heartbeat and the
   feed's ``..._received_timestamp_seconds`` are wall time, set by prometheus-client when the
   engine reports a committed bar or a beat (the engine's I/O layer; decision code never
   reads the clock). Staleness is ``time() - <timestamp>`` in PromQL, so a stuck process
   shows it without having to update anything.
2. **Latency** (``tradeloop_bar_latency_seconds``, stage ``decided`` and ``stored``) runs from
   the bar's arrival at the engine (``CandleBatch.received_ns``) to its decision and to its
   orders committed in the database, as ``live.engine.Latency`` measures it.
3. **Zeros first.** :meth:`SessionMetrics.start` creates every counter's series (each order
   intent, each fill side, each pre-trade risk rule) at zero, so a dashboard shows 0 rather
   than nothing and ``rate()`` sees the first event; :meth:`SessionMetrics.stop` removes the
   session's series (the heartbeat included: a process still up without it is an engine that
   stopped).
4. **Database state** (orders ``unknown``, symbols halted, an ack awaited) is read when
   Prometheus scrapes (``tradeloop.observability.sampled``), never on the bar's path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from tradeloop.observability.sampled import Sampled
from tradeloop.risk import RiskRule
from tradeloop.trading import OrderIntentKind, OrderSide

S = ("session",)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: the pre-trade rules a denial names (the kill switch's own triggers trip it instead)
DENIAL_RULES = tuple(r for r in RiskRule if r not in (RiskRule.DAILY_LOSS, RiskRule.MAX_DRAWDOWN))

BAR_LATENCY = Histogram(
    "tradeloop_bar_latency_seconds", "From a bar's arrival to its decision (stage=decided) and to its orders "
    "committed (stage=stored)", [*S, "stage"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
BARS = Counter("tradeloop_bars", "Bars committed", S)
LAST_BAR = Gauge("tradeloop_last_bar_timestamp_seconds", "Bar time (open) of the last committed bar", S)
FEED_RECEIVED = Gauge(
    "tradeloop_feed_last_received_timestamp_seconds", "Wall time the engine last committed a closed candle of the "
    "instrument", [*S, "venue", "symbol"],
)  # fmt: skip
BAR_INTERVAL = Gauge("tradeloop_session_bar_interval_seconds", "The session's timeframe", S)
SESSION_INFO = Gauge(
    "tradeloop_session_info", "1 per session an engine runs, with what it trades",
    [*S, "exchange", "timeframe", "mode", "strategy"],
)  # fmt: skip
HEARTBEAT = Gauge("tradeloop_engine_heartbeat_timestamp_seconds", "Wall time of the engine's last bar or beat", S)
SIGNALS = Counter("tradeloop_signals", "Symbols with a signal at a bar", S)
ORDERS = Counter("tradeloop_orders", "Orders decided and stored (before sending)", [*S, "intent"])
FILLS = Counter("tradeloop_fills", "Fills stored", [*S, "side"])
SEND_FAILURES = Counter("tradeloop_order_send_failures", "Creates that failed unforeseen (the order is unknown)", S)
RISK_DENIALS = Counter("tradeloop_risk_denials", "Order intents the pre-trade checks refused", [*S, "rule"])
KILL_SWITCH_TRIPS = Counter("tradeloop_kill_switch_trips", "Kill switch trips", S)
KILL_SWITCH = Gauge("tradeloop_kill_switch_tripped", "1 while the kill switch is tripped (until an ack)", S)
DRIFTS = Counter("tradeloop_reconciliation_drifts", "Balances or positions found off the venue's", S)
EQUITY = Gauge("tradeloop_equity", "Equity at the last bar's close (quote currency)", S)
CASH = Gauge("tradeloop_cash", "Cash after the last bar (quote currency)", S)
DRAWDOWN = Gauge("tradeloop_drawdown_ratio", "1 - equity / high-water mark (the risk engine's)", S)
EXPOSURE = Gauge("tradeloop_exposure_ratio", "Gross or net position value over equity", [*S, "kind"])
OPEN_POSITIONS = Gauge("tradeloop_open_positions", "Instruments held", S)
MODEL_FALLBACK = Gauge("tradeloop_model_fallback", "1 while the reduce-only fallback decides instead of a model", S)
MODEL_AGE = Gauge("tradeloop_model_age_seconds", "Bar time since the model in force was trained until", S)
MODEL_MAX_AGE = Gauge("tradeloop_model_max_age_seconds", "Age at which the model in force goes stale", S)
ORDERS_UNKNOWN = Sampled("tradeloop_orders_unknown", "Orders whose outcome the venue has not proved", S)
SYMBOLS_HALTED = Sampled("tradeloop_symbols_halted", "Symbols halted (reduce-only) until an ack", S)
NEEDS_ACK = Sampled("tradeloop_session_needs_ack", "1 while the whole session is reduce-only until an ack", S)
_BY_SESSION = (
    BARS, LAST_BAR, BAR_INTERVAL, HEARTBEAT, SIGNALS, SEND_FAILURES, KILL_SWITCH_TRIPS, KILL_SWITCH, DRIFTS,
    EQUITY, CASH, DRAWDOWN, OPEN_POSITIONS, MODEL_FALLBACK, MODEL_AGE, MODEL_MAX_AGE,
)  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionState:
    """What the database says about a session, read at a scrape (rule 4)."""

    unknown_orders: int
    halted_symbols: int
    needs_ack: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class BarFigures:
    """A committed bar's figures (rule 1: ``ts_ms`` is bar time)."""

    ts_ms: int
    symbols: Iterable[str]
    equity: float
    cash: float
    drawdown: float
    gross_exposure: float
    net_exposure: float
    open_positions: int
    kill_switch_tripped: bool
    model_age_s: float | None  # None: no model in force (the fallback decides)
    model_max_age_s: float | None


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionMetrics:
    """One session's series: construct anywhere (cheap), :meth:`start` when its engine runs."""

    session: str
    venue: str

    def start(
        self, *, timeframe: str, bar_interval_s: float, mode: str, strategy: str, state: Callable[[], SessionState]
    ) -> None:
        """The session's info, its zeros (rule 3) and its database state's sources (rule 4)."""
        SESSION_INFO.labels(self.session, self.venue, timeframe, mode, strategy).set(1)
        BAR_INTERVAL.labels(self.session).set(bar_interval_s)
        for metric in (BARS, SIGNALS, SEND_FAILURES, KILL_SWITCH_TRIPS, DRIFTS, KILL_SWITCH):
            metric.labels(self.session)
        for intent in OrderIntentKind:
            ORDERS.labels(self.session, intent.value)
        for side in OrderSide:
            FILLS.labels(self.session, side.value)
        for rule in DENIAL_RULES:
            RISK_DENIALS.labels(self.session, rule.value)
        for stage in ("decided", "stored"):
            BAR_LATENCY.labels(self.session, stage)
        HEARTBEAT.labels(self.session).set_to_current_time()
        key = (self.session,)
        ORDERS_UNKNOWN.track(self.session, lambda: [(key, state().unknown_orders)])
        SYMBOLS_HALTED.track(self.session, lambda: [(key, state().halted_symbols)])
        NEEDS_ACK.track(self.session, lambda: [(key, float(state().needs_ack))])

    def stop(self) -> None:
        """Remove the session's series (rule 3)."""
        for sampled in (ORDERS_UNKNOWN, SYMBOLS_HALTED, NEEDS_ACK):
            sampled.forget(self.session)
        for metric in _BY_SESSION:
            metric.remove(self.session)
        for labelled, values in (
            (ORDERS, [i.value for i in OrderIntentKind]),
            (FILLS, [s.value for s in OrderSide]),
            (RISK_DENIALS, [r.value for r in DENIAL_RULES]),
            (BAR_LATENCY, ["decided", "stored"]),
            (EXPOSURE, ["gross", "net"]),
        ):
            for value in values:
                labelled.remove(self.session, value)
        for metric in (SESSION_INFO, FEED_RECEIVED):
            for labels in _series_of(metric, self.session):
                metric.remove(*labels)

    # ------------------------------------------------------------------ events
    def latency(self, stage: str, ns: int) -> None:
        BAR_LATENCY.labels(self.session, stage).observe(ns / 1e9)

    def bar(self, figures: BarFigures) -> None:
        """A bar committed (rule 1)."""
        s = self.session
        BARS.labels(s).inc()
        LAST_BAR.labels(s).set(figures.ts_ms / 1000)
        for symbol in figures.symbols:
            FEED_RECEIVED.labels(s, self.venue, symbol).set_to_current_time()
        HEARTBEAT.labels(s).set_to_current_time()
        EQUITY.labels(s).set(figures.equity)
        CASH.labels(s).set(figures.cash)
        DRAWDOWN.labels(s).set(figures.drawdown)
        equity = figures.equity if figures.equity > 0 else float("nan")
        EXPOSURE.labels(s, "gross").set(figures.gross_exposure / equity)
        EXPOSURE.labels(s, "net").set(figures.net_exposure / equity)
        OPEN_POSITIONS.labels(s).set(figures.open_positions)
        KILL_SWITCH.labels(s).set(float(figures.kill_switch_tripped))
        MODEL_FALLBACK.labels(s).set(float(figures.model_age_s is None))
        if figures.model_age_s is not None and figures.model_max_age_s is not None:
            MODEL_AGE.labels(s).set(figures.model_age_s)
            MODEL_MAX_AGE.labels(s).set(figures.model_max_age_s)

    def heartbeat(self) -> None:
        HEARTBEAT.labels(self.session).set_to_current_time()

    def decided(self, *, signals: int, intents: Iterable[str]) -> None:
        """A bar's decision: how many symbols had a signal, the intents of the orders stored."""
        SIGNALS.labels(self.session).inc(signals)
        for intent in intents:
            ORDERS.labels(self.session, intent).inc()

    def filled(self, side: str) -> None:
        FILLS.labels(self.session, side).inc()

    def send_failed(self) -> None:
        SEND_FAILURES.labels(self.session).inc()

    def risk_denied(self, rule: str) -> None:
        RISK_DENIALS.labels(self.session, rule).inc()

    def kill_switch_tripped(self) -> None:
        KILL_SWITCH_TRIPS.labels(self.session).inc()
        KILL_SWITCH.labels(self.session).set(1)

    def drifted(self, count: int) -> None:
        if count:
            DRIFTS.labels(self.session).inc()


def _series_of(metric: Gauge, session: str) -> list[tuple[str, ...]]:
    """The label values of ``metric``'s series of ``session`` (its first label)."""
    series = [tuple(s.labels.values()) for family in metric.collect() for s in family.samples]
    return [labels for labels in series if labels[0] == session]
