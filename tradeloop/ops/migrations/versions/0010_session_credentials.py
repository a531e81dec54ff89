"""sessions.credential_id: the stored exchange credential a live session trades with

A live session made through the API (``POST /sessions`` with ``mode=live``) names one of its
owner's exchange credentials (``exchange_credentials``, encrypted with
``TRADELOOP_ENCRYPTION_KEY``); the engine that runs it decrypts that credential instead of
reading ``TRADELOOP_EXCHANGE_API_KEY``. NULL: a paper session, or a live one started with
``tradeloop live run --mode live`` on the engine host's own keys.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("credential_id", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key(
            "sessions_credential_id_fkey", "sessions", "exchange_credentials", ["credential_id"], ["id"]
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("sessions_credential_id_fkey", "sessions", type_="foreignkey")
    op.drop_column("sessions", "credential_id")
