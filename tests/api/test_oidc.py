"""Single sign-on: the API takes the tokens of a real OpenID Connect provider (panva's
oidc-provider on loopback, tests/oidc) through the real HTTP stack over PostgreSQL, maps the
subject to a local user and the claim to the role, and refuses every forged, foreign,
expired or confused token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm

from tests.api.conftest import Api, start_api
from tests.oidc.server import AUDIENCE, OidcServer, ProviderClient, free_port, rsa_jwk
from tradeloop.errors import AuthError, ConfigError
from tradeloop.identity import OidcConfig, OidcVerifier, Role, role_from_claims

CLIENTS = [
    ProviderClient("ana-svc", {"tradeloop_role": "trader", "preferred_username": "ana", "email": "ana@desk.example"}),
    ProviderClient("eve-svc", {"preferred_username": "eve"}, alg="ES256"),  # names no role
    ProviderClient("root-svc", {"tradeloop_role": ["viewer", "admin"], "email": "root@desk.example"}),
]


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcServer]:
    server = OidcServer(tmp_path_factory.mktemp("oidc"), CLIENTS).start()
    yield server
    server.stop()


@contextmanager
def sso_api(tmp_path: Path, database_url: str, issuer: str, **settings: str) -> Iterator[Api]:
    """The API over ``database_url`` trusting the provider at ``issuer``."""
    yield from start_api(
        tmp_path, database_url, TRADELOOP_OIDC_ISSUER=issuer, TRADELOOP_OIDC_AUDIENCE=AUDIENCE, **settings
    )


@pytest.fixture
def api(tmp_path: Path, pg_database: str, provider: OidcServer) -> Iterator[Api]:
    with sso_api(tmp_path, pg_database, provider.issuer) as api:
        yield api


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict, dict, str]:
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


def refused(api: Api, token: str) -> str:
    answer = api.client.get("/auth/me", headers=bearer(token))
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    signature = token.split(".")[-1]
    assert token not in answer.text and (not signature or signature not in answer.text)  # never echoed
    return answer.json()["detail"]


def test_a_provider_token_signs_in_a_local_user_with_the_claimed_role(api: Api, provider: OidcServer) -> None:
    token = provider.token("ana-svc")
    me = api.client.get("/auth/me", headers=bearer(token))
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "ana" and me.json()["role"] == "trader"
    again = api.client.get("/auth/me", headers=bearer(provider.token("ana-svc")))
    assert again.json()["id"] == me.json()["id"]  # the same subject is the same local user
    user = api.ctx.identity.user(me.json()["id"])
    assert user.external_subject == f"{provider.issuer}|ana-svc" and user.password_hash is None
    # an ES256 token whose claims name no role: the default role; a list of roles: the highest
    eve = api.client.get("/auth/me", headers=bearer(provider.token("eve-svc"))).json()
    assert (eve["username"], eve["role"]) == ("eve", "viewer")
    root = api.client.get("/auth/me", headers=bearer(provider.token("root-svc"))).json()
    assert (root["username"], root["role"]) == ("root@desk.example", "admin")
    # roles apply: a trader is not an admin
    assert api.client.get("/users", headers=bearer(token)).status_code == 403
    assert api.client.get("/users", headers=bearer(provider.token("root-svc"))).status_code == 200


def test_a_provider_user_is_never_joined_to_a_local_account_of_the_same_name(api: Api, provider: OidcServer) -> None:
    local = api.user("ana", Role.ADMIN)
    me = api.client.get("/auth/me", headers=bearer(provider.token("ana-svc"))).json()
    assert me["id"] != local and me["username"].startswith("ana-") and me["role"] == "trader"


def test_a_locally_disabled_provider_user_is_refused(api: Api, provider: OidcServer) -> None:
    me = api.client.get("/auth/me", headers=bearer(provider.token("eve-svc"))).json()
    api.ctx.identity.set_disabled(me["username"], True, now=api.ctx.now())
    assert "disabled" in refused(api, provider.token("eve-svc"))


def test_wrong_audience_wrong_issuer_and_expired_provider_tokens_are_401(
    api: Api, provider: OidcServer, tmp_path: Path
) -> None:
    assert "audience" in refused(api, provider.token("ana-svc", resource="https://another-api.example"))
    # a second provider holding the very same keys: the signature verifies, the issuer does not
    other = OidcServer(tmp_path, CLIENTS, keys=provider.keys).start()
    try:
        assert "not issued by" in refused(api, other.token("ana-svc"))
    finally:
        other.stop()
    token = provider.token("ana-svc")
    expires = segments(token)[1]["exp"]
    at = lambda s: lambda: datetime.fromtimestamp(s, UTC)  # noqa: E731
    api.ctx.clock = at(expires + 20)  # within the leeway for clock skew
    assert api.client.get("/auth/me", headers=bearer(token)).status_code == 200
    api.ctx.clock = at(expires + 31)
    assert "expired" in refused(api, token)


def test_tampered_and_foreign_key_tokens_are_401(api: Api, provider: OidcServer) -> None:
    token = provider.token("eve-svc")
    header, payload, signature = segments(token)
    raised = {**payload, "tradeloop_role": "admin"}
    tampered = f"{token.split('.')[0]}.{b64(json.dumps(raised).encode())}.{signature}"
    assert "invalid" in refused(api, tampered)
    claims = {**payload, "exp": int(time.time()) + 600, "tradeloop_role": "admin"}
    rogue = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(rsa_jwk("rogue")))
    unknown_kid = jwt.encode(claims, rogue, algorithm="RS256", headers={"kid": "rogue"})
    assert "does not publish" in refused(api, unknown_kid)
    real_kid = jwt.encode(claims, rogue, algorithm="RS256", headers={"kid": "rsa-1"})  # a published kid, wrong key
    assert "invalid" in refused(api, real_kid)
    unsigned = f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}."
    refused(api, unsigned)


def test_an_hs256_token_forged_with_the_providers_public_key_as_secret_is_refused(
    api: Api, provider: OidcServer
) -> None:
    published = next(k for k in provider.public_jwks()["keys"] if k["kty"] == "RSA")
    pem = RSAAlgorithm.from_jwk(json.dumps(published)).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {
        "iss": provider.issuer, "aud": AUDIENCE, "sub": "mallory", "exp": int(time.time()) + 600,
        "tradeloop_role": "admin",
    }  # fmt: skip
    header = {"alg": "HS256", "typ": "JWT", "kid": published["kid"]}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    forged = f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"
    refused(api, forged)  # an HS256 token is ours or nothing: our secret does not verify it
    verifier = api.ctx.oidc
    assert verifier is not None
    with pytest.raises(AuthError, match="algorithm 'HS256' is not accepted"):
        verifier.verify(forged, now=int(time.time()))  # the provider's path never takes HS*
    assert api.ctx.identity.users() == []  # nobody was created


def test_after_the_provider_rotates_its_key_a_token_of_the_new_key_is_accepted(
    tmp_path: Path, pg_database: str
) -> None:
    server = OidcServer(tmp_path, CLIENTS).start()
    try:
        with sso_api(tmp_path, pg_database, server.issuer) as api:
            assert api.ctx.oidc is not None
            cooldown = 1.0  # between refetches for unknown kids (10 s by default)
            api.ctx.oidc = OidcVerifier(replace(api.ctx.oidc.config, refetch_cooldown_s=cooldown))
            old = server.token("ana-svc")
            assert api.client.get("/auth/me", headers=bearer(old)).status_code == 200  # the JWKS is fetched and cached
            fetched = time.monotonic()
            new_kid = server.rotate()
            new = server.token("ana-svc")
            assert segments(new)[0]["kid"] == new_kid and segments(old)[0]["kid"] == "rsa-1"
            time.sleep(max(0.0, cooldown - (time.monotonic() - fetched)))
            me = api.client.get("/auth/me", headers=bearer(new))  # unknown kid: one refetch finds it
            assert me.status_code == 200, me.text
            assert api.client.get("/auth/me", headers=bearer(old)).status_code == 200  # the old key is still published
    finally:
        server.stop()


def test_password_sign_in_can_be_turned_off_while_provider_tokens_work(
    tmp_path: Path, pg_database: str, provider: OidcServer
) -> None:
    with sso_api(tmp_path, pg_database, provider.issuer, TRADELOOP_LOCAL_LOGIN="false") as api:
        api.user("ana", Role.ADMIN)
        answer = api.client.post("/auth/login", json={"username": "ana", "password": "correct horse battery staple"})
        assert answer.status_code == 403 and provider.issuer in answer.json()["detail"]
        assert api.client.post("/auth/refresh", json={"refresh_token": "x" * 43}).status_code == 403
        assert api.client.get("/auth/me", headers=bearer(provider.token("ana-svc"))).status_code == 200


def test_without_a_provider_an_rs256_token_is_refused_as_not_ours(sqlite_api: Api, provider: OidcServer) -> None:
    answer = sqlite_api.client.get("/auth/me", headers=bearer(provider.token("ana-svc")))
    assert answer.status_code == 401 and "'RS256' is not accepted" in answer.json()["detail"]


def test_discovery_must_name_the_configured_issuer_and_an_unreachable_provider_is_retried_then_refused(
    provider: OidcServer,
) -> None:
    alias = provider.issuer.replace("127.0.0.1", "localhost")  # the same server under another spelling
    with pytest.raises(AuthError, match="names issuer"):
        OidcVerifier(OidcConfig(issuer=alias, audience=AUDIENCE)).discover()
    waits: list[float] = []
    gone = OidcVerifier(OidcConfig(issuer=f"http://127.0.0.1:{free_port()}", audience=AUDIENCE), sleep=waits.append)
    with pytest.raises(AuthError, match="did not answer .* after 3 tries"):
        gone.discover()
    assert len(waits) == 2 and all(0 < w <= 1.0 for w in waits)
    with pytest.raises(ConfigError, match="https://"):
        OidcConfig(issuer="http://id.desk.example", audience=AUDIENCE)  # plain http only on loopback


@pytest.mark.parametrize(
    ("path", "claims", "role"),
    [
        (
            "app_metadata.tradeloop_role",
            {"role": "authenticated", "app_metadata": {"tradeloop_role": "trader"}},
            "trader",
        ),
        ("realm_access.roles", {"realm_access": {"roles": ["offline_access", "uma_authorization", "Admin"]}}, "admin"),
        (
            "resource_access.tradeloop-api.roles",
            {"resource_access": {"tradeloop-api": {"roles": ["trader"]}}},
            "trader",
        ),
        ("tradeloop_role", {"tradeloop_role": "superuser"}, "viewer"),  # not a role: the default
        ("app_metadata.tradeloop_role", {"app_metadata": "admin"}, "viewer"),  # the path leads nowhere
        ("tradeloop_role", {}, "viewer"),
    ],
)
def test_the_role_claim_is_read_as_supabase_and_keycloak_write_it(path: str, claims: dict, role: str) -> None:
    assert role_from_claims(claims, path=path, default=Role.VIEWER) == Role(role)
