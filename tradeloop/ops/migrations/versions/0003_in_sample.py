"""sessions.in_sample: a session that trades bars its champion was trained on (allowed only
with ``tradeloop live run --allow-in-sample``); every place that shows a session says so

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing sessions read as out-of-sample: nothing recorded otherwise, and the check did not exist
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.add_column(sa.Column("in_sample", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.drop_column("in_sample")
