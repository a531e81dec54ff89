"""What a hostile review of the API found, each fixed and pinned here: real HTTP through
uvicorn over a throwaway PostgreSQL database (SQLite where said)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import select

from tests.api.conftest import Api
from tradeloop.identity import Role
from tradeloop.ops.identity_models import ApiKey, RefreshToken


def _key(api: Api, headers: dict[str, str], name: str, scopes: list[str]) -> dict:
    made = api.client.post("/keys", json={"name": name, "scopes": scopes}, headers=headers)
    assert made.status_code == 201, made.text
    return made.json()


def test_a_read_key_cannot_rotate_its_users_trade_key_into_a_fresh_trade_key(api: Api) -> None:
    api.user("tess", Role.TRADER)
    tess = api.login("tess")
    trade = _key(api, tess, "bot", ["trade"])
    read = _key(api, tess, "reader", ["read"])
    as_reader = {"X-API-Key": read["key"]}
    assert api.client.get("/auth/me", headers=as_reader).json()["role"] == "viewer"

    rotated = api.client.post(f"/keys/{trade['id']}/rotate", headers=as_reader)
    assert rotated.status_code == 403, rotated.text
    assert "sign in as the user" in rotated.json()["detail"]
    itself = api.client.post(f"/keys/{read['id']}/rotate", headers=as_reader)  # outliving its own rotation
    assert itself.status_code == 403
    revoked = api.client.delete(f"/keys/{trade['id']}", headers=as_reader)
    assert revoked.status_code == 403
    with api.ctx.store.transaction() as db:
        rows = {k.id: k for k in db.scalars(select(ApiKey))}
    assert len(rows) == 2  # no key was minted
    assert rows[trade["id"]].revoked_at is None and rows[trade["id"]].rotated_to is None
    assert api.client.get("/auth/me", headers={"X-API-Key": trade["key"]}).json()["role"] == "trader"

    # a key may still revoke itself, and the signed-in user may rotate any of theirs
    assert api.client.delete(f"/keys/{read['id']}", headers=as_reader).status_code == 204
    assert api.client.get("/auth/me", headers=as_reader).status_code == 401
    assert api.client.post(f"/keys/{trade['id']}/rotate", headers=tess).status_code == 200


def test_nan_or_infinity_in_a_body_is_a_422_problem_not_a_500(api: Api) -> None:
    api.user("tess", Role.TRADER)
    headers = {**api.login("tess"), "content-type": "application/json"}
    bodies = {  # JSON extensions Python's parser accepts; the problem document must still be JSON
        "/backtests": '{"strategy": "sma_cross", "exchange": "coinbase", "symbols": ["BTC-USD"], "timeframe": "4h", '
        '"config": {"stop_loss": Infinity}}',
        "/sessions": '{"name": "n", "feed": "ccxt", "symbols": ["BTC-USD"], "risk": {"max_drawdown": NaN}}',
    }
    for path, body in bodies.items():
        answer = api.client.post(path, content=body.encode(), headers=headers)
        assert answer.status_code == 422, (path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        fields = {e["field"]: e["value"] for e in answer.json()["errors"]}
        assert fields.get("body.config.stop_loss", fields.get("body.risk.max_drawdown.float")) in ("inf", "nan")


def test_ids_past_32_bits_and_nul_characters_are_422_problems_not_500s(api: Api) -> None:
    api.user("root", Role.ADMIN)
    admin = api.login("root")
    big = 2**40  # past the 32-bit id columns: PostgreSQL refuses to compare it
    answers = {
        "job by id": api.client.get(f"/jobs/{big}", headers=admin),
        "jobs after_id": api.client.get(f"/jobs?after_id={big}", headers=admin),
        "sessions after_id": api.client.get(f"/sessions?after_id={big}", headers=admin),
        "user by id": api.client.patch(f"/users/{big}", json={"role": "viewer"}, headers=admin),
        # PostgreSQL text cannot hold NUL
        "sign-in": api.client.post("/auth/login", json={"username": "ro\u0000ot", "password": "x" * 12}),
    }
    for what, answer in answers.items():
        assert answer.status_code == 422, (what, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert "2147483647" in answer.text, what  # says what is accepted
        assert "SELECT" not in answer.text and "psycopg" not in answer.text  # nothing of the internals
    assert api.client.get("/auth/me", headers=admin).status_code == 200  # the server still answers


def test_a_session_name_the_cli_cannot_read_back_and_a_symbol_named_twice_are_refused(api: Api) -> None:
    api.user("tess", Role.TRADER)
    tess = api.login("tess")
    new = {"feed": "ccxt", "symbols": ["BTC-USD"]}
    for name in ("--help", "-x", "a b; rm -rf /", "\n", " ", "tab\there"):
        answer = api.client.post("/sessions", json=new | {"name": name}, headers=tess)
        assert answer.status_code == 422, (name, answer.text)
        assert answer.json()["errors"][0]["field"] == "body.name"
    twice = api.client.post("/sessions", json=new | {"name": "twice", "symbols": ["BTC-USD", "btc/usd"]}, headers=tess)
    assert twice.status_code == 422, twice.text
    assert twice.json()["errors"] == [
        {"field": "body.symbols.1", "value": "btc/usd", "fix": "names 'BTC-USD' again; give each once"}
    ]
    made = api.client.post("/sessions", json=new | {"name": "btc_paper.v2-1"}, headers=tess)
    assert made.status_code == 201, made.text
    assert "--name btc_paper.v2-1 " in made.json()["run_command"]


def test_the_last_enabled_admin_cannot_be_demoted_or_disabled(api: Api) -> None:
    root = api.user("root", Role.ADMIN)
    admin = api.login("root")
    demote = api.client.patch(f"/users/{root}", json={"role": "trader"}, headers=admin)
    assert demote.status_code == 422, demote.text
    assert demote.json()["detail"].startswith("body.role='trader': root is the last enabled admin")
    disable = api.client.patch(f"/users/{root}", json={"disabled": True}, headers=admin)
    assert disable.status_code == 422 and "body.disabled=true" in disable.json()["detail"]
    assert api.client.get("/auth/me", headers=admin).json()["role"] == "admin"  # nothing changed

    # a disabled admin does not count: with a second one disabled, root is still the last
    second = api.client.post(
        "/users", json={"username": "ops", "password": "x" * 12, "role": "admin"}, headers=admin
    ).json()["id"]
    assert api.client.patch(f"/users/{second}", json={"disabled": True}, headers=admin).status_code == 200
    assert api.client.patch(f"/users/{root}", json={"role": "viewer"}, headers=admin).status_code == 422
    # with another enabled admin, stepping down is fine
    assert api.client.patch(f"/users/{second}", json={"disabled": False}, headers=admin).status_code == 200
    assert api.client.patch(f"/users/{root}", json={"role": "viewer"}, headers=admin).json()["role"] == "viewer"


def test_concurrent_refreshes_of_one_token_on_sqlite_give_one_success_and_refusals_not_500s(sqlite_api: Api) -> None:
    api = sqlite_api
    api.user("tess")
    api.login("tess")
    token = api.tokens["tess"]["refresh_token"]
    barrier = threading.Barrier(6)

    def refresh() -> int:
        with httpx.Client(base_url=api.url, timeout=30) as client:
            barrier.wait()
            return client.post("/auth/refresh", json={"refresh_token": token}).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(lambda _: refresh(), range(6)))
    assert codes == [200] + [401] * 5  # was: [200, 401, 500, 500, ...] ("database is locked")
    with api.ctx.store.transaction() as db:  # the replays revoked the family, the winner's new token too
        assert all(t.revoked_at is not None or t.used_at is not None for t in db.scalars(select(RefreshToken)))
