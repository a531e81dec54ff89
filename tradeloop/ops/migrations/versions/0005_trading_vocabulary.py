"""trading vocabulary: order lifecycle statuses, order types and prices, positions keyed by
InstrumentId (venue, symbol), a session's risk configuration and risk state, funding and
other cash flows

* orders.status takes the full lifecycle (``tradeloop.trading.OrderStatus``): ``submitted``
  becomes ``acknowledged``; a ``new`` order whose create was recorded as sent becomes ``sent``.
* orders gain order_type, time_in_force, price, trigger_price, reduce_only and parent_id (a
  protective order placed for an entry); intent widens for ``trailing_stop``.
* positions gain ``venue`` in their key: the session's exchange for every existing row (the
  instrument a paper session trades is still the exchange's); and ``liquidation_price`` (a
  perpetual's, as the venue reports it).
* sessions gain ``risk_config`` (``tradeloop.risk.RiskConfig``, as JSON; NULL reads as the
  defaults) and ``risk_state`` (high-water mark, the day's first equity, throttle, kill switch).
* cash_flows: money that moves without a fill (perpetuals' funding), once per venue id.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


ORDER_COLUMNS: tuple[sa.Column, ...] = (
    sa.Column("order_type", sa.String(length=16), nullable=False, server_default="market"),
    sa.Column("time_in_force", sa.String(length=12), nullable=False, server_default="gtc"),
    sa.Column("price", sa.Float(), nullable=True),
    sa.Column("trigger_price", sa.Float(), nullable=True),
    sa.Column("reduce_only", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("parent_id", sa.Integer(), nullable=True),
)


def _position_key(columns: list[str], *, venue_nullable: bool) -> None:
    """Re-key positions: PostgreSQL names the key ``positions_pkey``; SQLite rebuilds the table."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE positions DROP CONSTRAINT positions_pkey")
        op.alter_column("positions", "venue", nullable=venue_nullable, existing_type=sa.String(length=50))
        op.create_primary_key("positions_pkey", "positions", columns)
        return
    # SQLite cannot change a key in place: a new table, the rows copied (nothing refers to positions)
    venue = "venue VARCHAR(50)" + ("" if venue_nullable else " NOT NULL")
    op.execute(
        f"CREATE TABLE positions_new (session_id INTEGER NOT NULL REFERENCES sessions (id), {venue}, "
        "symbol VARCHAR(50) NOT NULL, quantity FLOAT NOT NULL, entry_price FLOAT NOT NULL, entry_fee FLOAT NOT NULL, "
        "entry_ts BIGINT, last_price FLOAT, realized_pnl FLOAT NOT NULL, liquidation_price FLOAT, "
        f"PRIMARY KEY ({', '.join(columns)}))"
    )
    op.execute(
        "INSERT INTO positions_new (session_id, venue, symbol, quantity, entry_price, entry_fee, entry_ts, "
        "last_price, realized_pnl, liquidation_price) SELECT session_id, venue, symbol, quantity, entry_price, "
        "entry_fee, entry_ts, last_price, realized_pnl, liquidation_price FROM positions"
    )
    op.execute("DROP TABLE positions")
    op.execute("ALTER TABLE positions_new RENAME TO positions")


def upgrade() -> None:
    # plain ALTER TABLE throughout: rebuilding orders (or sessions) would trip the foreign keys of the
    # fills and audit rows that refer to them; SQLite does not enforce VARCHAR lengths
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("orders", "status", type_=sa.String(length=20), existing_type=sa.String(length=12))
        op.alter_column("orders", "intent", type_=sa.String(length=20), existing_type=sa.String(length=12))
    for column in ORDER_COLUMNS:
        op.add_column("orders", column)
    op.execute("UPDATE orders SET status = 'acknowledged' WHERE status = 'submitted'")
    op.execute("UPDATE orders SET status = 'sent' WHERE status = 'new' AND sent_at_ms IS NOT NULL")

    op.add_column("positions", sa.Column("venue", sa.String(length=50), nullable=True))
    op.add_column("positions", sa.Column("liquidation_price", sa.Float(), nullable=True))
    op.execute("UPDATE positions SET venue = (SELECT exchange FROM sessions WHERE sessions.id = positions.session_id)")
    _position_key(["session_id", "venue", "symbol"], venue_nullable=False)

    # plain ALTER TABLE: rebuilding sessions would trip the foreign keys of the rows that refer to it
    op.add_column("sessions", sa.Column("risk_config", sa.JSON(), nullable=True))
    op.add_column("sessions", sa.Column("risk_state", sa.JSON(), nullable=True))

    op.create_table(
        "cash_flows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("venue", sa.String(length=50), nullable=False),
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("flow_id", sa.String(length=100), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("venue", "kind", "flow_id", name="uq_cash_flows_venue_kind_id"),
    )
    op.create_index("ix_cash_flows_session_id", "cash_flows", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_cash_flows_session_id", table_name="cash_flows")
    op.drop_table("cash_flows")
    op.drop_column("sessions", "risk_state")
    op.drop_column("sessions", "risk_config")
    _position_key(["session_id", "symbol"], venue_nullable=True)
    op.drop_column("positions", "liquidation_price")
    op.drop_column("positions", "venue")
    # every status and intent 0004 does not know is mapped to its nearest one before the columns narrow
    op.execute("UPDATE orders SET status = 'new' WHERE status = 'sent'")
    op.execute(
        "UPDATE orders SET status = 'submitted' "
        "WHERE status IN ('acknowledged', 'partially_filled', 'cancel_requested')"
    )
    op.execute("UPDATE orders SET status = 'canceled' WHERE status = 'expired'")
    op.execute(
        "UPDATE orders SET intent = CASE WHEN side = 'buy' THEN 'enter_long' ELSE 'exit_long' END "
        "WHERE intent NOT IN ('enter_long', 'exit_long')"
    )
    for column in reversed(ORDER_COLUMNS):
        op.drop_column("orders", column.name)
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("orders", "intent", type_=sa.String(length=12), existing_type=sa.String(length=20))
        op.alter_column("orders", "status", type_=sa.String(length=12), existing_type=sa.String(length=20))
