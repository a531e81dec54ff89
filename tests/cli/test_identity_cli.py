"""``tradeloop users`` and ``tradeloop keys``: the first admin from a script, a key printed
once that the API accepts, rotation and revocation; a password is never an option."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tradeloop.errors import AuthError
from tradeloop.identity import IdentityStore, Role
from tradeloop.ops import OpsStore

PASSWORD = "correct horse battery staple"


def tradeloop(*args: str, data_dir: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRADELOOP_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "tradeloop", *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
    )


def identity(data_dir: Path) -> IdentityStore:
    return IdentityStore(OpsStore.open(f"sqlite:///{data_dir / 'tradeloop.db'}"))


def test_the_first_admin_and_a_key_from_a_script(tmp_path: Path) -> None:
    made = tradeloop(
        "users", "create", "root", "--role", "admin", "--password-stdin", data_dir=tmp_path, stdin=PASSWORD
    )
    assert made.returncode == 0, made.stderr
    store = identity(tmp_path)
    assert store.authenticate(username="root", password=PASSWORD).role == Role.ADMIN
    key = tradeloop("keys", "create", "--user", "root", "--name", "ci", "--scope", "read", data_dir=tmp_path)
    assert key.returncode == 0, key.stderr
    printed = key.stdout.strip().splitlines()[-1]
    user, row = store.verify_api_key(printed, now=datetime.now(UTC))
    assert user.username == "root" and row.scopes == ["read"]
    listed = tradeloop("keys", "list", data_dir=tmp_path)
    assert row.prefix in listed.stdout and printed not in listed.stdout  # the key itself is never shown again
    rotated = tradeloop("keys", "rotate", str(row.id), "--grace-hours", "0", data_dir=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip().splitlines()[-1]
    assert store.verify_api_key(new, now=datetime.now(UTC))[0].username == "root"
    with pytest.raises(AuthError, match="expired"):  # no grace: the old key is over
        store.verify_api_key(printed, now=datetime.now(UTC))
    new_id = store.verify_api_key(new, now=datetime.now(UTC))[1].id
    assert tradeloop("keys", "revoke", str(new_id), data_dir=tmp_path).returncode == 0
    with pytest.raises(AuthError, match="revoked"):
        store.verify_api_key(new, now=datetime.now(UTC))
    store.store.close()


def test_bad_input_exits_2_naming_it_and_a_password_is_not_an_option(tmp_path: Path) -> None:
    short = tradeloop("users", "create", "ana", "--password-stdin", data_dir=tmp_path, stdin="short")
    assert short.returncode == 2 and "password has 5 characters" in short.stderr
    bad_name = tradeloop("users", "create", "a b", "--password-stdin", data_dir=tmp_path, stdin=PASSWORD)
    assert bad_name.returncode == 2 and "username='a b'" in bad_name.stderr
    as_option = tradeloop("users", "create", "ana", "--password", PASSWORD, data_dir=tmp_path)
    assert as_option.returncode == 2 and "No such option" in as_option.stderr
    tradeloop("users", "create", "vera", "--password-stdin", data_dir=tmp_path, stdin=PASSWORD)
    trade = tradeloop("keys", "create", "--user", "vera", "--name", "x", "--scope", "trade", data_dir=tmp_path)
    assert trade.returncode == 2 and "scope 'trade' needs a trader" in trade.stderr
    missing = tradeloop("keys", "create", "--user", "nobody", "--name", "x", "--scope", "read", data_dir=tmp_path)
    assert missing.returncode == 13 and "nobody" in missing.stderr
