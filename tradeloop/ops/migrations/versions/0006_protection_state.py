"""protection state: what a venue's protective legs need to survive an engine restart

* orders gain ``entry_atr`` (a protective leg's: the ATR at its entry's decision close, what an
  ATR level is measured in from the fill), ``armed_ts`` (the bar the leg was armed on from its
  entry's fill) and ``extreme`` (a trailing leg's peak, a short's trough, since the fill). All
  nullable: rows written before this column read as unknown, as before (an ATR leg keeps its
  stored trigger, a trailing leg's peak restarts at the entry price).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


ORDER_COLUMNS: tuple[sa.Column, ...] = (
    sa.Column("entry_atr", sa.Float(), nullable=True),
    sa.Column("armed_ts", sa.BigInteger(), nullable=True),
    sa.Column("extreme", sa.Float(), nullable=True),
)


def upgrade() -> None:
    # plain ALTER TABLE: rebuilding orders would trip the foreign keys of the fills and audit rows
    for column in ORDER_COLUMNS:
        op.add_column("orders", column)


def downgrade() -> None:
    for column in reversed(ORDER_COLUMNS):
        op.drop_column("orders", column.name)
