"""row-level security on ``users`` (PostgreSQL); the API role loses ``engine_locks``

Migration 0008 left ``users`` open to the API role: a viewer's request could read every
password hash and raise its own role with one UPDATE. Under ``tradeloop_api`` now:

* SELECT: an admin sees every user; anyone else only their own row (sign-in, API keys and
  the WebSocket read the caller's row; listing users is an admin's);
* INSERT, UPDATE, DELETE: an admin only (``POST/PATCH /users``); nobody changes their own
  role or password hash through a request scoped as a non-admin.

The API role also loses every right on ``engine_locks`` (only the engine's processes, which
connect as the tables' owner, take those locks). The tables' owner (the engine, the CLI, the
API's sign-in before a caller is known) is not affected. On SQLite this migration does nothing.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

API_ROLE = "tradeloop_api"  # tradeloop.ops.row_security.API_ROLE
ADMIN = "tradeloop_rls_admin()"  # migration 0008's functions
USER = "tradeloop_rls_user()"
POLICIES = {  # policy -> its clause
    "tradeloop_users_read": f"FOR SELECT USING ({ADMIN} OR id = {USER})",
    "tradeloop_users_insert": f"FOR INSERT WITH CHECK ({ADMIN})",
    "tradeloop_users_update": f"FOR UPDATE USING ({ADMIN}) WITH CHECK ({ADMIN})",
    "tradeloop_users_delete": f"FOR DELETE USING ({ADMIN})",
}


def _role_available() -> bool:
    return bool(op.get_bind().exec_driver_sql(f"SELECT to_regrole('{API_ROLE}') IS NOT NULL").scalar())


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # 0008's functions, again (CREATE OR REPLACE: the same bodies), so this one stands on its own
    op.execute(
        "CREATE OR REPLACE FUNCTION tradeloop_rls_user() RETURNS integer LANGUAGE sql STABLE AS "
        "$$ SELECT nullif(current_setting('tradeloop.user_id', true), '')::integer $$"
    )
    op.execute(
        "CREATE OR REPLACE FUNCTION tradeloop_rls_admin() RETURNS boolean LANGUAGE sql STABLE AS "
        "$$ SELECT coalesce(current_setting('tradeloop.role', true), '') = 'admin' $$"
    )
    op.execute("ALTER TABLE users ENABLE ROW LEVEL SECURITY")
    for name, clause in POLICIES.items():
        op.execute(f"DROP POLICY IF EXISTS {name} ON users")
        op.execute(f"CREATE POLICY {name} ON users {clause}")
    if _role_available():
        op.execute(f"REVOKE ALL ON engine_locks FROM {API_ROLE}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in POLICIES:
        op.execute(f"DROP POLICY IF EXISTS {name} ON users")
    op.execute("ALTER TABLE users DISABLE ROW LEVEL SECURITY")
    if _role_available():
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON engine_locks TO {API_ROLE}")
