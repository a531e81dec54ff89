"""Tables of market-wide state the live side writes and every reader shares (migration 0011):
each venue's latest health snapshot and the cross-venue arbitrage opportunities.

Neither belongs to a user or a session: row-level security leaves them readable to every
signed-in API user (the API still asks for the viewer role).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradeloop.ops.models import Base, utcnow


class VenueHealthRow(Base):
    """A venue's latest health snapshot (``tradeloop.observability.venues.VenueSnapshot``),
    replaced at every snapshot: readers judge its age by ``measured_at``."""

    __tablename__ = "venue_health"

    venue: Mapped[str] = mapped_column(String(50), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    status: Mapped[str | None] = mapped_column(String(30), nullable=True)  # the venue's status endpoint
    figures: Mapped[dict] = mapped_column(JSON)  # VenueSnapshot.figures(): rates, percentiles, skew, factors
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ArbitrageOpportunityRow(Base):
    """One cross-venue opportunity (``tradeloop.arbitrage.Opportunity``): buy ``symbol`` on
    ``buy_venue`` at its ask, sell on ``sell_venue`` at its bid, from ``start_ms`` until
    ``end_ms`` (None: still open). Figures are the latest seen; ``best_net_bps`` the best."""

    __tablename__ = "arbitrage_opportunities"
    __table_args__ = (UniqueConstraint("symbol", "buy_venue", "sell_venue", "start_ms", name="uq_arbitrage_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(50), index=True)
    buy_venue: Mapped[str] = mapped_column(String(50))
    sell_venue: Mapped[str] = mapped_column(String(50))
    start_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    end_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    buy_price: Mapped[float] = mapped_column(Float)
    sell_price: Mapped[float] = mapped_column(Float)
    size: Mapped[float] = mapped_column(Float)  # base amount available at both quoted prices
    gross_bps: Mapped[float] = mapped_column(Float)
    net_bps: Mapped[float] = mapped_column(Float)  # after both legs' taker fees (and the transfer's cost)
    net_profit: Mapped[float] = mapped_column(Float)  # quote currency, at ``size``
    best_net_bps: Mapped[float] = mapped_column(Float)
    transfer: Mapped[bool] = mapped_column(Boolean)  # True: the withdrawal cost is included
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
