"""The operational database: trading sessions, orders, fills, positions, thresholds in force,
equity marks and an audit log of every order event (SQLAlchemy 2 + Alembic).

SQLite (WAL, synchronous=FULL) under the data folder is the embedded default; PostgreSQL
when DATABASE_URL says so. The live engine writes it; the dashboard only reads it.
"""

from tradeloop.ops.database import connect, migrate
from tradeloop.ops.identity_models import ApiKey, ExchangeCredential, Job, RefreshToken, User
from tradeloop.ops.models import AuditEvent, EquityPoint, Fill, Order, Position, ThresholdInForce, TradingSession
from tradeloop.ops.store import OpsStore

__all__ = [
    "ApiKey",
    "AuditEvent",
    "EquityPoint",
    "ExchangeCredential",
    "Fill",
    "Job",
    "OpsStore",
    "Order",
    "Position",
    "RefreshToken",
    "ThresholdInForce",
    "TradingSession",
    "User",
    "connect",
    "migrate",
]
