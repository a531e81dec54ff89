"""Who is calling, and what they may do: every endpoint declares the role it needs.

A caller proves who they are with ``Authorization: Bearer <access token>`` (a JWT from
``POST /auth/login``, or, with ``TRADELOOP_OIDC_ISSUER`` set, the identity provider's
RS256/ES256 token: ``tradeloop.identity.oidc``) or ``X-API-Key: tl_...`` (a service key).
The principal is loaded from the database on every request, so a disabled user or a
lowered role takes effect at once. An API key's scopes narrow its user's role
(``tradeloop.identity.roles``). Password sign-in can be turned off
(``TRADELOOP_LOCAL_LOGIN=false``: :func:`local_login`) when the provider replaces it.

Ownership: a resource owned by another user is "not found" for a non-admin (saying it
exists would leak it); admins see everything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api import ratelimit
from api.context import ApiContext
from tradeloop.errors import AuthError, NotFoundError, PermissionDeniedError
from tradeloop.identity import Role, Scope, is_provider_token, provider_user
from tradeloop.ops.row_security import RowScope, act_as

bearer = HTTPBearer(auto_error=False, description="an access token from POST /auth/login, or the OIDC provider's token")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="a service's API key (tl_...)")


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: int
    username: str
    role: Role  # what this request may do: the user's role, narrowed by a key's scopes
    api_key_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def actor(self) -> str:
        """How the audit log names the caller."""
        via = f" (key {self.api_key_id})" if self.api_key_id is not None else ""
        return f"{self.username}{via}"[:200]

    def can_see(self, owner_id: int | None) -> bool:
        """Whether a resource owned by ``owner_id`` is this caller's (admins: every one;
        ``None``: made before there were users, an admin's)."""
        return self.is_admin or (owner_id is not None and owner_id == self.user_id)

    def check_owner(self, owner_id: int | None, what: str) -> None:
        if not self.can_see(owner_id):
            raise NotFoundError(f"{what} does not exist")


def context(request: Request) -> ApiContext:
    return request.app.state.context


Context = Annotated[ApiContext, Depends(context)]


def authenticate(
    request: Request,
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    key: Annotated[str | None, Depends(api_key_header)],
) -> Principal:
    if credentials is not None and key is not None:
        raise AuthError("send either a bearer token or an API key, not both")
    if key is not None:
        user, row = ctx.identity.verify_api_key(key, now=ctx.now())
        scoped = max((Scope(s).role for s in row.scopes), key=lambda r: r.rank)
        role = min(Role(user.role), scoped, key=lambda r: r.rank)
        principal = Principal(user_id=user.id, username=user.username, role=role, api_key_id=row.id)
    elif credentials is not None and ctx.oidc is not None and is_provider_token(credentials.credentials):
        # the provider's tokens are RS256/ES256 only, ours HS256 only: neither verifies the other's
        user = provider_user(ctx.store, ctx.oidc.verify(credentials.credentials, now=ctx.now_s()))
        principal = Principal(user_id=user.id, username=user.username, role=Role(user.role))
    elif credentials is not None:
        claims = ctx.tokens.verify(credentials.credentials, now=ctx.now_s())
        known = ctx.identity.user_or_none(claims.user_id)
        if known is None or known.disabled:
            raise AuthError("the account does not exist or is disabled")
        principal = Principal(user_id=known.id, username=known.username, role=Role(known.role))
    else:
        raise AuthError("not signed in: send Authorization: Bearer <token> (POST /auth/login) or X-API-Key")
    request.state.principal = principal  # for the audit middleware
    return principal


def local_login(ctx: Context) -> None:
    """A dependency of the password routes: refused while ``TRADELOOP_LOCAL_LOGIN=false``."""
    if not ctx.settings.local_login:
        where = f" through {ctx.oidc.config.issuer}" if ctx.oidc is not None else " with an API key"
        raise PermissionDeniedError(
            f"password sign-in is turned off here (TRADELOOP_LOCAL_LOGIN=false); sign in{where}"
        )


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must have at least ``role``."""

    async def check(request: Request, principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        await ratelimit.charge(request, user_id=principal.user_id, api_key_id=principal.api_key_id)
        # the rest of this request's transactions see only the caller's rows (PostgreSQL: the
        # database's second line behind check_owner; tradeloop.ops.row_security)
        act_as(RowScope(user_id=principal.user_id, admin=principal.role is Role.ADMIN))
        if not principal.role.allows(role):
            how = "an API key with the 'trade' scope" if role is Role.TRADER else f"the {role} role"
            raise PermissionDeniedError(f"this needs {how}; you act as {principal.role}")
        return principal

    check.__name__ = f"require_{role}"
    return check


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Trader = Annotated[Principal, Depends(require(Role.TRADER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
