"""challengers and challenger_returns: a session's shadow challengers and their live evidence

``challengers`` names, per session, the registered model artifacts of its strategy that run
beside its champion on the same bars (``live.shadow``): ``status`` is ``shadow`` while the
evidence accrues, ``promoted`` once the live sequential test promoted it (``decision`` holds
the test's numbers), ``retired`` when an operator dropped it. ``capital_share`` is the
fraction of the session's capital a real A/B split gives it (NULL: shadow only).
``challenger_returns`` holds, per challenger and bar, the champion's and the challenger's
return at that bar's close on identical candles, and which artifact the champion was
(``champion_artifact``; NULL: the static fallback decided): the paired evidence the test reads,
kept across restarts. Only bars where the champion decided are stored (not while the session is
paused or waits for an acknowledgement), and the test counts only the bars against the champion
in force.

Both belong to a session: on PostgreSQL their rows are visible and writable to the session's
owner and admins only (migration 0008's rule for a session's tables, with its functions; the
API role's privileges on them come from 0008's default privileges). On SQLite only the tables.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ADMIN = "tradeloop_rls_admin()"  # migration 0008's functions
USER = "tradeloop_rls_user()"
RULE = f"{ADMIN} OR session_id IN (SELECT s.id FROM sessions s WHERE s.owner_id = {USER})"
TABLES = ("challengers", "challenger_returns")


def upgrade() -> None:
    op.create_table(
        "challengers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("session_id", sa.Integer(), sa.ForeignKey("sessions.id"), nullable=False),
        sa.Column("artifact", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("capital_share", sa.Float(), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.UniqueConstraint("session_id", "artifact", name="uq_challenger_artifact"),
    )
    op.create_index("ix_challengers_session_id", "challengers", ["session_id"])
    op.create_table(
        "challenger_returns",
        sa.Column("session_id", sa.Integer(), sa.ForeignKey("sessions.id"), primary_key=True),
        sa.Column("artifact", sa.String(64), primary_key=True),
        sa.Column("ts", sa.BigInteger(), primary_key=True),
        sa.Column("champion", sa.Float(), nullable=False),
        sa.Column("champion_artifact", sa.String(64), nullable=True),
        sa.Column("challenger", sa.Float(), nullable=False),
        sa.Column("equity", sa.Float(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"CREATE POLICY tradeloop_owner ON {table} USING ({RULE}) WITH CHECK ({RULE})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP POLICY tradeloop_owner ON {table}")
    op.drop_table("challenger_returns")
    op.drop_index("ix_challengers_session_id", "challengers")
    op.drop_table("challengers")
