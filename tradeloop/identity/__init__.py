"""Who may do what: users and roles, passwords (argon2), access and refresh tokens (JWT),
API keys, exchange credentials encrypted at rest, and sign-in through an OpenID Connect
provider (``oidc``, ``provider_users``). ``api/`` serves it; the CLI's
``tradeloop users`` and ``tradeloop keys`` administer it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from tradeloop.identity.oidc import OidcConfig, OidcVerifier, is_provider_token
from tradeloop.identity.provider_users import (
    ProviderIdentity,
    external_subject,
    provider_user,
    provider_user_or_none,
    role_from_claims,
)
from tradeloop.identity.roles import Role, Scope
from tradeloop.identity.store import IdentityStore
from tradeloop.identity.tokens import AccessClaims, TokenIssuer
from tradeloop.identity.vault import ExchangeSecret, Vault
from tradeloop.settings import Settings

__all__ = [
    "AccessClaims",
    "ExchangeSecret",
    "IdentityStore",
    "OidcConfig",
    "OidcVerifier",
    "ProviderIdentity",
    "Role",
    "Scope",
    "TokenIssuer",
    "Vault",
    "external_subject",
    "is_provider_token",
    "jwt_secret",
    "provider_user",
    "provider_user_or_none",
    "role_from_claims",
]


def jwt_secret(settings: Settings) -> bytes:
    """``TRADELOOP_JWT_SECRET``, or (embedded default) a random secret made once in
    ``data_dir/secrets/jwt_secret``, readable by its owner only."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value().encode()
    path = Path(settings.data_dir) / "secrets" / "jwt_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)  # atomic and never overwrites: two processes starting at once share the first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()
