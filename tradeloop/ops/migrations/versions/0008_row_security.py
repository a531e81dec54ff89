"""row-level security (PostgreSQL): a user's rows are visible to that user (and admins) only

The API's second line of defence behind its own ownership checks (``api.deps``). On SQLite
this migration does nothing (SQLite has no row-level security; the API's checks are the
only line there).

Who is subject to it:

* The engine, the CLI and the dashboard connect as the tables' owner (the user that ran the
  migrations). An owner bypasses row-level security unless FORCE is set, and FORCE is not
  set: they keep reading and writing every row, with no setting to make.
* The API runs each request's transactions, once it knows the caller, under the role
  ``tradeloop_api`` (``SET LOCAL ROLE``; ``tradeloop.ops.row_security``), with
  ``tradeloop.user_id`` and ``tradeloop.role`` set for that transaction only. The migration
  creates the role (NOLOGIN) when the connecting user may create roles, grants it to that
  user, and grants it the table privileges a request needs (and the same on tables that
  later migrations create). The role is cluster-wide: a second database on the same server
  reuses it, and the downgrade leaves it.
* Any other role that is not the owner sees only what the policies allow: with no
  ``tradeloop.user_id`` set, nothing (fail closed).

The policies (PUBLIC, i.e. every role that does not bypass them): a row is visible and
writable when ``tradeloop.role`` is ``admin`` or when its owner is ``tradeloop.user_id``:

* sessions: ``owner_id`` (NULL: made from the CLI before there were users: an admin's);
* orders, fills, positions, equity, thresholds, cash_flows: their session's owner;
* audit_log and outbox: rows of a session: its owner's; rows of no session (system and
  request events) are readable and insertable by every API user (the API decides who may
  list them); audit rows are never updated or deleted (migration 0002's triggers);
* api_keys, exchange_credentials, refresh_tokens: ``user_id``; jobs: ``owner_id``.

A row written under the API role must pass the same rule (``WITH CHECK``): a user cannot
insert an order into another user's session or give away a session.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

API_ROLE = "tradeloop_api"  # tradeloop.ops.row_security.API_ROLE
ADMIN = "tradeloop_rls_admin()"
USER = "tradeloop_rls_user()"
OWN_SESSIONS = f"(SELECT s.id FROM sessions s WHERE s.owner_id = {USER})"
POLICIES = {  # table -> the rule a row must pass
    "sessions": f"{ADMIN} OR owner_id = {USER}",
    **{
        table: f"{ADMIN} OR session_id IN {OWN_SESSIONS}"
        for table in ("orders", "fills", "positions", "equity", "thresholds", "cash_flows")
    },
    **{table: f"{ADMIN} OR user_id = {USER}" for table in ("api_keys", "exchange_credentials", "refresh_tokens")},
    "jobs": f"{ADMIN} OR owner_id = {USER}",
}
SHARED = {  # tables whose rows of no session are everyone's
    "audit_log": f"{ADMIN} OR session_id IS NULL OR session_id IN {OWN_SESSIONS}",
    "outbox": f"{ADMIN} OR session_id IS NULL OR session_id IN {OWN_SESSIONS}",
}


ROLE_SETUP = f"""
DO $$
BEGIN
    IF to_regrole('{API_ROLE}') IS NULL
       AND (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
        BEGIN
            CREATE ROLE {API_ROLE} NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database's migration made it at the same moment
        END;
    END IF;
    IF to_regrole('{API_ROLE}') IS NOT NULL AND NOT pg_has_role(current_user, '{API_ROLE}', 'MEMBER') THEN
        BEGIN
            EXECUTE 'GRANT {API_ROLE} TO ' || quote_ident(current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING USING MESSAGE = 'cannot grant {API_ROLE} to ' || current_user
                || ': the API runs without row-level security until an administrator grants it';
        END;
    END IF;
END
$$
"""


def _role_available() -> bool:
    return bool(op.get_bind().exec_driver_sql(f"SELECT to_regrole('{API_ROLE}') IS NOT NULL").scalar())


def _schema() -> str:
    name = op.get_bind().exec_driver_sql("SELECT current_schema()").scalar()
    return '"' + str(name).replace('"', '""') + '"'


def _policies(table: str) -> tuple[str, ...]:
    if table in POLICIES:
        return ("tradeloop_owner",)
    return ("tradeloop_read", "tradeloop_insert") + (("tradeloop_update",) if table == "outbox" else ())


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # the settings read '' (not NULL) once a transaction that set them LOCAL has ended
    op.execute(
        "CREATE OR REPLACE FUNCTION tradeloop_rls_user() RETURNS integer LANGUAGE sql STABLE AS "
        "$$ SELECT nullif(current_setting('tradeloop.user_id', true), '')::integer $$"
    )
    op.execute(
        "CREATE OR REPLACE FUNCTION tradeloop_rls_admin() RETURNS boolean LANGUAGE sql STABLE AS "
        "$$ SELECT coalesce(current_setting('tradeloop.role', true), '') = 'admin' $$"
    )
    op.execute(ROLE_SETUP)
    for table, rule in POLICIES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY tradeloop_owner ON {table} USING ({rule}) WITH CHECK ({rule})")
    for table, rule in SHARED.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY tradeloop_read ON {table} FOR SELECT USING ({rule})")
        op.execute(f"CREATE POLICY tradeloop_insert ON {table} FOR INSERT WITH CHECK ({rule})")
        if table == "outbox":  # the relay marks its rows relayed
            op.execute(f"CREATE POLICY tradeloop_update ON {table} FOR UPDATE USING ({rule}) WITH CHECK ({rule})")
    if _role_available():
        schema = _schema()
        op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {API_ROLE}")
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {API_ROLE}")
        op.execute(f"REVOKE INSERT, UPDATE, DELETE ON tradeloop_alembic_version FROM {API_ROLE}")
        op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {API_ROLE}")
        for what, grant in (("TABLES", "SELECT, INSERT, UPDATE, DELETE"), ("SEQUENCES", "USAGE, SELECT")):
            op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT {grant} ON {what} TO {API_ROLE}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in (*POLICIES, *SHARED):
        for policy in _policies(table):
            op.execute(f"DROP POLICY {policy} ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION tradeloop_rls_user()")
    op.execute("DROP FUNCTION tradeloop_rls_admin()")
    if _role_available():  # its privileges in this database go; the role stays (other databases may use it)
        schema = _schema()
        for what in ("TABLES", "SEQUENCES"):
            op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON {what} FROM {API_ROLE}")
            op.execute(f"REVOKE ALL ON ALL {what} IN SCHEMA {schema} FROM {API_ROLE}")
        op.execute(f"REVOKE USAGE ON SCHEMA {schema} FROM {API_ROLE}")
