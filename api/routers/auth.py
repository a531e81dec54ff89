"""Sign in, refresh, sign out, and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, Field

from api.deps import Context, Viewer, local_login

router = APIRouter(prefix="/auth", tags=["auth"], responses={401: {}, 403: {}})  # wrong password; sign-in off


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=100, examples=["ana"])
    password: str = Field(min_length=1, max_length=256, examples=["correct horse battery staple"])


class Refresh(BaseModel):
    refresh_token: str = Field(
        min_length=1, max_length=200, description="the refresh token from the last sign-in or refresh"
    )


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds the access token lives")


class Me(BaseModel):
    id: int
    username: str
    role: str
    via_api_key: int | None = None


def _tokens(ctx, user_id: int, role: str, refresh: str) -> Tokens:
    access = ctx.tokens.access_token(user_id=user_id, role=role, now=ctx.now_s())
    return Tokens(access_token=access, refresh_token=refresh, expires_in=ctx.tokens.access_ttl_s)


@router.post(
    "/login",
    response_model=Tokens,
    summary="Sign in with a username and password",
    dependencies=[Depends(local_login)],
)
def login(body: Login, ctx: Context) -> Tokens:
    user = ctx.identity.authenticate(username=body.username, password=body.password)
    return _tokens(ctx, user.id, user.role, ctx.identity.issue_refresh(user.id, now=ctx.now()))


@router.post(
    "/refresh",
    response_model=Tokens,
    summary="Trade a refresh token for new tokens (it rotates)",
    dependencies=[Depends(local_login)],
)
def refresh(body: Refresh, ctx: Context) -> Tokens:
    user, token = ctx.identity.rotate_refresh(body.refresh_token, now=ctx.now())
    return _tokens(ctx, user.id, user.role, token)


@router.post(
    "/logout", status_code=status.HTTP_204_NO_CONTENT, summary="Sign out: the refresh token's family is revoked"
)
def logout(body: Refresh, ctx: Context) -> None:
    ctx.identity.revoke_refresh(body.refresh_token, now=ctx.now())


@router.get("/me", response_model=Me, summary="The caller")
def me(principal: Viewer) -> Me:
    return Me(id=principal.user_id, username=principal.username, role=principal.role, via_api_key=principal.api_key_id)
