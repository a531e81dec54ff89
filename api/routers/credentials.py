"""Exchange credentials: a trader stores the API key and secret of their exchange account so
that their live sessions trade with it (``tradeloop.identity.credentials``).

Rules:

1. The secret goes in (``POST``) and never comes out: every answer is the credential's name,
   exchange and times. It is stored encrypted with ``TRADELOOP_ENCRYPTION_KEY``; a server
   without that key answers 503 naming it. Neither the request body nor the secret is logged
   (the access log records method, path and status only).
2. A credential belongs to the user who stored it; another user's does not exist for a
   non-admin (404). An admin may list and remove any, and never read a secret either.
3. Only a signed-in trader stores one (an API key cannot: a leaked key must not be able to
   swap the account its owner's sessions trade with).
4. ``DELETE`` is refused (409) while a session that may still trade uses the credential;
   store a new secret under the same name to replace it in place (a key rotated at the
   exchange), which the running engine picks up when it next starts.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from api.deps import Context, Principal, Trader, Viewer
from tradeloop.data.schema import check_exchange
from tradeloop.errors import ConfigError, NotFoundError, PermissionDeniedError
from tradeloop.identity.credentials import CredentialInfo, CredentialStore, vault_of
from tradeloop.identity.vault import ExchangeSecret

router = APIRouter(prefix="/credentials", tags=["exchange credentials"])


class NewCredential(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", examples=["binance-main"])
    exchange: str = Field(description="the account's exchange (a ccxt id)", examples=["binance"])
    api_key: SecretStr = Field(min_length=1, max_length=512, description="the exchange API key (never returned)")
    secret: SecretStr = Field(min_length=1, max_length=512, description="the exchange API secret (never returned)")
    password: SecretStr | None = Field(
        default=None, max_length=512, description="the passphrase, for exchanges that have one (never returned)"
    )

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, value: str) -> str:
        try:
            check_exchange(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value


class CredentialOut(BaseModel):
    id: int
    user_id: int
    name: str
    exchange: str
    created_at: datetime
    rotated_at: datetime | None = Field(description="when its secret was last replaced (null: never)")


def _out(info: CredentialInfo) -> CredentialOut:
    return CredentialOut(
        id=info.id, user_id=info.user_id, name=info.name, exchange=info.exchange,
        created_at=info.created_at, rotated_at=info.rotated_at,
    )  # fmt: skip


def _owned(ctx, principal: Principal, credential_id: int) -> CredentialInfo:
    try:
        info = CredentialStore(ctx.store).info(credential_id)
    except NotFoundError:
        info = None
    if info is None or not principal.can_see(info.user_id):
        raise NotFoundError(f"exchange credential id {credential_id} does not exist")
    return info


@router.post(
    "",
    response_model=CredentialOut,
    status_code=status.HTTP_201_CREATED,
    summary="Store an exchange account's key and secret, encrypted (again under a name: replace its secret)",
)
def store_credential(body: NewCredential, principal: Trader, ctx: Context) -> CredentialOut:
    if principal.api_key_id is not None:
        raise PermissionDeniedError("an API key cannot store exchange credentials; sign in as the user")
    vault = vault_of(ctx.settings)
    secret = ExchangeSecret(
        api_key=body.api_key.get_secret_value(),
        secret=body.secret.get_secret_value(),
        password=body.password.get_secret_value() if body.password is not None else None,
    )
    info = CredentialStore(ctx.store).put(
        user_id=principal.user_id, name=body.name, exchange=body.exchange, secret=secret, vault=vault, now=ctx.now()
    )
    return _out(info)


@router.get("", response_model=list[CredentialOut], summary="The caller's credentials (an admin's: everyone's)")
def list_credentials(principal: Viewer, ctx: Context) -> list[CredentialOut]:
    infos = CredentialStore(ctx.store).infos(None if principal.is_admin else principal.user_id)
    return [_out(i) for i in infos]


@router.delete(
    "/{credential_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a credential no running, paused or finished session uses",
)
def remove_credential(credential_id: int, principal: Trader, ctx: Context) -> None:
    _owned(ctx, principal, credential_id)
    CredentialStore(ctx.store).remove(credential_id)
