"""Users, refresh tokens, API keys and exchange credentials in the operational database.

Rules:

1. **Users.** Usernames are 3 to 100 characters of letters, digits and ``._@-``; a new
   user's password follows ``tradeloop.identity.passwords``. A disabled user cannot sign in,
   refresh, or use a key.
2. **Refresh tokens rotate.** :meth:`IdentityStore.rotate_refresh` accepts a token once:
   it marks it used and returns the next one of its family. A token presented again after
   its use (a replay: someone else holds a copy) revokes its whole family, so the thief's
   and the owner's next refresh both fail and the owner signs in again. Signing out
   revokes the family.
3. **API keys** are ``tl_<prefix>_<secret>``: the prefix finds the row, the secret's SHA-256
   is compared in constant time. A key is refused once revoked or expired. Rotation issues a
   new key with the same name and scopes and keeps the old one valid for ``grace_s``.
   A user holds at most :data:`MAX_ACTIVE_KEYS` active keys (not revoked, not expired): each
   key has its own rate-limit bucket, so more keys would multiply the user's limit. A key
   being replaced by rotation (in its grace) and its successor count as one, so a user at
   the cap can still rotate; rotating an already rotated key again needs a free place.
4. Every time here is an explicit ``now`` (UTC datetime): nothing reads the clock itself.
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tradeloop.errors import AuthError, ConfigError, NotFoundError
from tradeloop.identity.passwords import hash_password, needs_rehash, verify_password
from tradeloop.identity.roles import Role, Scope
from tradeloop.identity.tokens import digest, new_opaque_token
from tradeloop.identity.vault import Vault
from tradeloop.ops import OpsStore
from tradeloop.ops.identity_models import ApiKey, ExchangeCredential, RefreshToken, User

USERNAME = re.compile(r"[A-Za-z0-9._@-]{3,100}")
MAX_ACTIVE_KEYS = 20  # rule 3
KEY_FORMAT = re.compile(r"tl_([a-f0-9]{12})_([A-Za-z0-9_-]{20,100})")


def _aware(at: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored UTC): read them as UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class IdentityStore:
    """The identity tables, through an :class:`OpsStore`'s transactions (module rules)."""

    def __init__(self, store: OpsStore, *, refresh_ttl: timedelta = timedelta(days=14)):
        self.store, self.refresh_ttl = store, refresh_ttl

    # ------------------------------------------------------------------ users
    def create_user(
        self, *, username: str, password: str | None, role: Role, external_subject: str | None = None
    ) -> User:
        if not USERNAME.fullmatch(username):
            raise ConfigError(
                f"username={username!r}: use 3 to 100 letters, digits or . _ @ - (e.g. 'ana' or 'ana@desk.example')"
            )
        password_hash = hash_password(password) if password is not None else None
        with self.store.transaction() as db:
            # "Ana" beside "ana" would read as the same person in every audit row: one of them only
            taken = db.scalar(select(User.username).where(func.lower(User.username) == username.lower()))
            if taken is not None:
                same = "" if taken == username else f" (as {taken!r}: names differing only in case are one name)"
                raise ConfigError(f"username={username!r} is taken{same}; pick another")
            user = User(
                username=username, password_hash=password_hash, role=Role(role).value, external_subject=external_subject
            )
            db.add(user)
            db.flush()
            return user

    def user(self, user_id: int) -> User:
        with self.store.transaction() as db:
            user = db.get(User, user_id)
            if user is None:
                raise NotFoundError(f"user id {user_id} does not exist")
            return user

    def user_or_none(self, user_id: int) -> User | None:
        with self.store.transaction() as db:
            return db.get(User, user_id)

    def user_named(self, username: str) -> User:
        with self.store.transaction() as db:
            user = db.scalar(select(User).where(User.username == username))
            if user is None:
                raise NotFoundError(f"user {username!r} does not exist; list them with `tradeloop users list`")
            return user

    def users(self) -> list[User]:
        with self.store.transaction() as db:
            return list(db.scalars(select(User).order_by(User.id)))

    def set_role(self, username: str, role: Role) -> User:
        with self.store.transaction() as db:
            user = db.scalar(select(User).where(User.username == username))
            if user is None:
                raise NotFoundError(f"user {username!r} does not exist")
            user.role = Role(role).value
            return user

    def set_disabled(self, username: str, disabled: bool, *, now: datetime) -> User:
        with self.store.transaction() as db:
            user = db.scalar(select(User).where(User.username == username))
            if user is None:
                raise NotFoundError(f"user {username!r} does not exist")
            user.disabled = disabled
            if disabled:  # signed out everywhere
                db.execute(
                    update(RefreshToken)
                    .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
            return user

    def authenticate(self, *, username: str, password: str) -> User:
        """The user with this password; ``AuthError`` otherwise (the same for a wrong password,
        an unknown user and a disabled one: nothing to learn from the answer)."""
        with self.store.transaction() as db:
            user = db.scalar(select(User).where(User.username == username))
            ok = verify_password(user.password_hash if user is not None else None, password)
            if user is None or not ok or user.disabled:
                raise AuthError("wrong username or password")
            if user.password_hash is not None and needs_rehash(user.password_hash):
                user.password_hash = hash_password(password)
            return user

    # ------------------------------------------------------------------ refresh tokens
    def issue_refresh(self, user_id: int, *, now: datetime, family: str | None = None) -> str:
        with self.store.transaction() as db:
            return self._add_refresh(db, user_id, now=now, family=family)

    def _add_refresh(self, db: Session, user_id: int, *, now: datetime, family: str | None) -> str:
        token = new_opaque_token()
        db.add(
            RefreshToken(
                user_id=user_id,
                family=family or secrets.token_hex(16),
                token_hash=digest(token),
                expires_at=now + self.refresh_ttl,
                created_at=now,
            )
        )
        return token

    def rotate_refresh(self, token: str, *, now: datetime) -> tuple[User, str]:
        """Rule 2: the token's user and the next token of its family."""
        refusal, issued = None, None
        # a refusal is raised after the commit: a replay's revocation stays. immediate: on SQLite two
        # refreshes of one token queue for the write lock (the second sees the first's use) instead of failing.
        # The next token is written in the same transaction as the use: a replay that comes in between
        # would otherwise revoke the family before the next token exists, and that token would live on
        with self.store.transaction(immediate=True) as db:
            row = db.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest(token)).with_for_update())
            user = db.get(User, row.user_id) if row is not None else None
            if row is None:
                refusal = "unknown refresh token; sign in again"
            elif row.used_at is not None or row.revoked_at is not None:
                db.execute(
                    update(RefreshToken)
                    .where(RefreshToken.family == row.family, RefreshToken.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
                refusal = (
                    "this refresh token was already used or revoked; every session of it is signed out, sign in again"
                )
            elif _aware(row.expires_at) <= now:
                refusal = "the refresh token expired; sign in again"
            elif user is None or user.disabled:
                refusal = "the account is disabled"
            else:
                row.used_at = now
                issued = self._add_refresh(db, user.id, now=now, family=row.family)
        if refusal is not None or user is None or issued is None:
            raise AuthError(refusal or "unknown refresh token; sign in again")
        return user, issued

    def revoke_refresh(self, token: str, *, now: datetime) -> None:
        """Sign out: the token's family is revoked (unknown tokens: nothing to do)."""
        with self.store.transaction() as db:
            row = db.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest(token)))
            if row is not None:
                db.execute(
                    update(RefreshToken)
                    .where(RefreshToken.family == row.family, RefreshToken.revoked_at.is_(None))
                    .values(revoked_at=now)
                )

    # ------------------------------------------------------------------ API keys
    def create_api_key(
        self, *, user_id: int, name: str, scopes: list[Scope], now: datetime, ttl: timedelta = timedelta(days=90)
    ) -> tuple[str, ApiKey]:
        """A new key: (the key, shown once; its row). Refused at rule 3's cap."""
        return self._new_api_key(user_id=user_id, name=name, scopes=scopes, now=now, ttl=ttl, capped=True)

    def _new_api_key(
        self, *, user_id: int, name: str, scopes: list[Scope], now: datetime, ttl: timedelta, capped: bool
    ) -> tuple[str, ApiKey]:
        if not scopes:
            raise ConfigError("scopes=[]: give a key at least one scope, 'read' or 'trade'")
        if not timedelta(hours=1) <= ttl <= timedelta(days=366):
            raise ConfigError(f"ttl={ttl}: a key lives 1 hour to 366 days (e.g. 90 days)")
        with self.store.transaction() as db:
            user = db.get(User, user_id)
            if user is None:
                raise NotFoundError(f"user id {user_id} does not exist")
            if Scope.TRADE in scopes and not Role(user.role).allows(Role.TRADER):
                raise ConfigError(f"scope 'trade' needs a trader or admin; {user.username} is a {user.role}")
            if capped and (active := self._active_keys(db, user_id, now=now)) >= MAX_ACTIVE_KEYS:
                raise ConfigError(
                    f"{user.username} has {active} active API keys, the most a user may hold ({MAX_ACTIVE_KEYS}); "
                    "revoke one first (DELETE /keys/{id} or `tradeloop keys revoke <id>`)"
                )
            prefix, secret = secrets.token_hex(6), new_opaque_token()
            row = ApiKey(
                user_id=user_id, name=name[:100], prefix=prefix, key_hash=digest(secret),
                scopes=sorted({Scope(s).value for s in scopes}), expires_at=now + ttl, created_at=now,
            )  # fmt: skip
            db.add(row)
            db.flush()
            return f"tl_{prefix}_{secret}", row

    @staticmethod
    def _active_keys(db: Session, user_id: int, *, now: datetime) -> int:
        """Rule 3's count: keys neither revoked, expired nor replaced by a rotation."""
        rows = db.scalars(
            select(ApiKey.expires_at).where(
                ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None), ApiKey.rotated_to.is_(None)
            )
        )
        return sum(1 for expires_at in rows if _aware(expires_at) > now)

    def verify_api_key(self, key: str, *, now: datetime) -> tuple[User, ApiKey]:
        match = KEY_FORMAT.fullmatch(key)
        if match is None:
            raise AuthError("the API key is malformed (expected tl_<12 hex>_<secret>)")
        with self.store.transaction() as db:
            row = db.scalar(select(ApiKey).where(ApiKey.prefix == match.group(1)))
            expected = row.key_hash if row is not None else digest("")
            if not hmac.compare_digest(expected, digest(match.group(2))) or row is None:
                raise AuthError("unknown API key")
            if row.revoked_at is not None:
                raise AuthError(f"API key {row.prefix} was revoked; make a new one")
            if _aware(row.expires_at) <= now:
                raise AuthError(f"API key {row.prefix} expired; rotate it or make a new one")
            user = db.get(User, row.user_id)
            if user is None or user.disabled:
                raise AuthError("the key's account is disabled")
            row.last_used_at = now
            return user, row

    def api_keys(self, user_id: int | None = None) -> list[ApiKey]:
        with self.store.transaction() as db:
            query = select(ApiKey).order_by(ApiKey.id)
            if user_id is not None:
                query = query.where(ApiKey.user_id == user_id)
            return list(db.scalars(query))

    def rotate_api_key(
        self, key_id: int, *, now: datetime, grace: timedelta = timedelta(hours=24)
    ) -> tuple[str, ApiKey]:
        """Rule 3: a new key like ``key_id``; the old one stays valid for ``grace``."""
        with self.store.transaction() as db:
            old = db.get(ApiKey, key_id)
            if old is None or old.revoked_at is not None:
                raise NotFoundError(f"API key id {key_id} does not exist or was revoked")
            user_id, name, scopes = old.user_id, old.name, [Scope(s) for s in old.scopes]
            ttl = _aware(old.expires_at) - _aware(old.created_at)
            # rule 3: the successor takes the old key's place unless that place was already handed on
            in_place = old.rotated_to is None and _aware(old.expires_at) > now
        plaintext, new = self._new_api_key(
            user_id=user_id, name=name, scopes=scopes, now=now, ttl=ttl, capped=not in_place
        )
        with self.store.transaction() as db:
            old = db.get(ApiKey, key_id)
            assert old is not None
            old.expires_at = min(_aware(old.expires_at), now + grace)
            old.rotated_to = new.id
        return plaintext, new

    def revoke_api_key(self, key_id: int, *, now: datetime) -> None:
        with self.store.transaction() as db:
            row = db.get(ApiKey, key_id)
            if row is None:
                raise NotFoundError(f"API key id {key_id} does not exist")
            row.revoked_at = row.revoked_at or now

    # ------------------------------------------------------------------ exchange credentials
    def rotate_credentials(self, vault: Vault, *, now: datetime) -> int:
        """Every credential re-encrypted under the vault's newest key, in one transaction."""
        with self.store.transaction() as db:
            rows = list(db.scalars(select(ExchangeCredential).with_for_update()))
            for row in rows:
                row.ciphertext, row.rotated_at = vault.rotate(row.ciphertext), now
            return len(rows)
