"""venue_health and arbitrage_opportunities: exchange health snapshots and cross-venue arbitrage

``venue_health`` holds each venue's latest health snapshot (score, status, figures), written
by the process that owns the exchange connections (``live.venue_monitor``) and read by the
API (``GET /venues/health``) and the dashboard. ``arbitrage_opportunities`` holds what the
arbitrage scanner (``live.arbitrage``) detected, one row per opportunity from its start to
its end. Both are market-wide (no owner): the API role reads them under row-level security
through the default privileges of migration 0008, with no policy.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "venue_health",
        sa.Column("venue", sa.String(50), primary_key=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("status", sa.String(30), nullable=True),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "arbitrage_opportunities",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("symbol", sa.String(50), nullable=False),
        sa.Column("buy_venue", sa.String(50), nullable=False),
        sa.Column("sell_venue", sa.String(50), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=True),
        sa.Column("buy_price", sa.Float(), nullable=False),
        sa.Column("sell_price", sa.Float(), nullable=False),
        sa.Column("size", sa.Float(), nullable=False),
        sa.Column("gross_bps", sa.Float(), nullable=False),
        sa.Column("net_bps", sa.Float(), nullable=False),
        sa.Column("net_profit", sa.Float(), nullable=False),
        sa.Column("best_net_bps", sa.Float(), nullable=False),
        sa.Column("transfer", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("symbol", "buy_venue", "sell_venue", "start_ms", name="uq_arbitrage_start"),
    )
    op.create_index("ix_arbitrage_opportunities_symbol", "arbitrage_opportunities", ["symbol"])
    op.create_index("ix_arbitrage_opportunities_start_ms", "arbitrage_opportunities", ["start_ms"])


def downgrade() -> None:
    op.drop_index("ix_arbitrage_opportunities_start_ms", "arbitrage_opportunities")
    op.drop_index("ix_arbitrage_opportunities_symbol", "arbitrage_opportunities")
    op.drop_table("arbitrage_opportunities")
    op.drop_table("venue_health")
