"""Tables of the operational database (the system of record for live trading)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tradeloop.trading.instrument import InstrumentId


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class TradingSession(Base):
    """One strategy trading a set of symbols, paper or live; started, paused, resumed, stopped."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    strategy: Mapped[str] = mapped_column(String(50))
    exchange: Mapped[str] = mapped_column(String(50))
    timeframe: Mapped[str] = mapped_column(String(10))
    symbols: Mapped[list] = mapped_column(JSON)
    mode: Mapped[str] = mapped_column(String(10))  # paper | live
    status: Mapped[str] = mapped_column(String(10))  # running | paused | stopped | finished
    init_cash: Mapped[float] = mapped_column(Float)
    cash: Mapped[float] = mapped_column(Float)
    config: Mapped[dict] = mapped_column(JSON)  # BacktestConfig fields: fills, fees, sizing
    last_bar_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # last bar fully processed
    # liveness: written by the running engine; readers call a session "stale" when it is old
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # symbol -> reason: symbols halted to reduce-only (an order whose outcome could not be resolved)
    halted: Mapped[dict] = mapped_column(JSON, default=dict)
    # why the whole session is reduce-only until an operator runs ``tradeloop live ack`` (None: not)
    needs_ack: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # asset -> venue balance that is not the session's (the account's other funds): recorded at the
    # first balance check and after an ack; live.reconcile compares the rest with cash and positions
    venue_baseline: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # True: the session trades bars its champion was trained on (``live run --allow-in-sample``);
    # its results are not evidence of what the model does on new data. Kept when it resumes.
    in_sample: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # tradeloop.risk.RiskConfig as JSON (None: the defaults) and the risk engine's state (high-water
    # mark, the UTC day's first equity, the throttle's recent orders, the kill switch), written each bar
    risk_config: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    risk_state: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # the user who owns it (tradeloop.ops.identity_models.User; None: made from the CLI before
    # there were users: an admin's)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    # the owner's stored exchange credential a live session trades with (migration 0010; None: paper,
    # or live on the engine host's TRADELOOP_EXCHANGE_API_KEY)
    credential_id: Mapped[int | None] = mapped_column(ForeignKey("exchange_credentials.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Order(Base):
    """An order, written and committed before it is sent. ``client_order_id`` is deterministic
    (session, symbol, bar, intent), so deciding the same bar twice can never send twice."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    client_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    venue: Mapped[str] = mapped_column(String(50))  # where it was sent: the exchange id, or "paper" (the paper book)
    symbol: Mapped[str] = mapped_column(String(50))
    side: Mapped[str] = mapped_column(String(4))  # buy | sell
    intent: Mapped[str] = mapped_column(String(20))  # tradeloop.trading.OrderIntentKind
    quantity: Mapped[float | None] = mapped_column(Float, nullable=True)  # base amount (exits)
    quote_amount: Mapped[float | None] = mapped_column(Float, nullable=True)  # quote to spend (entries)
    decided_ts: Mapped[int] = mapped_column(BigInteger)  # open time of the bar whose close decided it
    sent_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # wall clock of the create
    status: Mapped[str] = mapped_column(String(20), index=True)  # tradeloop.trading.OrderStatus
    venue_order_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    filled_qty: Mapped[float] = mapped_column(Float, default=0.0)
    avg_price: Mapped[float | None] = mapped_column(Float, nullable=True)
    fee: Mapped[float] = mapped_column(Float, default=0.0)
    order_type: Mapped[str] = mapped_column(String(16), default="market", server_default="market")  # OrderType
    time_in_force: Mapped[str] = mapped_column(String(12), default="gtc", server_default="gtc")  # TimeInForce
    price: Mapped[float | None] = mapped_column(Float, nullable=True)  # limit price
    trigger_price: Mapped[float | None] = mapped_column(Float, nullable=True)  # stop / take-profit trigger
    reduce_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    parent_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the entry a protective order guards
    # a protective leg's state on a venue (live.venue_protection), so a restart changes nothing:
    entry_atr: Mapped[float | None] = mapped_column(Float, nullable=True)  # ATR at the entry's decision close
    armed_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # bar it was armed on (from the fill)
    extreme: Mapped[float | None] = mapped_column(Float, nullable=True)  # a trailing leg's peak (trough) so far
    # the challenger whose capital slice placed it (migration 0015, ``live.slices``); None: the champion's
    capital_slice: Mapped[str | None] = mapped_column(String(64), nullable=True, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    def instrument(self, session: TradingSession) -> InstrumentId:
        """What the order trades: the session's instrument (``venue`` above names where it was
        sent, which for the paper broker is its book, not the market)."""
        return InstrumentId(session.exchange, self.symbol)


class Fill(Base):
    """An execution, stored exactly once: unique per (venue, symbol, trade id)."""

    __tablename__ = "fills"
    __table_args__ = (UniqueConstraint("venue", "symbol", "trade_id", name="uq_fills_venue_symbol_trade"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    venue: Mapped[str] = mapped_column(String(50))
    symbol: Mapped[str] = mapped_column(String(50))
    trade_id: Mapped[str] = mapped_column(String(100))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Float)
    fee: Mapped[float] = mapped_column(Float)
    ts: Mapped[int] = mapped_column(BigInteger)
    # the session's last committed bar when it was stored (migration 0013): a late fill teaches
    # the threshold adaptation no earlier than the bar after it; None: stored before 0013
    after_bar_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True, default=None)


class Position(Base):
    """A session's position in one instrument (``venue``, ``symbol``: ``InstrumentId``); signed
    quantity (negative: short, on derivatives only)."""

    __tablename__ = "positions"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    venue: Mapped[str] = mapped_column(String(50), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(50), primary_key=True)
    quantity: Mapped[float] = mapped_column(Float, default=0.0)
    entry_price: Mapped[float] = mapped_column(Float, default=0.0)
    entry_fee: Mapped[float] = mapped_column(Float, default=0.0)
    entry_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_price: Mapped[float | None] = mapped_column(Float, nullable=True)
    realized_pnl: Mapped[float] = mapped_column(Float, default=0.0)
    # a perpetual's liquidation price as the venue last reported it (None: spot, or none reported)
    liquidation_price: Mapped[float | None] = mapped_column(Float, nullable=True)

    @property
    def instrument(self) -> InstrumentId:
        return InstrumentId(self.venue, self.symbol)


class CashFlow(Base):
    """Money that moves without a fill (a perpetual's funding payment), stored once per venue id."""

    __tablename__ = "cash_flows"
    __table_args__ = (UniqueConstraint("venue", "kind", "flow_id", name="uq_cash_flows_venue_kind_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    venue: Mapped[str] = mapped_column(String(50))
    symbol: Mapped[str] = mapped_column(String(50))
    kind: Mapped[str] = mapped_column(String(20))  # funding
    flow_id: Mapped[str] = mapped_column(String(100))
    amount: Mapped[float] = mapped_column(Float)  # + received, - paid (quote)
    ts: Mapped[int] = mapped_column(BigInteger)


class ThresholdInForce(Base):
    """Which threshold decided entries from when: the model's, or the static fallback p*."""

    __tablename__ = "thresholds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    source: Mapped[str] = mapped_column(String(10))  # model | static
    artifact: Mapped[str | None] = mapped_column(String(64), nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: no p* known yet
    reason: Mapped[str] = mapped_column(String(200))
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # the first bar (open time, ms) it decided: a replay's bars are not the wall clock's (None: recorded
    # before migration 0004)
    bar_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class EquityPoint(Base):
    __tablename__ = "equity"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # bar open time, ms
    equity: Mapped[float] = mapped_column(Float)
    cash: Mapped[float] = mapped_column(Float)


class AuditEvent(Base):
    """Append-only: every order event (decided, sent, filled, rejected, reconciled) and
    every session event (started, paused, model swapped, fallback)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"), nullable=True, index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), nullable=True)
    event: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)  # user@host, or the API user


class OutboxEvent(Base):
    """An event for the bus, written in the same transaction as the bar that produced it and
    relayed to the bus afterwards (transactional outbox): no event is lost while Redis is down.
    Ids are never reused (AUTOINCREMENT on SQLite, a sequence on PostgreSQL), even after the
    newest rows were pruned: the bus's per-session mark takes an id it has seen as a repeat."""

    __tablename__ = "outbox"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"), nullable=True, index=True)
    stream: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    relayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)


class EngineLock(Base):
    """Who holds a session's or an exchange account's engine lock (the lock itself is a
    PostgreSQL advisory lock or an exclusive file lock; this row names the holder)."""

    __tablename__ = "engine_locks"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
