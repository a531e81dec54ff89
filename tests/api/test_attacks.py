"""The attack suite, through the real HTTP stack over PostgreSQL: forged and stolen
credentials, role escalation, one user reaching for another's resources, hostile bodies and
a spoofed client address. Each is refused with the right status and a problem document."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.api.conftest import PASSWORD, Api, start_api
from tradeloop.identity import Role, Scope, TokenIssuer, jwt_secret
from tradeloop.ops import ApiKey, Job, TradingSession


def refused(answer: httpx.Response, status: int, *words: str) -> dict:
    """The answer is a problem document with ``status`` whose detail says ``words``."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["status"] == status and body["title"] and body["detail"]
    for word in words:
        assert word.lower() in body["detail"].lower(), body["detail"]
    return body


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(user_id: int, role: str = "admin", **changes) -> dict:
    now = int(time.time())
    base = {"sub": str(user_id), "role": role, "iss": "tradeloop", "aud": "tradeloop-api", "iat": now,
            "exp": now + 600, "jti": "x" * 32}  # fmt: skip
    return base | changes


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------------- tokens
def test_an_unsigned_alg_none_token_is_refused(api: Api) -> None:
    root = api.user("root", Role.ADMIN)
    for alg in ("none", "None", "NONE"):
        header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        token = f"{header}.{b64(json.dumps(claims(root)).encode())}."
        refused(api.client.get("/users", headers=bearer(token)), 401, "algorithm")


def test_hs_rs_confusion_is_refused_both_ways(api: Api) -> None:
    root = api.user("root", Role.ADMIN)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs256 = jwt.encode(claims(root), key, algorithm="RS256")  # signed with a key pair the attacker made
    refused(api.client.get("/users", headers=bearer(rs256)), 401, "'RS256' is not accepted")
    # the classic confusion: HS256 with a public key as the HMAC secret (PyJWT itself refuses to sign it)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = (
        f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims(root)).encode())}"
    )
    signature = b64(hmac.new(public, signing_input.encode(), hashlib.sha256).digest())
    refused(api.client.get("/users", headers=bearer(f"{signing_input}.{signature}")), 401, "invalid")


def test_expired_tampered_foreign_audience_and_foreign_issuer_tokens_are_refused(api: Api) -> None:
    api.user("root", Role.ADMIN)
    vera = api.user("vera", Role.VIEWER)
    secret = jwt_secret(api.ctx.settings)  # the attacker holds the real key for the signed variants below
    old = api.ctx.tokens.access_token(user_id=vera, role=Role.VIEWER, now=int(time.time()) - 3600)
    refused(api.client.get("/auth/me", headers=bearer(old)), 401, "expired")
    # a real viewer token whose payload is edited to make it an admin's: the signature no longer matches
    header, payload, signature = api.login("vera")["Authorization"].removeprefix("Bearer ").split(".")
    edited = json.loads(base64.urlsafe_b64decode(payload + "=="))
    edited["role"], edited["sub"] = "admin", "1"
    tampered = f"{header}.{b64(json.dumps(edited).encode())}.{signature}"
    refused(api.client.get("/users", headers=bearer(tampered)), 401, "Signature verification failed")
    foreign_audience = TokenIssuer(secret=secret, audience="another-api").access_token(
        user_id=vera, role=Role.VIEWER, now=int(time.time())
    )
    refused(api.client.get("/auth/me", headers=bearer(foreign_audience)), 401, "audience")
    foreign_issuer = TokenIssuer(secret=secret, issuer="evil").access_token(
        user_id=vera, role=Role.VIEWER, now=int(time.time())
    )
    refused(api.client.get("/auth/me", headers=bearer(foreign_issuer)), 401, "issuer")
    # a validly signed token's role claim is not believed: the role is read from the database
    claimed_admin = api.ctx.tokens.access_token(user_id=vera, role=Role.ADMIN, now=int(time.time()))
    refused(api.client.get("/users", headers=bearer(claimed_admin)), 403, "admin")


def test_a_reused_refresh_token_is_refused_and_signs_out_its_family(api: Api) -> None:
    api.user("ana")
    api.login("ana")
    stolen = api.tokens["ana"]["refresh_token"]
    fresh = api.client.post("/auth/refresh", json={"refresh_token": stolen}).json()["refresh_token"]
    refused(api.client.post("/auth/refresh", json={"refresh_token": stolen}), 401, "already used")
    refused(api.client.post("/auth/refresh", json={"refresh_token": fresh}), 401)  # the owner's copy is dead too


def test_revoked_and_expired_api_keys_are_refused(api: Api) -> None:
    ana = api.user("ana", Role.TRADER)
    headers = api.login("ana")
    made = api.client.post("/keys", json={"name": "svc", "scopes": ["trade"]}, headers=headers).json()
    assert api.client.get("/auth/me", headers={"X-API-Key": made["key"]}).status_code == 200
    assert api.client.delete(f"/keys/{made['id']}", headers=headers).status_code == 204
    refused(api.client.get("/auth/me", headers={"X-API-Key": made["key"]}), 401, "revoked")
    past = api.ctx.now() - timedelta(days=2)
    key, _ = api.ctx.identity.create_api_key(user_id=ana, name="old", scopes=[Scope.READ], now=past,
                                             ttl=timedelta(days=1))  # fmt: skip
    refused(api.client.get("/auth/me", headers={"X-API-Key": key}), 401, "expired")
    secret_guessed = made["key"][: -len("guess")] + "guess"
    refused(api.client.get("/auth/me", headers={"X-API-Key": secret_guessed}), 401, "unknown API key")


# ---------------------------------------------------------------------------- roles
def test_role_escalation_is_refused(api: Api) -> None:
    root = api.user("root", Role.ADMIN)
    tom = api.user("tom", Role.TRADER)
    api.user("vera", Role.VIEWER)
    viewer, trader = api.login("vera"), api.login("tom")
    new_user = {"username": "eve", "password": PASSWORD, "role": "admin"}
    refused(api.client.post("/users", json=new_user, headers=viewer), 403, "admin")
    refused(api.client.post("/keys", json={"name": "x", "scopes": ["trade"]}, headers=viewer), 422, "trade")
    # a trader making themselves (or anyone) an admin
    refused(api.client.patch(f"/users/{tom}", json={"role": "admin"}, headers=trader), 403, "admin")
    refused(api.client.patch(f"/users/{root}", json={"disabled": True}, headers=trader), 403, "admin")
    assert api.ctx.identity.user(tom).role == "trader" and not api.ctx.identity.user(root).disabled
    # an admin's read-only key acts as a viewer: it cannot mutate, nor make keys
    admin = api.login("root")
    read_key = {
        "X-API-Key": api.client.post("/keys", json={"name": "r", "scopes": ["read"]}, headers=admin).json()["key"]
    }
    refused(api.client.post("/users", json=new_user, headers=read_key), 403, "you act as viewer")
    refused(api.client.patch(f"/users/{tom}", json={"role": "admin"}, headers=read_key), 403)
    refused(api.client.post("/keys", json={"name": "y", "scopes": ["read"]}, headers=read_key), 403, "API key")
    # a viewer, and a trader's read-only key, queueing work (a trader's call)
    refused(api.client.post("/backtests", json={}, headers=viewer), 403, "you act as viewer")
    made = api.client.post("/keys", json={"name": "r", "scopes": ["read"]}, headers=trader).json()
    refused(api.client.post("/backtests", json={}, headers={"X-API-Key": made["key"]}), 403, "'trade' scope")
    assert [u.username for u in api.ctx.identity.users()] == ["root", "tom", "vera"]


# ---------------------------------------------------------------------------- ownership
def test_one_user_cannot_see_rotate_or_revoke_another_users_key(api: Api) -> None:
    api.user("ana", Role.TRADER)
    api.user("bob", Role.TRADER)
    ana, bob = api.login("ana"), api.login("bob")
    theirs = api.client.post("/keys", json={"name": "ana-svc", "scopes": ["read"]}, headers=ana).json()
    mine = api.client.post("/keys", json={"name": "bob-svc", "scopes": ["read"]}, headers=bob).json()
    refused(api.client.post(f"/keys/{theirs['id']}/rotate", headers=bob), 404, f"id {theirs['id']}")
    refused(api.client.delete(f"/keys/{theirs['id']}", headers=bob), 404)
    forged = api.client.get("/keys", params={"user_id": 1, "owner_id": 1, "all": "true"}, headers=bob)
    assert [k["id"] for k in forged.json()] == [mine["id"]]  # a forged filter changes nothing
    assert api.client.get("/auth/me", headers={"X-API-Key": theirs["key"]}).status_code == 200  # still valid
    with api.ctx.store.transaction() as db:
        assert db.get(ApiKey, theirs["id"]).revoked_at is None and db.get(ApiKey, theirs["id"]).rotated_to is None


def session_of(api: Api, owner_id: int, name: str) -> int:
    """A running session owned by ``owner_id`` (as the CLI or the engine makes one)."""
    row = api.ctx.store.create_session(name=name, strategy="sma_cross", exchange="binance", timeframe="1m",
                                       symbols=["BTC/USDT"], mode="paper", init_cash=1000.0, config={})  # fmt: skip
    with api.ctx.store.transaction() as db:
        db.get(TradingSession, row.id).owner_id = owner_id
    return row.id


def test_one_user_cannot_read_or_stop_another_users_session_by_id(api: Api) -> None:
    ana = api.user("ana", Role.TRADER)
    bob = api.user("bob", Role.TRADER)
    theirs, mine = session_of(api, ana, "ana-live"), session_of(api, bob, "bob-live")
    headers = api.login("bob")
    for part in ("", "/orders", "/fills", "/positions", "/equity", "/audit", "/thresholds", "/signals"):
        refused(api.client.get(f"/sessions/{theirs}{part}", headers=headers), 404)
    for verb in ("pause", "stop", "resume", "start", "ack"):
        refused(api.client.post(f"/sessions/{theirs}/{verb}", headers=headers), 404)
    override = {"threshold": 0.99, "reason": "take nothing of hers"}
    refused(api.client.post(f"/sessions/{theirs}/thresholds/override", json=override, headers=headers), 404)
    forged = api.client.get("/sessions", params={"owner_id": ana, "user_id": ana, "all": "true"}, headers=headers)
    assert [s["id"] for s in forged.json()["items"]] == [mine]  # a forged filter changes nothing
    assert api.ctx.store.session("ana-live").status == "running"
    assert api.client.get(f"/sessions/{theirs}", headers=api.login("ana")).status_code == 200  # she still can
    # ana's own read-only key cannot stop her session either
    made = api.client.post("/keys", json={"name": "r", "scopes": ["read"]}, headers=api.login("ana")).json()
    refused(api.client.post(f"/sessions/{theirs}/stop", headers={"X-API-Key": made["key"]}), 403, "trade")
    assert api.ctx.store.session("ana-live").status == "running"


def test_one_user_cannot_read_another_users_job_by_id(api: Api) -> None:
    ana = api.user("ana", Role.TRADER)
    api.user("bob", Role.TRADER)
    with api.ctx.store.transaction() as db:
        job = Job(owner_id=ana, kind="backtest", status="succeeded", params={"strategy": "sma_cross"},
                  result={"sharpe": 1.2})  # fmt: skip
        db.add(job)
        db.flush()
        job_id = job.id
    bob = api.login("bob")
    refused(api.client.get(f"/jobs/{job_id}", headers=bob), 404, f"job {job_id}")
    forged = api.client.get("/jobs", params={"owner_id": ana, "user_id": ana}, headers=bob)
    assert forged.status_code == 200 and forged.json()["items"] == []
    assert api.client.get(f"/jobs/{job_id}", headers=api.login("ana")).json()["result"] == {"sharpe": 1.2}


# ---------------------------------------------------------------------------- bodies
def test_an_oversized_body_is_refused_before_it_is_read(api: Api) -> None:
    big = {"username": "ana", "password": "x" * (1024 * 1024 + 1)}
    refused(api.client.post("/auth/login", json=big), 413, "at most 1048576", "TRADELOOP_API_MAX_BODY_BYTES")

    def chunks():  # no Content-Length: counted while it is read
        yield b'{"username": "ana", "password": "'
        for _ in range(40):
            yield b"y" * 32_768
        yield b'"}'

    answer = api.client.post("/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
    refused(answer, 413, "more than 1048576 bytes", "TRADELOOP_API_MAX_BODY_BYTES")
    assert api.client.get("/health").status_code == 200  # the server is fine


def test_malformed_json_is_a_422_problem_naming_where_it_broke(api: Api) -> None:
    headers = {"Content-Type": "application/json"}
    for body in (b'{"username": "ana", "password": ', b"[1, 2", b"{'username': 'ana'}"):
        problem = refused(api.client.post("/auth/login", content=body, headers=headers), 422)
        assert problem["errors"][0]["field"].startswith("body") and "JSON" in problem["errors"][0]["fix"]
    not_utf8 = b'{"username": "\xc3\x28"}'  # bytes that are no text at all
    refused(api.client.post("/auth/login", content=not_utf8, headers=headers), 400, "parsing the body")
    wrong_shape = refused(api.client.post("/auth/login", json=["ana", PASSWORD]), 422)
    assert wrong_shape["errors"][0]["field"] == "body"


# ---------------------------------------------------------------------------- client address
@pytest.mark.parametrize("server_rewrites", [True, False], ids=["uvicorn-proxy-headers", "no-proxy-headers"])
def test_a_spoofed_x_forwarded_for_does_not_buy_fresh_sign_in_attempts(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch, server_rewrites: bool
) -> None:
    # uvicorn by default believes X-Forwarded-For from loopback; with it off the API sees the peer
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1" if server_rewrites else "")
    with contextmanager(start_api)(tmp_path, pg_database, TRADELOOP_RATE_LIMIT_LOGIN="3/minute") as api:
        api.user("ana")
        wrong = {"username": "ana", "password": "guess number n"}
        for n in range(3):
            answer = api.client.post("/auth/login", json=wrong, headers={"X-Forwarded-For": f"198.51.100.{n}"})
            assert answer.status_code == 401
        for spoof in ("198.51.100.77", "10.9.9.9, 127.0.0.1", "203.0.113.5:443", "[2001:db8::1]:443"):
            answer = api.client.post("/auth/login", json=wrong, headers={"X-Forwarded-For": spoof})
            refused(answer, 429, "sign-ins from this address")
