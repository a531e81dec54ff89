"""Exchange credentials through the real HTTP stack over PostgreSQL (row-level security on): a
trader stores their account's key and secret, encrypted at rest; no answer, log line or audit
row ever holds them; nobody else sees them; a live session names one, and it cannot be removed
while that session may trade."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlalchemy import select

from tests.api.conftest import Api, start_api
from tradeloop.errors import NotFoundError
from tradeloop.identity import Role, Scope, Vault
from tradeloop.ops import TradingSession
from tradeloop.ops.identity_models import ExchangeCredential
from tradeloop.ops.session_spec import SessionSpec, create_session
from tradeloop.registry import ModelRegistry

KEY = Fernet.generate_key().decode()
ACCOUNT = {"name": "main", "exchange": "coinbase", "api_key": "ana-api-key-7f3e", "secret": "ana-secret-9c1d"}
NEW = {"name": "btc-live", "symbols": ["BTC-USD"], "feed": "ccxt"}
LIVE_MAIN = {"mode": "live", "credential": "main"}


@pytest.fixture
def vault_api(tmp_path: Path, pg_database: str) -> Iterator[Api]:
    """The API over PostgreSQL with TRADELOOP_ENCRYPTION_KEY set."""
    yield from start_api(tmp_path, pg_database, TRADELOOP_ENCRYPTION_KEY=KEY)


def _signed_in(api: Api, name: str, role: Role = Role.TRADER) -> dict[str, str]:
    api.user(name, role)
    return api.login(name)


def _stored_rows(api: Api) -> list[ExchangeCredential]:
    with api.ctx.store.transaction() as db:
        return list(db.scalars(select(ExchangeCredential).order_by(ExchangeCredential.id)))


def test_a_stored_secret_is_encrypted_and_never_in_an_answer_a_log_line_or_the_audit(
    vault_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = vault_api
    ana = _signed_in(api, "ana")
    with caplog.at_level(logging.DEBUG):
        made = api.client.post("/credentials", json=ACCOUNT, headers=ana)
        listed = api.client.get("/credentials", headers=ana)
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "main" and made.json()["exchange"] == "coinbase" and made.json()["rotated_at"] is None
    assert listed.json() == [made.json()]
    for text in (made.text, listed.text, caplog.text, *(str(a.detail) for a in api.ctx.store.audit_log())):
        assert ACCOUNT["api_key"] not in text and ACCOUNT["secret"] not in text
    [row] = _stored_rows(api)
    assert ACCOUNT["secret"] not in row.ciphertext and ACCOUNT["api_key"] not in row.ciphertext
    secret = Vault(KEY).decrypt(row.ciphertext)
    assert (secret.api_key, secret.secret, secret.password) == (ACCOUNT["api_key"], ACCOUNT["secret"], None)


def test_storing_again_under_the_name_replaces_the_secret_in_place(vault_api: Api) -> None:
    api = vault_api
    ana = _signed_in(api, "ana")
    first = api.client.post("/credentials", json=ACCOUNT, headers=ana).json()
    again = api.client.post("/credentials", json=ACCOUNT | {"secret": "rotated-at-the-exchange"}, headers=ana)
    assert again.status_code == 201 and again.json()["id"] == first["id"] and again.json()["rotated_at"] is not None
    [row] = _stored_rows(api)
    assert Vault(KEY).decrypt(row.ciphertext).secret == "rotated-at-the-exchange"


def test_another_users_credential_does_not_exist_for_them_and_an_admin_sees_but_never_reads_it(vault_api: Api) -> None:
    api = vault_api
    ana, bob = _signed_in(api, "ana"), _signed_in(api, "bob")
    admin = _signed_in(api, "root", Role.ADMIN)
    made = api.client.post("/credentials", json=ACCOUNT, headers=ana).json()
    assert api.client.get("/credentials", headers=bob).json() == []
    assert api.client.delete(f"/credentials/{made['id']}", headers=bob).status_code == 404
    assert [c["id"] for c in api.client.get("/credentials", headers=admin).json()] == [made["id"]]
    assert len(_stored_rows(api)) == 1  # bob's delete touched nothing
    assert api.client.delete(f"/credentials/{made['id']}", headers=admin).status_code == 204
    assert _stored_rows(api) == []


def test_a_viewer_an_api_key_and_a_server_without_the_encryption_key_are_refused(
    vault_api: Api, tmp_path: Path, pg_database: str
) -> None:
    api = vault_api
    viewer = _signed_in(api, "val", Role.VIEWER)
    assert api.client.post("/credentials", json=ACCOUNT, headers=viewer).status_code == 403
    ana = _signed_in(api, "ana")
    key = api.client.post("/keys", json={"name": "bot", "scopes": [Scope.TRADE.value]}, headers=ana).json()["key"]
    by_key = api.client.post("/credentials", json=ACCOUNT, headers={"X-API-Key": key})
    assert by_key.status_code == 403 and "sign in as the user" in by_key.json()["detail"]
    bad = api.client.post("/credentials", json=ACCOUNT | {"exchange": "binanse"}, headers=ana)
    assert bad.status_code == 422 and "did you mean 'binance'" in bad.text
    assert _stored_rows(api) == []

    plain = start_api(tmp_path / "plain", pg_database)  # the same database, served without the key
    other = next(plain)
    try:
        refused = other.client.post("/credentials", json=ACCOUNT, headers=other.login("ana"))
        assert refused.status_code == 503 and refused.headers["content-type"] == "application/problem+json"
        assert "TRADELOOP_ENCRYPTION_KEY" in refused.json()["detail"]
    finally:
        plain.close()
    assert _stored_rows(api) == []


def test_a_live_session_names_one_of_its_owners_credentials_for_its_exchange(vault_api: Api) -> None:
    api = vault_api
    ana, bob = _signed_in(api, "ana"), _signed_in(api, "bob")
    mine = api.client.post("/credentials", json=ACCOUNT, headers=ana).json()
    api.client.post("/credentials", json=ACCOUNT | {"name": "bobs"}, headers=bob)
    api.client.post("/credentials", json=ACCOUNT | {"name": "spot", "exchange": "binance"}, headers=ana)
    refused = api.client.post(
        "/sessions", json=NEW | {"mode": "live", "credential": "main", "feed": "replay"}, headers=ana
    )
    assert refused.status_code == 422 and "a live session sends real orders" in refused.text
    cases = [
        ({"mode": "live"}, None, "a live session trades with one of your stored exchange credentials"),
        ({"mode": "live", "credential": "bobs"}, "bobs", "you have no exchange credential named 'bobs'"),
        ({"mode": "live", "credential": "spot"}, "spot", "it is a binance account; name a credential of coinbase"),
        ({"credential": "main"}, "main", "a paper session sends no order: drop credential"),
    ]
    for options, value, fix in cases:
        refused = api.client.post("/sessions", json=NEW | options, headers=ana)
        assert refused.status_code == 422, refused.text
        [problem] = [e for e in refused.json()["errors"] if e["field"] == "body.credential"]
        assert problem.get("value") == value and fix in problem["fix"]
    with api.ctx.store.transaction() as db:
        assert db.scalars(select(TradingSession)).all() == []

    made = api.client.post("/sessions", json=NEW | {"mode": "live", "credential": "main"}, headers=ana)
    assert made.status_code == 201, made.text
    assert made.json()["mode"] == "live" and made.json()["credential_id"] == mine["id"]
    assert "--mode" not in made.json()["run_command"]  # the row holds the mode and the credential

    in_use = api.client.delete(f"/credentials/{mine['id']}", headers=ana)
    assert in_use.status_code == 409 and "['btc-live'] trade with" in in_use.json()["detail"]
    api.client.post(f"/sessions/{made.json()['id']}/stop", headers=ana)
    assert api.client.delete(f"/credentials/{mine['id']}", headers=ana).status_code == 204
    assert api.client.get(f"/sessions/{made.json()['id']}", headers=ana).json()["credential_id"] is None


@pytest.mark.parametrize(
    "body",
    [
        ACCOUNT | {"api_secret": "s3cr3t-typo"},  # an unknown field named like a secret
        {k: v for k, v in ACCOUNT.items() if k != "api_key"} | {"apiKey": ACCOUNT["api_key"]},  # a missing field
        ACCOUNT | {"secret": ACCOUNT["secret"] + "x" * 600},  # too long
        ACCOUNT | {"secret": 987654321},  # not text
        ACCOUNT | {"passphrase": "p4ss-phr4se"},
        [ACCOUNT],  # a list where an object belongs
    ],
)
def test_a_refused_body_never_echoes_a_secret(vault_api: Api, body) -> None:
    """A 422 names the field and the fix; the value of a field named like a secret, a whole
    body and a whole object are never in it (found by a hostile review: they were)."""
    api = vault_api
    ana = _signed_in(api, "ana")
    answer = api.client.post("/credentials", json=body, headers=ana)
    assert answer.status_code == 422, answer.text
    for secret in (ACCOUNT["api_key"], ACCOUNT["secret"], "s3cr3t-typo", "987654321", "p4ss-phr4se"):
        assert secret not in answer.text, answer.text
    assert answer.json()["errors"][0]["field"].startswith("body")
    login = api.client.post("/auth/login", json={"user": "ana", "password": "hunter2-hunter2"})
    assert login.status_code == 422 and "hunter2-hunter2" not in login.text


def test_a_credential_keeps_its_exchange_when_its_secret_is_replaced(vault_api: Api) -> None:
    """A live coinbase session trades with `main`: storing `main` again as a binance account is
    refused (the session would trade coinbase with binance keys)."""
    api = vault_api
    ana = _signed_in(api, "ana")
    api.client.post("/credentials", json=ACCOUNT, headers=ana)
    made = api.client.post("/sessions", json=NEW | {"mode": "live", "credential": "main"}, headers=ana)
    assert made.status_code == 201, made.text
    moved = api.client.post("/credentials", json=ACCOUNT | {"exchange": "binance"}, headers=ana)
    assert moved.status_code == 422 and "is a coinbase account" in moved.json()["detail"]
    [row] = _stored_rows(api)
    assert row.exchange == "coinbase" and Vault(KEY).decrypt(row.ciphertext).secret == ACCOUNT["secret"]


def test_a_credential_removed_while_a_session_naming_it_is_made_is_refused_one_way_or_the_other(
    vault_api: Api, pg_database: str
) -> None:
    """POST /sessions and DELETE /credentials/{id} at the same moment: the session's transaction
    is held (another connection locks audit_log, which it writes last) while the removal comes;
    the removal waits for it and answers 409 naming the session, never a server error or a
    session left trading with a removed credential. A credential removed after the request
    looked it up refuses the session (422 on body.credential, nothing stored)."""
    api = vault_api
    ana = _signed_in(api, "ana")
    mine = api.client.post("/credentials", json=ACCOUNT, headers=ana).json()
    locker = sa.create_engine(pg_database)
    answers: dict[str, httpx.Response] = {}

    def call(what: str, method: str, path: str, **options) -> None:
        with httpx.Client(base_url=api.url, timeout=60) as client:
            answers[what] = client.request(method, path, headers=ana, **options)

    def waiting(count: int) -> None:
        query = sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        for _ in range(600):
            with locker.connect() as watch:  # a fresh transaction: the view is a snapshot within one
                if watch.execute(query).scalar_one() >= count:
                    return
            time.sleep(0.05)
        raise AssertionError(f"{count} transaction(s) never waited on a lock")

    made = threading.Thread(target=call, args=("made", "POST", "/sessions"), kwargs={"json": NEW | LIVE_MAIN})
    removed = threading.Thread(target=call, args=("removed", "DELETE", f"/credentials/{mine['id']}"))
    with locker.connect() as db, db.begin() as held:
        db.execute(sa.text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
        made.start()
        waiting(1)  # the session's row is in, its audit row waits
        removed.start()
        waiting(2)  # the removal waits on the credential the session holds
        held.commit()
    made.join(60)
    removed.join(60)
    locker.dispose()
    assert answers["made"].status_code == 201, answers["made"].text
    assert answers["removed"].status_code == 409, answers["removed"].text
    assert "['btc-live'] trade with" in answers["removed"].json()["detail"]
    assert [row.id for row in _stored_rows(api)] == [mine["id"]]

    spare = api.client.post("/credentials", json=ACCOUNT | {"name": "spare"}, headers=ana).json()
    registry = ModelRegistry(api.ctx.settings.registry_dir)
    spec = SessionSpec(name="late", exchange="coinbase", symbols=("BTC-USD",), feed="ccxt", mode="live")
    assert api.client.delete(f"/credentials/{spare['id']}", headers=ana).status_code == 204
    with pytest.raises(NotFoundError, match=f"exchange credential id {spare['id']} was removed"):
        create_session(api.ctx.store, registry, spec, owner_id=mine["user_id"], credential_id=spare["id"])
    with api.ctx.store.transaction() as db:
        assert [s.name for s in db.scalars(select(TradingSession))] == ["btc-live"]


def test_a_live_session_whose_symbols_are_on_another_venue_is_refused_at_post(vault_api: Api) -> None:
    """A stored credential is one venue's account: a live session with a symbol on another venue
    (``kraken:BTC-USD``) could never start (the engine refuses it), so POST /sessions answers 422."""
    api = vault_api
    ana = _signed_in(api, "ana")
    api.client.post("/credentials", json=ACCOUNT, headers=ana)
    for symbols in (["BTC-USD", "kraken:BTC-USD"], ["kraken:BTC-USD"]):
        refused = api.client.post("/sessions", json=NEW | LIVE_MAIN | {"symbols": symbols}, headers=ana)
        assert refused.status_code == 422, refused.text
        [problem] = [e for e in refused.json()["errors"] if e["field"] == "body.symbols"]
        assert "one coinbase account" in problem["fix"]
        assert "['coinbase', 'kraken']" in problem["fix"] or "['kraken']" in problem["fix"]
    with api.ctx.store.transaction() as db:
        assert db.scalars(select(TradingSession)).all() == []
    made = api.client.post("/sessions", json=NEW | LIVE_MAIN, headers=ana)  # its own exchange's symbols: fine
    assert made.status_code == 201, made.text
