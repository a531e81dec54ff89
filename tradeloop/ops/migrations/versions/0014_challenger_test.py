"""challengers.test_options: the live sequential test's options chosen for one challenger

A challenger named with its own options (``SequentialConfig``: alpha, min_bars, effect,
lags) is judged with them by the engine, the API and a promotion; None keeps the engine's
options (the defaults). They are fixed when the challenger is first named: a test whose
false-promotion rate is chosen after seeing evidence no longer holds it.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("challengers") as batch_op:
        batch_op.add_column(sa.Column("test_options", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("challengers") as batch_op:
        batch_op.drop_column("test_options")
