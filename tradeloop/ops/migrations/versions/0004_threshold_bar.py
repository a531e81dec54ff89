"""thresholds.bar_ts: the bar from which a threshold (model or fallback) decided entries, so
its periods line up with the bars of a replay, whose bars are not the wall clock's

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # rows written before this column read as unknown: only their wall-clock `since` was kept
    with op.batch_alter_table("thresholds") as batch_op:
        batch_op.add_column(sa.Column("bar_ts", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("thresholds") as batch_op:
        batch_op.drop_column("bar_ts")
