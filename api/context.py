"""What every request handler shares: settings, stores, the token issuer and the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tradeloop.identity import IdentityStore, OidcVerifier, TokenIssuer, jwt_secret
from tradeloop.ops import OpsStore
from tradeloop.ops.row_security import enforce_row_security
from tradeloop.settings import Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(kw_only=True)
class ApiContext:
    """The API's dependencies, built once by :func:`api.app.create_app` (tests pass their own)."""

    settings: Settings
    store: OpsStore
    identity: IdentityStore
    tokens: TokenIssuer
    clock: Callable[[], datetime] = field(default=utc_now)
    # PostgreSQL: a signed-in caller's transactions run under row-level security (api.deps)
    row_security: bool = False
    # TRADELOOP_OIDC_ISSUER: an OpenID Connect provider's tokens sign users in too (api.deps)
    oidc: OidcVerifier | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, store: OpsStore | None = None) -> ApiContext:
        store = store or OpsStore.open(settings.effective_database_url)
        return cls(
            settings=settings,
            store=store,
            identity=IdentityStore(store),
            tokens=TokenIssuer(secret=jwt_secret(settings)),
            row_security=enforce_row_security(store.engine),
            oidc=OidcVerifier.from_settings(settings),
        )

    def now(self) -> datetime:
        return self.clock()

    def now_s(self) -> int:
        return int(self.clock().timestamp())
