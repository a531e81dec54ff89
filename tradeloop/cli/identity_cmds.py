"""``tradeloop users`` and ``tradeloop keys``: the first admin, users and API keys for scripts.

Passwords are never options (they would stay in the shell's history): they are asked for
at a prompt, or read from standard input with ``--password-stdin``. A new API key is
printed once; only its hash is stored.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from tradeloop.cli.common import console, handle_errors
from tradeloop.errors import ConfigError
from tradeloop.identity import IdentityStore, Role, Scope, Vault
from tradeloop.ops import OpsStore
from tradeloop.settings import get_settings

users = typer.Typer(help="Users of the API and the dashboard (roles: viewer, trader, admin).", no_args_is_help=True)
keys = typer.Typer(help="API keys for services and scripts, and the encryption key's rotation.", no_args_is_help=True)


def _identity() -> IdentityStore:
    return IdentityStore(OpsStore.open(get_settings().effective_database_url))


def _now() -> datetime:
    return datetime.now(UTC)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise ConfigError("--password-stdin: standard input was empty; pipe the password in")
        return password
    password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    return str(password)


@users.command("create")
@handle_errors
def create_user(
    username: Annotated[str, typer.Argument(help="3 to 100 letters, digits or . _ @ -")],
    role: Annotated[
        Role, typer.Option(help="viewer reads; trader acts on sessions and jobs; admin manages")
    ] = Role.VIEWER,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
) -> None:
    """Make a user (the first one: `tradeloop users create admin --role admin`)."""
    user = _identity().create_user(username=username, password=_password(password_stdin), role=role)
    console.print(f"user {user.username} ({user.role}) created, id {user.id}")


@users.command("list")
@handle_errors
def list_users() -> None:
    """Every user, with role and state."""
    table = Table("id", "username", "role", "state", "created")
    for user in _identity().users():
        state = "disabled" if user.disabled else "active"
        table.add_row(str(user.id), user.username, user.role, state, f"{user.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


@users.command("set-role")
@handle_errors
def set_role(username: str, role: Role) -> None:
    """Change a user's role."""
    user = _identity().set_role(username, role)
    console.print(f"{user.username} is now {user.role}")


@users.command("disable")
@handle_errors
def disable(username: str, enable: Annotated[bool, typer.Option("--enable", help="enable instead")] = False) -> None:
    """Disable a user (signed out everywhere, keys refused) or, with --enable, enable them again."""
    user = _identity().set_disabled(username, not enable, now=_now())
    console.print(f"{user.username} is {'disabled' if user.disabled else 'enabled'}")


@keys.command("create")
@handle_errors
def create_key(
    user: Annotated[str, typer.Option(help="the user the key acts as")],
    name: Annotated[str, typer.Option(help="what the key is for, e.g. signals-reader")],
    scope: Annotated[list[Scope], typer.Option(help="read and/or trade (repeat the option)")],
    days: Annotated[int, typer.Option(help="days until it expires (1..366)")] = 90,
) -> None:
    """Make an API key; it is printed once."""
    identity = _identity()
    owner = identity.user_named(user)
    key, row = identity.create_api_key(user_id=owner.id, name=name, scopes=scope, now=_now(), ttl=timedelta(days=days))
    console.print(f"key id {row.id} ({', '.join(row.scopes)}), expires {row.expires_at:%Y-%m-%d}; store it now:")
    print(key)


@keys.command("list")
@handle_errors
def list_keys(user: Annotated[str | None, typer.Option(help="only this user's keys")] = None) -> None:
    """API keys (never the keys themselves)."""
    identity = _identity()
    owner = identity.user_named(user).id if user else None
    table = Table("id", "user", "name", "prefix", "scopes", "expires", "state")
    names = {u.id: u.username for u in identity.users()}
    for row in identity.api_keys(owner):
        state = "revoked" if row.revoked_at else (f"rotated to {row.rotated_to}" if row.rotated_to else "active")
        table.add_row(str(row.id), names.get(row.user_id, "?"), row.name, row.prefix, ",".join(row.scopes),
                      f"{row.expires_at:%Y-%m-%d %H:%M}", state)  # fmt: skip
    console.print(table)


@keys.command("rotate")
@handle_errors
def rotate_key(
    key_id: int, grace_hours: Annotated[int, typer.Option(help="hours the old key stays valid (0..720)")] = 24
) -> None:
    """A new key with the same name and scopes; the old one stays valid for the grace period."""
    if not 0 <= grace_hours <= 720:
        raise ConfigError(f"--grace-hours {grace_hours}: use 0 to 720")
    key, row = _identity().rotate_api_key(key_id, now=_now(), grace=timedelta(hours=grace_hours))
    console.print(f"key id {row.id} replaces {key_id} (valid {grace_hours} h more); store it now:")
    print(key)


@keys.command("revoke")
@handle_errors
def revoke_key(key_id: int) -> None:
    """Revoke a key at once."""
    _identity().revoke_api_key(key_id, now=_now())
    console.print(f"key id {key_id} revoked")


@keys.command("rotate-encryption")
@handle_errors
def rotate_encryption() -> None:
    """Re-encrypt every stored exchange credential under TRADELOOP_ENCRYPTION_KEY's first key
    (put the new key first, keep the old one after it until this has run)."""
    settings = get_settings()
    vault = Vault(settings.encryption_key.get_secret_value() if settings.encryption_key else None)
    count = _identity().rotate_credentials(vault, now=_now())
    console.print(f"{count} exchange credential(s) re-encrypted under the newest key")
