"""A real OpenID Connect provider on loopback for the tests: panva's oidc-provider (Node.js,
OpenID certified) run by ``provider.mjs``, installed once by ``install.sh`` into a cache folder
outside the repository. Tokens come from its token endpoint over HTTP (client_credentials with
an RFC 8707 resource, which becomes the token's audience), signed with its own keys. With
``users`` and ``web_clients`` people sign in to an application through its pages in a browser
(authorization code flow; see ``provider.mjs``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

HERE = Path(__file__).resolve().parent
AUDIENCE = "https://api.tradeloop.test"
SECRET = "a-client-secret-for-tests-only"


def install() -> Path:
    """The folder holding oidc-provider's node_modules (installed now if missing)."""
    done = subprocess.run(["bash", str(HERE / "install.sh")], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"installing the test OIDC provider failed:\n{done.stderr}")
    return Path(done.stdout.strip())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rsa_jwk(kid: str) -> dict:
    """A new private RSA signing key as a JWK."""
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    jwk.pop("key_ops", None)
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def ec_jwk(kid: str) -> dict:
    """A new private P-256 signing key as a JWK."""
    jwk = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())))
    jwk.pop("key_ops", None)
    return {**jwk, "kid": kid, "use": "sig", "alg": "ES256"}


@dataclass(frozen=True)
class ProviderClient:
    """A client of the provider; its tokens' ``sub`` is its id and carry ``claims``."""

    client_id: str
    claims: dict = field(default_factory=dict)
    alg: str = "RS256"


@dataclass(frozen=True)
class WebClient:
    """An application that signs people in (the dashboard): code flow back to ``redirect_uris``."""

    client_id: str
    redirect_uris: list[str]


@dataclass
class OidcServer:
    """oidc-provider on a free loopback port (:meth:`start`, :meth:`stop`, :meth:`rotate`)."""

    workdir: Path
    clients: list[ProviderClient]
    ttl_s: int = 600
    keys: list[dict] = field(default_factory=lambda: [rsa_jwk("rsa-1"), ec_jwk("ec-1")])
    users: dict[str, dict] = field(default_factory=dict)  # account id (the ID token's sub) -> claims
    web_clients: list[WebClient] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OidcServer:
        modules = install()
        config = self.workdir / f"provider-{self.port}.json"
        config.write_text(
            json.dumps(
                {
                    "issuer": self.issuer,
                    "port": self.port,
                    "keys": self.keys,
                    "ttl_s": self.ttl_s,
                    "clients": [
                        {"client_id": c.client_id, "client_secret": SECRET, "alg": c.alg, "claims": c.claims}
                        for c in self.clients
                    ],
                    "users": self.users,
                    "web_clients": [
                        {"client_id": c.client_id, "client_secret": SECRET, "redirect_uris": c.redirect_uris}
                        for c in self.web_clients
                    ],
                }
            )
        )
        log = (self.workdir / f"provider-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            ["node", str(HERE / "provider.mjs"), str(config)],
            cwd=modules,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_ENV": "test"},
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the test OIDC provider did not start:\n{(self.workdir / f'provider-{self.port}.log').read_text()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def rotate(self) -> str:
        """Rotate the RSA signing key as a deployment does: restart with a new key first (it
        signs from now on) and the old one still published. The new key's kid."""
        kid = f"rsa-{len(self.keys)}"
        self.keys = [rsa_jwk(kid), *self.keys]
        self.stop()
        self.start()
        return kid

    def token(self, client_id: str, *, resource: str = AUDIENCE) -> str:
        """A signed access token from the provider's token endpoint."""
        answer = httpx.post(
            f"{self.issuer}/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": SECRET,
                "resource": resource,
            },
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["access_token"]

    def public_jwks(self) -> dict:
        return httpx.get(f"{self.issuer}/jwks", timeout=5).json()
