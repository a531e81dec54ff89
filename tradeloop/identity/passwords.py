"""Passwords: argon2id hashes (argon2-cffi's defaults, RFC 9106's low-memory profile).

Rules: a password is 12 to 256 characters; a hash made with older parameters is rehashed
at the next successful sign-in (:func:`needs_rehash`); verification takes the same time
whether or not the user exists (:func:`verify_password` with ``None``), so a sign-in does not reveal
which usernames are taken.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from tradeloop.errors import ConfigError

MIN_LENGTH, MAX_LENGTH = 12, 256
_hasher = PasswordHasher()
_DUMMY = _hasher.hash("a password nobody has: equal time for unknown users")


def check_password_rules(password: str) -> None:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise ConfigError(
            f"password has {len(password)} characters; use {MIN_LENGTH} to {MAX_LENGTH} "
            "(a passphrase of a few words is fine)"
        )


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``. ``None`` (no such user, or one without a
    password) never matches, after checking a dummy hash so the answer takes the same time."""
    if stored is None:
        _verify(_DUMMY, password)
        return False
    return _verify(stored, password)


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
