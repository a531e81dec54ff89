"""Access tokens (JWT) and refresh tokens.

Rules:

1. **Access tokens** are JWTs signed with HS256 and the deployment's secret
   (``TRADELOOP_JWT_SECRET``, at least 32 bytes; ``tradeloop.identity.secrets`` makes one
   under the data folder when unset). Claims: ``sub`` (user id), ``role``, ``iss``, ``aud``,
   ``iat``, ``exp`` and ``jti``; every one is required. Only HS256 is accepted (``alg: none``
   and any other algorithm are refused, so a public key can never be used as an HMAC
   secret); the issuer and audience must match; an expired token is refused (30 s leeway for
   clock skew). Lifetime: ``access_ttl_s``, 15 minutes by default.
2. **Refresh tokens** are opaque random strings (256 bits); only their SHA-256 is stored
   (``RefreshToken``). They rotate and are revocable: ``tradeloop.identity.store``.
3. The time comes from the caller (``now``): tests and replays decide what it is.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

import jwt

from tradeloop.errors import AuthError, ConfigError
from tradeloop.identity.roles import Role

ALGORITHM = "HS256"
LEEWAY_S = 30
MIN_SECRET_BYTES = 32


@dataclass(frozen=True, kw_only=True, slots=True)
class AccessClaims:
    """What a verified access token says."""

    user_id: int
    role: Role
    expires_at: int
    token_id: str


class TokenIssuer:
    """Issues and verifies access tokens (module rules)."""

    def __init__(
        self,
        *,
        secret: bytes,
        issuer: str = "tradeloop",
        audience: str = "tradeloop-api",
        access_ttl_s: int = 900,
    ):
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"TRADELOOP_JWT_SECRET has {len(secret)} bytes; use at least {MIN_SECRET_BYTES} "
                '(python -c "import secrets; print(secrets.token_urlsafe(48))")'
            )
        if not 60 <= access_ttl_s <= 86_400:
            raise ConfigError(f"access_ttl_s={access_ttl_s}: use 60 to 86400 seconds (e.g. 900)")
        self._secret, self.issuer, self.audience, self.access_ttl_s = secret, issuer, audience, access_ttl_s

    def access_token(self, *, user_id: int, role: Role, now: int) -> str:
        claims = {
            "sub": str(user_id),
            "role": str(role),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.access_ttl_s,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str, *, now: int) -> AccessClaims:
        """The token's claims; raises ``AuthError`` (saying why, never echoing the token)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"the access token is not a JWT ({exc}); sign in again") from None
        if header.get("alg") != ALGORITHM:
            raise AuthError(f"the access token's algorithm {header.get('alg')!r} is not accepted; sign in again")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["sub", "role", "iss", "aud", "iat", "exp", "jti"], "verify_iat": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the access token expired; refresh it (POST /auth/refresh) or sign in again") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"the access token is invalid ({exc}); sign in again") from None
        if int(claims["exp"]) + LEEWAY_S < now:  # the caller's clock decides, not the library's
            raise AuthError("the access token expired; refresh it (POST /auth/refresh) or sign in again")
        try:
            return AccessClaims(
                user_id=int(claims["sub"]),
                role=Role(claims["role"]),
                expires_at=int(claims["exp"]),
                token_id=claims["jti"],
            )
        except (TypeError, ValueError):
            raise AuthError("the access token's subject or role is malformed; sign in again") from None


def new_opaque_token() -> str:
    """A random token for a refresh token or an API key's secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """The stored form of a high-entropy token: its SHA-256, hex (a slow hash is for passwords)."""
    return hashlib.sha256(token.encode()).hexdigest()
