"""Sign-in, token rotation, roles, API keys and the audit of mutations, through the real
HTTP stack (uvicorn, httpx) over PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from tests.api.conftest import PASSWORD, Api
from tradeloop.identity import Role
from tradeloop.ops import AuditEvent


def test_sign_in_gives_tokens_that_name_the_caller_and_a_wrong_password_is_a_401_problem(api: Api) -> None:
    api.user("ana", Role.TRADER)
    headers = api.login("ana")
    me = api.client.get("/auth/me", headers=headers)
    assert me.status_code == 200 and me.json()["username"] == "ana" and me.json()["role"] == "trader"
    wrong = api.client.post("/auth/login", json={"username": "ana", "password": "not the password at all"})
    unknown = api.client.post("/auth/login", json={"username": "nobody", "password": PASSWORD})
    for answer in (wrong, unknown):
        assert answer.status_code == 401
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["detail"] == "wrong username or password"  # the same: nothing to learn
    assert api.client.get("/auth/me").status_code == 401


def test_a_refresh_token_rotates_and_its_replay_signs_out_the_whole_family(api: Api) -> None:
    api.user("ana")
    api.login("ana")
    first = api.tokens["ana"]["refresh_token"]
    rotated = api.client.post("/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200
    second = rotated.json()["refresh_token"]
    assert second != first
    replay = api.client.post("/auth/refresh", json={"refresh_token": first})  # a stolen copy used again
    assert replay.status_code == 401 and "already used" in replay.json()["detail"]
    assert api.client.post("/auth/refresh", json={"refresh_token": second}).status_code == 401  # family revoked


def test_signing_out_revokes_the_refresh_token(api: Api) -> None:
    api.user("ana")
    api.login("ana")
    token = api.tokens["ana"]["refresh_token"]
    assert api.client.post("/auth/logout", json={"refresh_token": token}).status_code == 204
    assert api.client.post("/auth/refresh", json={"refresh_token": token}).status_code == 401


def test_only_an_admin_makes_users_and_a_disabled_user_is_out_at_once(api: Api) -> None:
    api.user("root", Role.ADMIN)
    api.user("vera", Role.VIEWER)
    viewer, admin = api.login("vera"), api.login("root")
    body = {"username": "tom", "password": PASSWORD, "role": "trader"}
    refused = api.client.post("/users", json=body, headers=viewer)
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    made = api.client.post("/users", json=body, headers=admin)
    assert made.status_code == 201 and made.json()["role"] == "trader"
    for twin in ("tom", "Tom", "TOM"):  # the same name to a reader of the audit log: refused
        again = api.client.post("/users", json=body | {"username": twin}, headers=admin)
        assert again.status_code == 422 and f"username={twin!r} is taken" in again.json()["detail"], again.text
    assert [u["username"] for u in api.client.get("/users", headers=admin).json()].count("tom") == 1
    tom = api.login("tom")
    assert api.client.get("/auth/me", headers=tom).status_code == 200
    off = api.client.patch(f"/users/{made.json()['id']}", json={"disabled": True}, headers=admin)
    assert off.status_code == 200 and off.json()["disabled"] is True
    assert api.client.get("/auth/me", headers=tom).status_code == 401  # the still-valid token no longer works
    refresh = {"refresh_token": api.tokens["tom"]["refresh_token"]}
    assert api.client.post("/auth/refresh", json=refresh).status_code == 401


def test_an_api_key_is_shown_once_acts_within_its_scope_and_rotation_keeps_the_old_one_for_the_grace(
    api: Api,
) -> None:
    api.user("root", Role.ADMIN)
    admin = api.login("root")
    made = api.client.post("/keys", json={"name": "reader", "scopes": ["read"]}, headers=admin)
    assert made.status_code == 201
    key = made.json()["key"]
    listed = api.client.get("/keys", headers=admin).json()
    assert [k["prefix"] for k in listed] == [made.json()["prefix"]] and "key" not in listed[0]
    me = api.client.get("/auth/me", headers={"X-API-Key": key}).json()
    assert me["role"] == "viewer" and me["via_api_key"] == made.json()["id"]  # an admin's read key reads only
    body = {"username": "tom", "password": PASSWORD}
    assert api.client.post("/users", json=body, headers={"X-API-Key": key}).status_code == 403
    rotated = api.client.post(f"/keys/{made.json()['id']}/rotate?grace_hours=1", headers=admin)
    assert rotated.status_code == 200
    new = rotated.json()["key"]
    assert api.client.get("/auth/me", headers={"X-API-Key": key}).status_code == 200  # within the grace
    assert api.client.get("/auth/me", headers={"X-API-Key": new}).status_code == 200
    api.ctx.clock = lambda real=api.ctx.clock: real() + timedelta(hours=2)  # the grace has passed
    expired = api.client.get("/auth/me", headers={"X-API-Key": key})
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    assert api.client.get("/auth/me", headers={"X-API-Key": new}).status_code == 200
    assert api.client.get("/auth/me", headers=admin).status_code == 401  # two hours: the access token expired too
    admin = api.login("root")
    assert api.client.delete(f"/keys/{rotated.json()['id']}", headers=admin).status_code == 204
    assert api.client.get("/auth/me", headers={"X-API-Key": new}).status_code == 401


def test_invalid_input_is_a_problem_naming_the_field_the_value_and_the_fix(api: Api) -> None:
    api.user("root", Role.ADMIN)
    answer = api.client.post("/users", json={"username": "x", "password": "short"}, headers=api.login("root"))
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    problems = {p["field"]: p for p in answer.json()["errors"]}
    assert problems["body.username"]["value"] == "x" and "at least 3" in problems["body.username"]["fix"]
    assert problems["body.password"]["value"] == "[redacted]" and "at least 12" in problems["body.password"]["fix"]
    assert "short" not in answer.text  # a password is named, never echoed


def test_every_mutating_request_is_audited_with_its_actor_refusals_included(api: Api) -> None:
    api.user("root", Role.ADMIN)
    api.user("vera", Role.VIEWER)
    admin, viewer = api.login("root"), api.login("vera")
    api.client.post("/users", json={"username": "tom", "password": PASSWORD}, headers=admin)
    api.client.post("/users", json={"username": "eve", "password": PASSWORD}, headers=viewer)
    with api.ctx.store.transaction() as db:
        rows = list(db.scalars(select(AuditEvent).where(AuditEvent.event == "api_request").order_by(AuditEvent.id)))
    seen = [(r.actor, r.detail["method"], r.detail["path"], r.detail["status"]) for r in rows]
    assert ("root", "POST", "/users", 201) in seen and ("vera", "POST", "/users", 403) in seen
    assert ("anonymous", "POST", "/auth/login", 200) in seen
    assert all("password" not in str(r.detail) for r in rows)
