"""Row-level security on PostgreSQL: a transaction made on a user's behalf sees only that
user's rows, whatever its query asks for (migration 0008 holds the policies).

Rules:

1. **Who is scoped.** A :class:`RowScope` set in the current context (:func:`act_as`, or
   :func:`acting_as` for a block) applies to every transaction that begins afterwards on an
   engine passed to :func:`enforce_row_security`: each starts with ``SET LOCAL ROLE
   tradeloop_api`` and ``tradeloop.user_id`` / ``tradeloop.role`` set for that transaction
   only (one round trip; nothing outlives the transaction on a pooled connection). The
   context is a ``ContextVar``: an API request's task and the worker threads it hands work
   to carry it; other requests, the engine and the CLI do not.
2. **Nobody set, nothing changes.** Without a scope a transaction runs as the connecting
   user, the tables' owner, who bypasses the policies (the engine, the CLI, the API's own
   sign-in and audit writes).
3. **Fail closed.** Under the API role with no user set, the policies show no row.
4. **Only where it can hold.** :func:`enforce_row_security` installs the scoping only on
   PostgreSQL when the role exists and the connecting user is a member of it, and says
   whether it did; SQLite has no row-level security.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, event, text

log = logging.getLogger(__name__)
API_ROLE = "tradeloop_api"  # made by migration 0008


@dataclass(frozen=True, kw_only=True, slots=True)
class RowScope:
    """Whose rows a transaction may see: ``user_id``'s, or every row for an admin."""

    user_id: int
    admin: bool = False


_scope: ContextVar[RowScope | None] = ContextVar("tradeloop_row_scope", default=None)


def current_scope() -> RowScope | None:
    return _scope.get()


def act_as(scope: RowScope | None) -> None:
    """Scope every transaction begun from now on in this context (an API request's task)."""
    _scope.set(scope)


@contextmanager
def acting_as(scope: RowScope | None) -> Iterator[None]:
    """Scope the transactions begun inside the block (scripts, tests)."""
    token = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(token)


def role_usable(engine: Engine) -> bool:
    """Whether ``engine``'s user can take the API role (PostgreSQL, role made, granted)."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT to_regrole(:role) IS NOT NULL AND pg_has_role(current_user, :role, 'MEMBER')"),
                {"role": API_ROLE},
            ).scalar()
        )


def enforce_row_security(engine: Engine) -> bool:
    """Rule 1 and 4: scope ``engine``'s transactions by the context's :class:`RowScope`; False
    (and a warning on PostgreSQL) when the database cannot do it."""
    if not role_usable(engine):
        if engine.dialect.name == "postgresql":
            log.warning(
                "row-level security is off for the API: role %s is missing or not granted to the database user "
                "(run the migrations as a user that may create roles, or: CREATE ROLE %s NOLOGIN; GRANT %s TO "
                "<user>; then migrate again)",
                API_ROLE, API_ROLE, API_ROLE,
            )  # fmt: skip
        return False
    if not event.contains(engine, "begin", _begin):
        event.listen(engine, "begin", _begin)
    return True


def _begin(conn: Connection) -> None:
    scope = _scope.get()
    if scope is None:
        return
    conn.exec_driver_sql(
        "SELECT set_config('role', %(role)s, true), set_config('tradeloop.user_id', %(user)s, true), "
        "set_config('tradeloop.role', %(kind)s, true)",
        {"role": API_ROLE, "user": str(scope.user_id), "kind": "admin" if scope.admin else "user"},
    )
