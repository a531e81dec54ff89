"""Users: an admin makes them, sets roles, disables them.

The API never leaves the deployment without an enabled admin: demoting or disabling the last
one is refused (a 422 saying to make another admin first); ``tradeloop users`` on the host stays
the way back for whoever runs it.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from api.deps import Admin, Context
from tradeloop.errors import ConfigError
from tradeloop.identity import Role

router = APIRouter(prefix="/users", tags=["users"])


class NewUser(BaseModel):
    username: str = Field(min_length=3, max_length=100, pattern=r"^[A-Za-z0-9._@-]+$", examples=["ana"])
    password: str = Field(min_length=12, max_length=256, examples=["correct horse battery staple"])
    role: Role = Field(default=Role.VIEWER)


class UserChange(BaseModel):
    role: Role | None = None
    disabled: bool | None = None


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    disabled: bool
    created_at: datetime


def _out(user) -> UserOut:
    return UserOut(
        id=user.id, username=user.username, role=user.role, disabled=user.disabled, created_at=user.created_at
    )


@router.post("", response_model=UserOut, status_code=status.HTTP_201_CREATED, summary="Make a user (admin)")
def create_user(body: NewUser, admin: Admin, ctx: Context) -> UserOut:
    return _out(ctx.identity.create_user(username=body.username, password=body.password, role=body.role))


@router.get("", response_model=list[UserOut], summary="Every user (admin)")
def list_users(admin: Admin, ctx: Context) -> list[UserOut]:
    return [_out(u) for u in ctx.identity.users()]


@router.patch("/{user_id}", response_model=UserOut, summary="Change a user's role or disable them (admin)")
def change_user(user_id: int, body: UserChange, admin: Admin, ctx: Context) -> UserOut:
    user = ctx.identity.user(user_id)
    demoted = body.role is not None and body.role is not Role.ADMIN
    if user.role == Role.ADMIN and not user.disabled and (demoted or body.disabled):
        others = [u for u in ctx.identity.users() if u.role == Role.ADMIN and not u.disabled and u.id != user.id]
        if not others:
            field, value = ("body.role", f"'{body.role}'") if demoted else ("body.disabled", "true")
            raise ConfigError(
                f"{field}={value}: {user.username} is the last enabled admin and nobody could manage users "
                "after this; make another admin first (POST /users with role admin)"
            )
    if body.role is not None:
        user = ctx.identity.set_role(user.username, body.role)
    if body.disabled is not None:
        user = ctx.identity.set_disabled(user.username, body.disabled, now=ctx.now())
    return _out(user)
