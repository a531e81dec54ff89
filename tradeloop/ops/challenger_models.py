"""A session's shadow challengers and their paired per-bar evidence (migrations 0012, 0014, 0015).

Both belong to the session (row-level security: its owner's and admins'). Written by the
engine's shadow stage (``live.shadow``) and the live promotion (``tradeloop.challengers``);
read by the API and the dashboard.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradeloop.ops.models import Base, utcnow


class ChallengerRow(Base):
    """A registered artifact of the session's strategy run in shadow beside its champion.

    ``status``: ``shadow`` (evidence accruing), ``promoted`` (the live test promoted it;
    ``decision`` holds the numbers), ``retired`` (dropped by an operator)."""

    __tablename__ = "challengers"
    __table_args__ = (UniqueConstraint("session_id", "artifact", name="uq_challenger_artifact"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    artifact: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="shadow")
    capital_share: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: shadow only
    test_options: Mapped[dict | None] = mapped_column(
        JSON, nullable=True
    )  # its SequentialConfig (0014); None: defaults
    # its capital slice (migration 0015, ``live.slices``): the cash it was funded with, the bar, and
    # waiting | open | closing | closed (None: not funded, not yet seen by the engine)
    slice_cash: Mapped[float | None] = mapped_column(Float, nullable=True, default=None)
    slice_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True, default=None)
    slice_state: Mapped[str | None] = mapped_column(String(10), nullable=True, default=None)  # or waiting
    # the slice's RiskState (RiskState.to_json: its day, high-water mark, trip, throttle): a restart keeps it
    slice_risk_state: Mapped[dict | None] = mapped_column(JSON, nullable=True, default=None)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    decision: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class ChallengerReturn(Base):
    """One bar of paired evidence: the champion's and the challenger's return at the close of
    bar ``ts`` (open time, ms) on the same candles, which artifact the champion was, the
    challenger's shadow equity, and how many orders it decided at that close."""

    __tablename__ = "challenger_returns"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    artifact: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    champion: Mapped[float] = mapped_column(Float)
    champion_artifact: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: static fallback
    challenger: Mapped[float] = mapped_column(Float)
    equity: Mapped[float] = mapped_column(Float)
    orders: Mapped[int] = mapped_column(Integer)
