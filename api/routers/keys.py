"""API keys for services: made, listed, rotated and revoked by their owner (or an admin).

Only a signed-in user makes or rotates keys: a key that could rotate a key would mint a new
secret for any of its user's keys (a read key turning itself into a trade key, or a leaked key
outliving its rotation). A key may revoke itself (that only takes rights away), no other key.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from api.deps import Context, Principal, Viewer
from tradeloop.errors import NotFoundError, PermissionDeniedError
from tradeloop.identity import Scope

router = APIRouter(prefix="/keys", tags=["api keys"])


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["signals-reader"])
    scopes: list[Scope] = Field(min_length=1, examples=[["read"]])
    ttl_days: int = Field(default=90, ge=1, le=366, description="days until it expires")


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    expires_at: datetime
    revoked: bool
    rotated_to: int | None = None
    last_used_at: datetime | None = None


class KeyCreated(KeyOut):
    key: str = Field(description="the key itself: shown this once, store it now")


def _out(row) -> dict:
    return {
        "id": row.id, "name": row.name, "prefix": row.prefix, "scopes": row.scopes, "expires_at": row.expires_at,
        "revoked": row.revoked_at is not None, "rotated_to": row.rotated_to, "last_used_at": row.last_used_at,
    }  # fmt: skip


def _not_by_key(principal: Principal, what: str) -> None:
    if principal.api_key_id is not None:
        raise PermissionDeniedError(f"an API key cannot {what}; sign in as the user")


def _own_key(ctx, principal: Principal, key_id: int):
    row = next((k for k in ctx.identity.api_keys() if k.id == key_id), None)
    if row is None or not principal.can_see(row.user_id):
        raise NotFoundError(f"API key id {key_id} does not exist")
    return row


@router.post("", response_model=KeyCreated, status_code=status.HTTP_201_CREATED, summary="Make an API key")
def create_key(body: NewKey, principal: Viewer, ctx: Context) -> KeyCreated:
    _not_by_key(principal, "make keys")
    key, row = ctx.identity.create_api_key(
        user_id=principal.user_id, name=body.name, scopes=body.scopes, now=ctx.now(), ttl=timedelta(days=body.ttl_days)
    )
    return KeyCreated(key=key, **_out(row))


@router.get("", response_model=list[KeyOut], summary="The caller's keys (an admin's: everyone's)")
def list_keys(principal: Viewer, ctx: Context) -> list[KeyOut]:
    rows = ctx.identity.api_keys(None if principal.is_admin else principal.user_id)
    return [KeyOut(**_out(r)) for r in rows]


@router.post(
    "/{key_id}/rotate", response_model=KeyCreated, summary="A new key; the old one stays valid for a grace period"
)
def rotate_key(
    key_id: int,
    principal: Viewer,
    ctx: Context,
    grace_hours: Annotated[int, Query(ge=0, le=720, description="hours the old key stays valid")] = 24,
) -> KeyCreated:
    _not_by_key(principal, "rotate keys")
    _own_key(ctx, principal, key_id)
    key, row = ctx.identity.rotate_api_key(key_id, now=ctx.now(), grace=timedelta(hours=grace_hours))
    return KeyCreated(key=key, **_out(row))


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke a key at once")
def revoke_key(key_id: int, principal: Viewer, ctx: Context) -> None:
    if principal.api_key_id != key_id:
        _not_by_key(principal, "revoke another key")
    _own_key(ctx, principal, key_id)
    ctx.identity.revoke_api_key(key_id, now=ctx.now())
