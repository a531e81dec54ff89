"""A bad environment variable is a one-line error naming the variable, its value and the fix
(exit 2), never a traceback; a password in a URL never reaches the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def tradeloop(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    full = {
        k: v for k, v in os.environ.items() if not k.startswith("TRADELOOP_") and k not in ("DATABASE_URL", "REDIS_URL")
    } | env
    return subprocess.run(
        [sys.executable, "-m", "tradeloop", *args], env=full, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("variable", "value", "fix"),
    [
        ("TRADELOOP_HTTP_TIMEOUT_S", "abc", "valid number"),
        ("TRADELOOP_HTTP_TIMEOUT_S", "-1", "greater than 0"),
        ("TRADELOOP_HTTP_MAX_RETRIES", "99", "less than or equal to 20"),
        ("TRADELOOP_LOG_LEVEL", "LOUD", "use DEBUG, INFO, WARNING or ERROR"),
        ("TRADELOOP_ALLOW_INSECURE_LOOPBACK", "maybe", "valid boolean"),
    ],
)
def test_a_bad_setting_names_the_variable_value_and_fix(tmp_path: Path, variable: str, value: str, fix: str) -> None:
    done = tradeloop("live", "sessions", env={"TRADELOOP_DATA_DIR": str(tmp_path), variable: value}, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{variable}={value!r}" in done.stderr and fix in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgres ql://trader:S3cretPw@db.example/ops",
        "postgresql+psycopg://trader:S3cretPw@127.0.0.1:notaport/ops",
        "postgresql+psycopg://trader:S3cr/etPw@127.0.0.1:1/ops",
    ],
)
def test_a_malformed_database_url_is_shown_with_its_password_masked(tmp_path: Path, url: str) -> None:
    done = tradeloop(
        "live", "run", "--name", "x", env={"TRADELOOP_DATA_DIR": str(tmp_path), "DATABASE_URL": url}, cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert "DATABASE_URL=" in done.stderr and "trader:***@" in done.stderr
    assert "S3cretPw" not in done.stdout + done.stderr and "S3cr/etPw" not in done.stdout + done.stderr
    assert "etPw" not in done.stdout + done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg://u:pw@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
        ("redis://:se/cr:et@h:6399/0", "redis://:***@h:6399/0"),  # a password may hold / and :
        ("redis://:p@ss@h/0", "redis://:***@h/0"),  # and @: it runs to the last @
        ("rest:https://ops:p/w@h/r", "rest:https://ops:***@h/r"),  # a restic backend's URL: the backup repository
        ("sqlite:///data/tradeloop.db", "sqlite:///data/tradeloop.db"),
        ("redis://h:6379/0", "redis://h:6379/0"),
    ],
)
def test_url_passwords_are_masked_whatever_they_hold(url: str, masked: str) -> None:
    from tradeloop.redaction import mask_url

    assert mask_url(url) == masked


def test_settings_come_from_dotenv_in_the_working_directory_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TRADELOOP_HTTP_TIMEOUT_S=abc\n")
    done = tradeloop("live", "sessions", env={"TRADELOOP_DATA_DIR": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode == 2 and "TRADELOOP_HTTP_TIMEOUT_S='abc'" in done.stderr  # read from .env
    done = tradeloop(
        "live", "sessions", env={"TRADELOOP_DATA_DIR": str(tmp_path), "TRADELOOP_HTTP_TIMEOUT_S": "5"}, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr  # the environment overrides .env


def test_venue_keys_are_read_per_venue_from_the_environment_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRADELOOP_VENUES__<VENUE>__<FIELD> fills one venue's keys and URLs (live.venue_keys); a
    venue that is not a ccxt id is refused naming the variable, its keys hidden, and the keys of
    a good one are registered as secrets (masked in every log)."""
    from tradeloop.redaction import redact
    from tradeloop.settings import Settings, register_settings_secrets

    env = {
        "TRADELOOP_VENUES__OKX__API_KEY": "okx-key-123456",
        "TRADELOOP_VENUES__OKX__SECRET": "okx-secret-654321",
        "TRADELOOP_VENUES__OKX__WS_URL": "wss://ws.okx.example/ws/v5",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    okx = settings.venues["okx"]
    assert okx.api_key is not None and okx.api_key.get_secret_value() == "okx-key-123456"
    assert okx.ws_url == "wss://ws.okx.example/ws/v5" and okx.password is None and okx.api_url is None
    register_settings_secrets(settings)
    assert "okx-secret-654321" not in redact("signed with okx-secret-654321")

    root = str(Path(__file__).resolve().parents[2])  # this checkout's tradeloop, whatever is installed
    bad = {"TRADELOOP_DATA_DIR": str(tmp_path), "TRADELOOP_VENUES__NOPE__SECRET": "nope-secret-999", "PYTHONPATH": root}
    done = tradeloop("live", "sessions", env=bad, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "TRADELOOP_VENUES" in done.stderr and "not ccxt exchange ids" in done.stderr
    assert "nope-secret-999" not in done.stderr and "Traceback" not in done.stderr


ROOT = str(Path(__file__).resolve().parents[2])  # this checkout's tradeloop, whatever is installed


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        (  # not JSON: pydantic-settings' own SettingsError, once a traceback
            {"TRADELOOP_VENUES": "okx"},
            [
                "TRADELOOP_VENUES cannot be read",
                "TRADELOOP_VENUES__<VENUE>__<FIELD>",
                "e.g. TRADELOOP_VENUES__OKX__API_KEY",
            ],
        ),
        (  # a misspelt field: the variable as written, a venue's fields (not the top-level variables)
            {"TRADELOOP_VENUES__OKX__APIKEY": "okx-key-hidden-1"},
            ["TRADELOOP_VENUES__OKX__APIKEY is unknown; did you mean TRADELOOP_VENUES__OKX__API_KEY?"],
        ),
        ({"TRADELOOP_VENUES__OKX": "okx-key-hidden-1"}, ["TRADELOOP_VENUES__OKX is not one of a venue's settings"]),
    ],
)
def test_a_bad_venue_setting_names_its_variable_and_a_venues_fields(
    tmp_path: Path, env: dict[str, str], wanted: list[str]
) -> None:
    done = tradeloop(
        "live", "sessions", env={"TRADELOOP_DATA_DIR": str(tmp_path), "PYTHONPATH": ROOT, **env}, cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "okx-key-hidden-1" not in done.stderr
    for text in wanted:
        assert text in done.stderr, done.stderr
    assert "API_KEY, SECRET, PASSWORD, API_URL, WS_URL" in done.stderr
    assert "TRADELOOP_DATA_DIR" not in done.stderr  # a venue's fields, not every setting


def test_venues_given_as_json_are_named_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradeloop.errors import ConfigError
    from tradeloop.settings import Settings, get_settings

    monkeypatch.setenv("TRADELOOP_VENUES", '{"OKX": {"api_key": "k-1", "secret": "s-1"}}')
    okx = Settings(_env_file=None).venues["okx"]
    assert okx.api_key is not None and okx.api_key.get_secret_value() == "k-1"
    monkeypatch.setenv("TRADELOOP_VENUES", '{"OKXX": {"api_key": "k-1"}}')
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as refused:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert "['okxx'] are not ccxt exchange ids" in str(refused.value) and "OKX for okx" not in str(refused.value)
    assert "TRADELOOP_VENUES__OKX__API_KEY for okx" in str(refused.value) and "k-1" not in str(refused.value)
