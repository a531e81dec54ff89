"""A provider's users as local users, and the role its claims name (``tradeloop.identity.oidc``
rules 6 and 7: read those)."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tradeloop.errors import AuthError
from tradeloop.identity.roles import Role
from tradeloop.ops import OpsStore
from tradeloop.ops.identity_models import User

log = logging.getLogger(__name__)
USERNAME_CHARS = re.compile(r"[^A-Za-z0-9._@-]+")


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderIdentity:
    """Who a verified provider token says the caller is."""

    subject: str  # issuer|sub: the local user's external_subject
    username: str  # the name to give the local user when it is created
    role: Role
    expires_at: int


def external_subject(issuer: str, sub: str) -> str:
    """The key of a provider's user in ``users.external_subject`` (rule 7)."""
    return f"{issuer}|{sub}"


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` (``app_metadata.role``), or None."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def role_from_claims(claims: Mapping[str, Any], *, path: str, default: Role) -> Role:
    """Rule 6: the highest role named at ``path``, else ``default``."""
    value = claim_at(claims, path)
    values: Iterable[Any] = value if isinstance(value, list | tuple) else [value]
    names = {r.value for r in Role}
    known = [Role(v.lower()) for v in values if isinstance(v, str) and v.lower() in names]
    return max(known, key=lambda r: r.rank) if known else default


def _username(hint: str, subject: str) -> str:
    base = USERNAME_CHARS.sub("-", hint).strip("-")[:80]
    return base if len(base) >= 3 else f"{base or 'user'}-{hashlib.sha256(subject.encode()).hexdigest()[:6]}"


def provider_user_or_none(store: OpsStore, subject: str) -> User | None:
    """The local user of a provider subject (``issuer|sub``), if it has signed in before."""
    with store.transaction() as db:
        return db.scalar(select(User).where(User.external_subject == subject))


def provider_user(store: OpsStore, identity: ProviderIdentity) -> User:
    """Rule 7: the local user of ``identity``, created on first sight, its role set from the
    token; ``AuthError`` when that user is disabled."""
    try:
        user = _sync_user(store, identity)
    except IntegrityError:  # a concurrent first request created the same user: read it
        user = _sync_user(store, identity)
    if user.disabled:
        raise AuthError("the account is disabled")
    return user


def _sync_user(store: OpsStore, identity: ProviderIdentity) -> User:
    with store.transaction() as db:
        user = db.scalar(select(User).where(User.external_subject == identity.subject))
        if user is None:
            name = _username(identity.username, identity.subject)
            if db.scalar(select(User.id).where(User.username == name)) is not None:
                name = f"{name}-{hashlib.sha256(identity.subject.encode()).hexdigest()[:12]}"
            user = User(username=name, password_hash=None, role=identity.role.value, external_subject=identity.subject)
            db.add(user)
            db.flush()
            log.info("identity provider: new user %s (%s) as %s", name, identity.subject, identity.role)
        elif user.role != identity.role.value:
            user.role = identity.role.value
        return user
