"""fills.after_bar_ts: the session's last committed bar when the fill was stored

A fill the venue reports late (reconciled at a restart, or after an outage: its ``ts`` is
bars behind the session) can only teach the threshold adaptation (``live.adaptation``) at
the first bar after the one committed when it was stored; the replay of the session's
history (``tradeloop.thresholds.feedback.replay``) reads this to count it at that same bar.
Rows stored before this migration have none: they count at their ``ts``, as before.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fills") as batch_op:
        batch_op.add_column(sa.Column("after_bar_ts", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fills") as batch_op:
        batch_op.drop_column("after_bar_ts")
