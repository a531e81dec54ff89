"""Capital slices: a challenger named with ``capital_share`` trades real orders

``orders.capital_slice``: the artifact of the challenger whose capital slice placed the order
(None: the champion's book, the session's own); its fills are that slice's through their
order. ``challengers.slice_cash``: the cash the slice was funded with, ``slice_ts``: the bar it
was funded at, ``slice_state``: ``waiting`` (named, not funded yet: the engine audited why),
``open`` (trading), ``closing`` (retired or promoted: its positions are being flattened),
``closed`` (flat, its cash returned to the champion's book); None: not funded (shadow only, or
not seen by the engine yet). ``slice_risk_state``: the slice's risk state (``RiskState.to_json``:
its day, high-water mark and kill switch), so a restart keeps its loss limits. A slice's cash and
positions are its funding plus its orders' fills (``live.slices``).

The downgrade is refused while a slice is open or closing: its money would be lost (its cash
and positions live only in these columns and the orders' tags). Retire the challengers and let
the engine close their slices first.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch_op:
        batch_op.add_column(sa.Column("capital_slice", sa.String(64), nullable=True))
    with op.batch_alter_table("challengers") as batch_op:
        batch_op.add_column(sa.Column("slice_cash", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("slice_ts", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("slice_state", sa.String(10), nullable=True))
        batch_op.add_column(sa.Column("slice_risk_state", sa.JSON(), nullable=True))


def downgrade() -> None:
    funded = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM challengers WHERE slice_state IN ('open', 'closing')"))
        .scalar()
    )
    if funded:
        raise RuntimeError(
            f"migration 0015 downgrade refused: {funded} capital slice(s) are open or closing, and their cash and "
            "positions live only in the columns it drops; retire those challengers (tradeloop live challengers "
            "or the API), let the engine flatten them until every slice_state is closed, then downgrade"
        )
    with op.batch_alter_table("challengers") as batch_op:
        batch_op.drop_column("slice_risk_state")
        batch_op.drop_column("slice_state")
        batch_op.drop_column("slice_ts")
        batch_op.drop_column("slice_cash")
    with op.batch_alter_table("orders") as batch_op:
        batch_op.drop_column("capital_slice")
