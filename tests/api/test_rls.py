"""Row-level security on the real PostgreSQL server (migration 0008), the API's second line
of defence: a transaction made for one user sees, changes and adds none of another user's
rows whatever its SQL asks for, on its own (with the API's ownership checks switched off);
an admin sees every row; the API role with no user set sees nothing; the engine's and the
CLI's connection (the tables' owner) is not affected. On SQLite the migration does nothing."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from api.deps import Principal
from tests.api.conftest import Api
from tests.api.test_attacks import session_of
from tests.ops.test_audit import own_pg_url  # noqa: F401  (a database of this test's own)
from tests.ops.test_in_sample import HEAD, _downgrade, _version, url  # noqa: F401
from tradeloop.identity import IdentityStore, Role, Scope
from tradeloop.ops import (
    ApiKey,
    EquityPoint,
    ExchangeCredential,
    Fill,
    Job,
    OpsStore,
    Order,
    Position,
    ThresholdInForce,
    TradingSession,
    connect,
    migrate,
)
from tradeloop.ops.models import CashFlow, OutboxEvent
from tradeloop.ops.row_security import API_ROLE, RowScope, acting_as, enforce_row_security

NOW = datetime(2026, 1, 5, tzinfo=UTC)
PROTECTED = ("sessions", "orders", "fills", "positions", "equity", "thresholds", "cash_flows", "audit_log", "outbox",
             "api_keys", "exchange_credentials", "refresh_tokens", "jobs")  # fmt: skip
LATER = ("users", "challengers", "challenger_returns")  # migrations 0009 and 0012


@dataclass
class Owner:
    user_id: int
    session_id: int


def seed(store: OpsStore, identity: IdentityStore, username: str, role: Role = Role.TRADER) -> Owner:
    """A user with a session and one row of theirs in every protected table (written as the
    tables' owner, as the engine writes them)."""
    user = identity.create_user(username=username, password=None, role=role)
    session = store.create_session(name=f"{username}-s", strategy="sma_cross", exchange="binance", timeframe="1m",
                                   symbols=["BTC/USDT"], mode="paper", init_cash=1000.0, config={})  # fmt: skip
    identity.create_api_key(user_id=user.id, name="svc", scopes=[Scope.READ], now=NOW)
    identity.issue_refresh(user.id, now=NOW)
    sid = session.id
    with store.transaction() as db:
        db.get(TradingSession, sid).owner_id = user.id
        order = Order(session_id=sid, client_order_id=f"{username}-o1", venue="paper", symbol="BTC/USDT", side="buy",
                      intent="enter_long", decided_ts=1, status="filled")  # fmt: skip
        db.add(order)
        db.flush()
        db.add_all([
            Fill(order_id=order.id, session_id=sid, venue="paper", symbol="BTC/USDT", trade_id=f"{username}-t1",
                 side="buy", quantity=0.1, price=100.0, fee=0.0, ts=1),
            Position(session_id=sid, venue="paper", symbol="BTC/USDT", quantity=0.1, entry_price=100.0),
            EquityPoint(session_id=sid, ts=1, equity=1000.0, cash=990.0),
            ThresholdInForce(session_id=sid, source="static", threshold=0.6, reason="test"),
            CashFlow(session_id=sid, venue="paper", symbol="BTC/USDT", kind="funding", flow_id=f"{username}-f",
                     amount=-0.1, ts=1),
            OutboxEvent(session_id=sid, stream="orders", payload={"who": username}),
            ExchangeCredential(user_id=user.id, name="main", exchange="binance", ciphertext="x"),
            Job(owner_id=user.id, kind="backtest", status="queued", params={}),
        ])  # fmt: skip
    return Owner(user_id=user.id, session_id=sid)


def theirs(owner: Owner) -> dict[str, str]:
    """A forged filter per table: the rows of ``owner``, named by literal ids."""
    by_session = f"session_id = {owner.session_id}"
    by_user = f"user_id = {owner.user_id}"
    return {
        "sessions": f"id = {owner.session_id}", **{t: by_session for t in PROTECTED[1:9]},
        "api_keys": by_user, "exchange_credentials": by_user, "refresh_tokens": by_user,
        "jobs": f"owner_id = {owner.user_id}",
    }  # fmt: skip


@pytest.fixture
def pg(pg_database: str) -> Iterator[tuple[OpsStore, Owner, Owner]]:
    store = OpsStore.open(pg_database)
    assert enforce_row_security(store.engine)
    identity = IdentityStore(store)
    ana, bob = seed(store, identity, "ana"), seed(store, identity, "bob")
    with store.transaction() as db:  # a row of no session: the API's request log
        OpsStore.audit(db, "api_request", detail={"path": "/health"}, actor="anonymous")
    yield store, ana, bob
    store.close()


def count(store: OpsStore, table: str, where: str = "true") -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one()


def test_a_users_transactions_see_none_of_another_users_rows_whatever_they_ask(pg) -> None:
    store, ana, bob = pg
    for table, forged in theirs(bob).items():
        assert count(store, table, forged) >= 1, table  # the engine's connection (the owner) sees bob's rows
        with acting_as(RowScope(user_id=ana.user_id)):
            assert count(store, table, forged) == 0, table  # ana asks for them by id: nothing
            assert count(store, table, theirs(ana)[table]) >= 1, table  # her own are there
    with acting_as(RowScope(user_id=ana.user_id)):
        assert [s.name for s in store.sessions()] == ["ana-s"]  # the store's own queries too
        assert count(store, "audit_log", "session_id IS NULL") == 1  # rows of no session are shared
        with store.engine.connect() as conn:  # the role really is the API's, for this transaction only
            assert conn.execute(sa.text("SELECT current_user")).scalar_one() == API_ROLE
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_user")).scalar_one() != API_ROLE


def test_a_user_cannot_change_take_or_give_away_another_users_rows(pg) -> None:
    store, ana, bob = pg
    with acting_as(RowScope(user_id=ana.user_id)):
        with store.engine.begin() as conn:
            stop = conn.execute(sa.text(f"UPDATE sessions SET status = 'stopped' WHERE id = {bob.session_id}"))
            revoke = conn.execute(sa.text(f"UPDATE api_keys SET revoked_at = now() WHERE user_id = {bob.user_id}"))
            delete = conn.execute(sa.text(f"DELETE FROM jobs WHERE owner_id = {bob.user_id}"))
            assert stop.rowcount == revoke.rowcount == delete.rowcount == 0
        with pytest.raises(DBAPIError, match="row-level security"), store.transaction() as db:
            db.add(Order(session_id=bob.session_id, client_order_id="ana-into-bob", venue="paper", symbol="BTC/USDT",
                         side="sell", intent="exit_long", decided_ts=2, status="new"))  # fmt: skip
        with pytest.raises(DBAPIError, match="row-level security"), store.engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE sessions SET owner_id = {bob.user_id} WHERE id = {ana.session_id}"))
        with pytest.raises(DBAPIError, match="row-level security"), store.transaction() as db:
            db.add(Job(owner_id=bob.user_id, kind="backtest", status="queued", params={}))
    assert store.session("bob-s").status == "running"
    assert count(store, "api_keys", f"user_id = {bob.user_id} AND revoked_at IS NULL") == 1
    assert count(store, "orders", "client_order_id = 'ana-into-bob'") == 0


def test_an_admin_sees_every_row_and_the_api_role_without_a_user_sees_none(pg) -> None:
    store, ana, bob = pg
    with acting_as(RowScope(user_id=ana.user_id, admin=True)):
        admin_view = {t: count(store, t) for t in PROTECTED}
    assert admin_view == {t: count(store, t) for t in PROTECTED}  # as much as the owner sees
    with store.engine.connect() as conn:
        conn.execute(sa.text(f"SET ROLE {API_ROLE}"))  # fail closed: the role, no user
        seen = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in PROTECTED}
        conn.execute(sa.text("RESET ROLE"))
    assert seen == {t: (1 if t == "audit_log" else 0) for t in PROTECTED}  # only the shared request log row


def test_through_the_api_with_its_ownership_checks_switched_off_the_database_still_refuses(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api.ctx.row_security
    ana_id, bob_id = api.user("ana", Role.TRADER), api.user("bob", Role.TRADER)
    ana, bob = api.login("ana"), api.login("bob")
    anas = api.client.post("/keys", json={"name": "ana-svc", "scopes": ["read"]}, headers=ana).json()
    bobs = api.client.post("/keys", json={"name": "bob-svc", "scopes": ["read"]}, headers=bob).json()
    her_session, his_session = session_of(api, ana_id, "ana-live"), session_of(api, bob_id, "bob-live")
    # the API's first line off: every caller passes its ownership checks and lists as an admin would
    monkeypatch.setattr(Principal, "can_see", lambda self, owner_id: True)
    monkeypatch.setattr(Principal, "is_admin", property(lambda self: True))
    assert [k["id"] for k in api.client.get("/keys", headers=bob).json()] == [bobs["id"]]
    assert api.client.post(f"/keys/{anas['id']}/rotate", headers=bob).status_code == 404
    assert api.client.delete(f"/keys/{anas['id']}", headers=bob).status_code == 404
    assert api.client.get("/auth/me", headers={"X-API-Key": anas["key"]}).status_code == 200  # untouched
    with api.ctx.store.transaction() as db:
        assert db.get(ApiKey, anas["id"]).revoked_at is None
    assert [s["id"] for s in api.client.get("/sessions", headers=bob).json()["items"]] == [his_session]
    for part in ("", "/orders", "/equity", "/audit"):
        assert api.client.get(f"/sessions/{her_session}{part}", headers=bob).status_code == 404, part
    assert api.client.post(f"/sessions/{her_session}/stop", headers=bob).status_code == 404
    assert api.ctx.store.session("ana-live").status == "running"
    assert api.client.post(f"/sessions/{his_session}/pause", headers=bob).status_code == 200  # his own: fine


def test_without_row_level_security_the_same_bypass_leaks_which_is_why_postgresql_has_it(
    sqlite_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = sqlite_api
    assert not api.ctx.row_security
    api.user("ana", Role.TRADER)
    api.user("bob", Role.TRADER)
    ana, bob = api.login("ana"), api.login("bob")
    anas = api.client.post("/keys", json={"name": "ana-svc", "scopes": ["read"]}, headers=ana).json()
    assert api.client.delete(f"/keys/{anas['id']}", headers=bob).status_code == 404  # the first line holds
    monkeypatch.setattr(Principal, "can_see", lambda self, owner_id: True)
    assert api.client.delete(f"/keys/{anas['id']}", headers=bob).status_code == 204  # with it off: gone


def test_a_viewer_sees_only_their_own_users_row_and_cannot_change_any_role_while_an_admin_can(pg) -> None:
    store, ana, bob = pg  # migration 0009
    with acting_as(RowScope(user_id=ana.user_id)):
        with store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, password_hash FROM users")).all()
            assert [r.id for r in rows] == [ana.user_id]
        with store.engine.begin() as conn:
            own = conn.execute(sa.text(f"UPDATE users SET role = 'admin' WHERE id = {ana.user_id}"))
            other = conn.execute(sa.text(f"UPDATE users SET disabled = true WHERE id = {bob.user_id}"))
            gone = conn.execute(sa.text(f"DELETE FROM users WHERE id = {bob.user_id}"))
            assert own.rowcount == other.rowcount == gone.rowcount == 0
        with pytest.raises(DBAPIError, match="row-level security"), store.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO users (username, role, disabled, created_at) "
                                 "VALUES ('mallory', 'admin', false, now())"))  # fmt: skip
        with pytest.raises(DBAPIError, match="permission denied"), store.engine.connect() as conn:
            conn.execute(sa.text("SELECT count(*) FROM engine_locks"))
    assert count(store, "users", "role = 'admin' OR disabled OR username = 'mallory'") == 0
    with acting_as(RowScope(user_id=ana.user_id, admin=True)):
        assert count(store, "users") == 2
        with store.engine.begin() as conn:
            assert conn.execute(sa.text(f"UPDATE users SET role = 'viewer' WHERE id = {bob.user_id}")).rowcount == 1
    assert count(store, "users", f"id = {bob.user_id} AND role = 'viewer'") == 1


def test_migration_0009_downgrade_opens_users_and_engine_locks_again(url: str) -> None:
    engine = connect(url)
    migrate(engine)
    _downgrade(engine, "0008")
    assert _version(engine) == "0008"
    if engine.dialect.name == "postgresql":
        assert "users" not in _rls_tables(engine)
        with engine.connect() as conn:
            policies = "SELECT count(*) FROM pg_policies WHERE tablename = 'users'"
            assert conn.execute(sa.text(policies)).scalar_one() == 0
            locks = f"SELECT has_table_privilege('{API_ROLE}', 'engine_locks', 'SELECT')"
            assert conn.execute(sa.text(locks)).scalar_one()
    migrate(engine)
    assert _version(engine) == HEAD
    if engine.dialect.name == "postgresql":
        assert "users" in _rls_tables(engine)
    engine.dispose()


# ---------------------------------------------------------------------------- the migration
def _rls_tables(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT relname FROM pg_class WHERE relrowsecurity AND relkind = 'r'"))
        return {r[0] for r in rows}


def test_migration_0008_enables_the_policies_on_postgresql_and_its_downgrade_removes_them(url: str) -> None:
    engine = connect(url)
    migrate(engine)
    assert _version(engine) == HEAD
    if engine.dialect.name == "sqlite":  # nothing to do there: 0009's schema is 0007's
        _downgrade(engine, "0009")  # the later migrations' own tables out of the way
        before = set(sa.inspect(engine).get_table_names())
        _downgrade(engine, "0007")
        assert _version(engine) == "0007" and set(sa.inspect(engine).get_table_names()) == before
        migrate(engine)
        return
    assert _rls_tables(engine) == {*PROTECTED, *LATER}
    with engine.connect() as conn:
        member = f"SELECT pg_has_role(current_user, '{API_ROLE}', 'MEMBER')"
        assert conn.execute(sa.text(member)).scalar_one()
        grants = f"SELECT has_table_privilege('{API_ROLE}', 'orders', 'INSERT')"
        assert conn.execute(sa.text(grants)).scalar_one()
        version = f"SELECT has_table_privilege('{API_ROLE}', 'tradeloop_alembic_version', 'UPDATE')"
        assert not conn.execute(sa.text(version)).scalar_one()
    _downgrade(engine, "0007")
    assert _rls_tables(engine) == set()
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT count(*) FROM pg_policies WHERE policyname LIKE 'tradeloop%'")).scalar() == 0
        )
        assert not conn.execute(sa.text(f"SELECT has_table_privilege('{API_ROLE}', 'orders', 'SELECT')")).scalar()
    migrate(engine)  # again, with the role already there
    assert _rls_tables(engine) == {*PROTECTED, *LATER} and _version(engine) == HEAD
    engine.dispose()


def test_the_api_says_so_and_runs_without_row_security_when_its_database_user_lacks_the_role(
    pg_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    owner = connect(pg_database)
    migrate(owner)
    stranger = f"tradeloop_t_{uuid.uuid4().hex[:8]}"  # a database user the API role was not granted to
    with owner.begin() as conn:
        conn.execute(sa.text(f"CREATE ROLE {stranger} LOGIN"))
    engine = connect(sa.make_url(pg_database).set(username=stranger).render_as_string(hide_password=False))
    try:
        with caplog.at_level(logging.WARNING, logger="tradeloop.ops.row_security"):
            assert not enforce_row_security(engine)
        assert "row-level security is off" in caplog.text and f"GRANT {API_ROLE}" in caplog.text
    finally:
        engine.dispose()
        with owner.begin() as conn:
            conn.execute(sa.text(f"DROP ROLE {stranger}"))
        owner.dispose()
    caplog.clear()
    assert not enforce_row_security(connect("sqlite://"))  # SQLite: nothing to enforce, nothing to say
    assert caplog.text == ""
