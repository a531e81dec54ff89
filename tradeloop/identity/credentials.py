"""Exchange credentials a user stores for their live sessions, encrypted at rest.

Rules:

1. A credential belongs to one user (``user_id``) and has a name unique among theirs; it is
   stored as the vault's ciphertext only (``tradeloop.identity.vault``). What leaves this
   module is :class:`CredentialInfo` (no secret) or, for the engine that trades with it, an
   :class:`~tradeloop.identity.vault.ExchangeSecret` (whose ``repr`` shows nothing).
2. Storing it again under the same name replaces the secret (a key rotated at the exchange);
   the exchange it is for never changes (a session made with it trades on that exchange).
3. A live session names the credential it trades with (``sessions.credential_id``). A
   credential is removed only when no session that may still trade (not ``stopped``) uses it;
   the stopped ones forget it, so the row can go.
4. The vault needs ``TRADELOOP_ENCRYPTION_KEY``; without it, storing or reading a secret is a
   :class:`~tradeloop.errors.NotConfiguredError` naming the variable (the operator's to set).
5. Removal and a new session naming the credential never interleave: each locks the
   credential's row first (``SELECT ... FOR UPDATE``; SQLite: the write lock), so a removal
   either sees the new session and is refused, or comes first and the session is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from tradeloop.errors import ConfigError, NotConfiguredError, NotFoundError, SessionStateError
from tradeloop.identity.vault import HOW_TO, ExchangeSecret, Vault
from tradeloop.ops.identity_models import ExchangeCredential
from tradeloop.ops.models import TradingSession
from tradeloop.ops.store import OpsStore
from tradeloop.settings import Settings


@dataclass(frozen=True, kw_only=True, slots=True)
class CredentialInfo:
    """What may be shown of a stored credential: never the key or the secret."""

    id: int
    user_id: int
    name: str
    exchange: str
    created_at: datetime
    rotated_at: datetime | None

    @classmethod
    def of(cls, row: ExchangeCredential) -> CredentialInfo:
        return cls(
            id=row.id, user_id=row.user_id, name=row.name, exchange=row.exchange,
            created_at=row.created_at, rotated_at=row.rotated_at,
        )  # fmt: skip


def vault_of(settings: Settings) -> Vault:
    """The vault of ``TRADELOOP_ENCRYPTION_KEY`` (rule 4)."""
    if settings.encryption_key is None or not settings.encryption_key.get_secret_value().strip():
        raise NotConfiguredError(f"this server stores no exchange credentials until its operator does: {HOW_TO}")
    return Vault(settings.encryption_key.get_secret_value())


class CredentialStore:
    """Exchange credentials through an :class:`OpsStore`'s transactions (so the API's row-level
    security applies to them as to every other row of a user)."""

    def __init__(self, store: OpsStore):
        self.store = store

    def put(
        self, *, user_id: int, name: str, exchange: str, secret: ExchangeSecret, vault: Vault, now: datetime
    ) -> CredentialInfo:
        """Store ``secret`` as ``user_id``'s credential ``name`` (rule 2: a new one or a replacement)."""
        ciphertext = vault.encrypt(secret)
        with self.store.transaction() as db:
            row = db.scalar(
                select(ExchangeCredential).where(ExchangeCredential.user_id == user_id, ExchangeCredential.name == name)
            )
            if row is None:
                row = ExchangeCredential(user_id=user_id, name=name, exchange=exchange, ciphertext=ciphertext)
                db.add(row)
            elif row.exchange != exchange:  # a session made with it trades on its exchange: never swap it
                raise ConfigError(
                    f"exchange credential {name!r} is a {row.exchange} account; store the {exchange} one under "
                    "another name (storing again under a name replaces the secret of the same exchange's account)"
                )
            else:
                row.ciphertext, row.rotated_at = ciphertext, now
            db.flush()
            return CredentialInfo.of(row)

    def infos(self, user_id: int | None = None) -> list[CredentialInfo]:
        """Every credential of ``user_id`` (None: everyone's), oldest first."""
        query = select(ExchangeCredential).order_by(ExchangeCredential.id)
        if user_id is not None:
            query = query.where(ExchangeCredential.user_id == user_id)
        with self.store.transaction() as db:
            return [CredentialInfo.of(row) for row in db.scalars(query)]

    def info(self, credential_id: int) -> CredentialInfo:
        with self.store.transaction() as db:
            row = db.get(ExchangeCredential, credential_id)
            if row is None:
                raise NotFoundError(f"exchange credential id {credential_id} does not exist")
            return CredentialInfo.of(row)

    def by_name(self, *, user_id: int, name: str) -> CredentialInfo:
        with self.store.transaction() as db:
            row = db.scalar(
                select(ExchangeCredential).where(ExchangeCredential.user_id == user_id, ExchangeCredential.name == name)
            )
            if row is None:
                raise NotFoundError(
                    f"you have no exchange credential named {name!r}; store one first (POST /credentials)"
                )
            return CredentialInfo.of(row)

    def secret(self, credential_id: int, *, vault: Vault) -> ExchangeSecret:
        """The decrypted credential, for the engine that trades with it (never for a response)."""
        with self.store.transaction() as db:
            row = db.get(ExchangeCredential, credential_id)
            if row is None:
                raise NotFoundError(f"exchange credential id {credential_id} does not exist")
            return vault.decrypt(row.ciphertext)

    def remove(self, credential_id: int) -> None:
        """Delete it (rule 3): refused while a session that may still trade uses it.

        Raises
        ------
        NotFoundError
            No such credential.
        SessionStateError
            A session not stopped trades with it (the API's 409), named; one being made at the
            same moment counts (rule 5).
        """
        with self.store.transaction(immediate=True) as db:
            row = db.scalar(select(ExchangeCredential).where(ExchangeCredential.id == credential_id).with_for_update())
            if row is None:
                raise NotFoundError(f"exchange credential id {credential_id} does not exist")
            users = list(db.scalars(select(TradingSession).where(TradingSession.credential_id == credential_id)))
            active = sorted(s.name for s in users if s.status != "stopped")
            if active:
                raise SessionStateError(
                    f"exchange credential {row.name!r} is what session(s) {active} trade with; stop them first "
                    "(POST /sessions/{id}/stop), or store a new secret under the same name to replace it"
                )
            for session in users:
                session.credential_id = None
            db.delete(row)
