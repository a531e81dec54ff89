"""identity: users, refresh tokens, API keys, encrypted exchange credentials, jobs; sessions
gain an owner

* users: username, argon2 password hash (NULL for a user of an OIDC provider, known by
  ``external_subject``), role (viewer, trader, admin), disabled.
* refresh_tokens: SHA-256 of each rotating refresh token, its family, expiry, use, revocation.
* api_keys: a service's key by its public prefix, the SHA-256 of its secret, scopes, expiry,
  revocation and the key it was rotated to.
* exchange_credentials: an exchange account's key and secret, encrypted (Fernet), per user.
* jobs: queued backtests and research runs, their status, attempts, result or error.
* sessions.owner_id: the user who owns the session; NULL for sessions made before users
  existed (an admin's). A foreign key on PostgreSQL; SQLite adds the bare column (it cannot
  add a constraint to an existing table).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(length=100), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("external_subject", sa.String(length=300), nullable=True, unique=True),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("family", sa.String(length=64), nullable=False, index=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ, nullable=True),
        sa.Column("revoked_at", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=24), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("revoked_at", TZ, nullable=True),
        sa.Column("rotated_to", sa.Integer(), nullable=True),
        sa.Column("last_used_at", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "exchange_credentials",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("exchange", sa.String(length=50), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("rotated_at", TZ, nullable=True),
        sa.UniqueConstraint("user_id", "name"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True, index=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False, index=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
    )
    op.add_column("sessions", sa.Column("owner_id", sa.Integer(), nullable=True))
    op.create_index("ix_sessions_owner_id", "sessions", ["owner_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key("sessions_owner_id_fkey", "sessions", "users", ["owner_id"], ["id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("sessions_owner_id_fkey", "sessions", type_="foreignkey")
    op.drop_index("ix_sessions_owner_id", table_name="sessions")
    op.drop_column("sessions", "owner_id")
    for table in ("jobs", "exchange_credentials", "api_keys", "refresh_tokens", "users"):
        op.drop_table(table)
