"""Exchange credentials encrypted at rest.

The key comes from ``TRADELOOP_ENCRYPTION_KEY``: one Fernet key, or several separated by
commas, newest first (a ``MultiFernet``: the first encrypts, every one decrypts). Rotation:
put the new key first, run ``tradeloop keys rotate-encryption`` (every row re-encrypted
under it, in one transaction), then drop the old key. A secret is never returned by the
API and never logged: :class:`ExchangeSecret` hides its fields in ``repr``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from tradeloop.errors import ConfigError

VARIABLE = "TRADELOOP_ENCRYPTION_KEY"
HOW_TO = (
    f"set {VARIABLE} to a key from: "
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


@dataclass(frozen=True, kw_only=True)
class ExchangeSecret:
    """An exchange account's credentials (``repr`` shows none of them)."""

    api_key: str = field(repr=False)
    secret: str = field(repr=False)
    password: str | None = field(default=None, repr=False)


class Vault:
    """Encrypts and decrypts :class:`ExchangeSecret` with the configured keys."""

    def __init__(self, keys: str | None):
        if not keys or not keys.strip():
            raise ConfigError(f"no encryption key for exchange credentials; {HOW_TO}")
        try:
            self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()])
        except ValueError:
            raise ConfigError(
                f"{VARIABLE} holds a value that is not a Fernet key (32 url-safe base64 bytes); {HOW_TO}"
            ) from None

    def encrypt(self, secret: ExchangeSecret) -> str:
        data = {"api_key": secret.api_key, "secret": secret.secret, "password": secret.password}
        return self._fernet.encrypt(json.dumps(data).encode()).decode()

    def decrypt(self, ciphertext: str) -> ExchangeSecret:
        try:
            data = json.loads(self._fernet.decrypt(ciphertext.encode()))
        except InvalidToken:
            raise ConfigError(
                f"a stored exchange credential cannot be decrypted with {VARIABLE}'s keys; put the key it was "
                "encrypted with back in the list (after the new one) and rotate"
            ) from None
        return ExchangeSecret(api_key=data["api_key"], secret=data["secret"], password=data.get("password"))

    def rotate(self, ciphertext: str) -> str:
        """The same secret under the newest key."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                f"a stored exchange credential cannot be decrypted with {VARIABLE}'s keys; keep the old key "
                "after the new one until the rotation has run"
            ) from None
