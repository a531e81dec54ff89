"""Settings: every one has an embedded default and an environment variable.

With nothing configured tradeloop keeps market data under ``./data``, uses SQLite for the
operational database and an in-process event bus. ``.env.example`` lists every variable.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tradeloop.venue_settings import VenueKeys, blank_is_none, known_venues, venue_ids_lowercase

__all__ = ["Settings", "VenueKeys", "get_settings", "register_settings_secrets", "variable"]


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Process-wide settings, read from the environment (and ``.env`` when present).

    ``TRADELOOP_VENUES`` is the one nested setting: ``TRADELOOP_VENUES__OKX__API_KEY=...`` (and
    ``__SECRET``, ``__PASSWORD``, ``__API_URL``, ``__WS_URL``) sets ``venues['okx']``."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True, env_nested_delimiter="__"
    )

    data_dir: Path = Field(
        default=Path("data"),
        validation_alias=_env("TRADELOOP_DATA_DIR"),
        description="Root of the embedded storage (lake, quarantine, SQLite file).",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=_env("DATABASE_URL"),
        description="SQLAlchemy URL of the operational database; SQLite under data_dir when unset.",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=_env("REDIS_URL"),
        description="Redis for event streams and price cache; in-process bus when unset.",
    )
    redis_prefix: str = Field(
        default="tradeloop",
        validation_alias=_env("TRADELOOP_REDIS_PREFIX"),
        description="Prefix of every Redis key (streams, price cache), to share one server.",
    )
    exchange: str = Field(default="binance", validation_alias=_env("TRADELOOP_EXCHANGE"))
    exchange_api_key: SecretStr | None = Field(default=None, validation_alias=_env("TRADELOOP_EXCHANGE_API_KEY"))
    exchange_secret: SecretStr | None = Field(default=None, validation_alias=_env("TRADELOOP_EXCHANGE_SECRET"))
    exchange_password: SecretStr | None = Field(default=None, validation_alias=_env("TRADELOOP_EXCHANGE_PASSWORD"))
    exchange_api_url: str | None = Field(
        default=None,
        validation_alias=_env("TRADELOOP_EXCHANGE_API_URL"),
        description="Override of the exchange's public REST base URL (proxies, test servers).",
    )
    exchange_ws_url: str | None = Field(
        default=None,
        validation_alias=_env("TRADELOOP_EXCHANGE_WS_URL"),
        description="Override of the exchange's WebSocket URL (ccxt.pro market streams).",
    )
    venues: dict[str, VenueKeys] = Field(
        default_factory=dict,
        validation_alias=_env("TRADELOOP_VENUES"),
        description="Keys and URL overrides of the other venues a live session trades on, by ccxt exchange id: "
        "TRADELOOP_VENUES__OKX__API_KEY, __SECRET, __PASSWORD, __API_URL, __WS_URL (the session's own exchange "
        "uses TRADELOOP_EXCHANGE_API_KEY and the rest unless it has an entry here).",
    )
    allow_insecure_loopback: bool = Field(
        default=False,
        validation_alias=_env("TRADELOOP_ALLOW_INSECURE_LOOPBACK"),
        description="Let signed (keyed) requests use plain http:// or ws:// to a loopback host "
        "(a test exchange on this machine); never to another host.",
    )
    http_timeout_s: float = Field(default=10.0, gt=0, validation_alias=_env("TRADELOOP_HTTP_TIMEOUT_S"))
    http_max_retries: int = Field(default=5, ge=0, le=20, validation_alias=_env("TRADELOOP_HTTP_MAX_RETRIES"))
    log_level: str = Field(default="INFO", validation_alias=_env("TRADELOOP_LOG_LEVEL"))
    # logs (tradeloop.logs): human-readable text on stderr by default
    log_format: Literal["text", "json"] = Field(
        default="text",
        validation_alias=_env("TRADELOOP_LOG_FORMAT"),
        description="text: one readable line per record; json: one JSON object per line with the correlation ids "
        "(session, client_order_id, run_id, job_id, request_id), for a log collector.",
    )
    log_file: Path | None = Field(
        default=None,
        validation_alias=_env("TRADELOOP_LOG_FILE"),
        description="Write the log to this file instead of stderr, rotated (one file per process); unset: stderr.",
    )
    log_max_mb: float = Field(
        default=50.0,
        ge=0,
        validation_alias=_env("TRADELOOP_LOG_MAX_MB"),
        description="Rotate TRADELOOP_LOG_FILE at this size, keeping TRADELOOP_LOG_BACKUPS old files; 0: never "
        "rotate it here (logrotate does: the file is reopened when it is moved away).",
    )
    log_backups: int = Field(default=5, ge=0, le=100, validation_alias=_env("TRADELOOP_LOG_BACKUPS"))
    lab_url: str = Field(
        default="http://127.0.0.1:8888",
        validation_alias=_env("TRADELOOP_LAB_URL"),
        description="JupyterLab's address (`make lab`), for links to notebooks from Dagster and the dashboard.",
    )
    dagster_home: str | None = Field(
        default=None,
        validation_alias=_env("DAGSTER_HOME"),
        description="Dagster's instance folder, shared by `python -m pipelines.run` and `dagster dev`; "
        "data_dir/dagster when unset.",
    )
    # backups (tradeloop.backup): the database, the lake and the registry in a restic repository
    backup_repository: str | None = Field(
        default=None,
        validation_alias=_env("TRADELOOP_BACKUP_REPOSITORY"),
        description="The restic repository backups go to: a folder (on another disk) or a restic backend "
        "(sftp:host:/path, s3:host/bucket, rest:https://host/); data_dir/backups when unset.",
    )
    backup_password: SecretStr | None = Field(
        default=None,
        validation_alias=_env("TRADELOOP_BACKUP_PASSWORD"),
        description="The restic repository's password: every backup is encrypted with it; never logged.",
    )
    backup_keep_last: int = Field(default=3, ge=0, validation_alias=_env("TRADELOOP_BACKUP_KEEP_LAST"))
    backup_keep_daily: int = Field(default=7, ge=0, validation_alias=_env("TRADELOOP_BACKUP_KEEP_DAILY"))
    backup_keep_weekly: int = Field(default=4, ge=0, validation_alias=_env("TRADELOOP_BACKUP_KEEP_WEEKLY"))
    backup_keep_monthly: int = Field(default=12, ge=0, validation_alias=_env("TRADELOOP_BACKUP_KEEP_MONTHLY"))
    backup_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        validation_alias=_env("TRADELOOP_BACKUP_TIMEOUT_S"),
        description="The longest one pg_dump, pg_restore or restic call of a backup may run, seconds.",
    )
    # service API (api/)
    api_host: str = Field(
        default="127.0.0.1",
        validation_alias=_env("TRADELOOP_API_HOST"),
        description="Where `tradeloop up` serves the API; 127.0.0.1 unless a proxy in front terminates TLS.",
    )
    api_port: int = Field(default=8000, ge=0, le=65535, validation_alias=_env("TRADELOOP_API_PORT"))
    jwt_secret: SecretStr | None = Field(
        default=None,
        validation_alias=_env("TRADELOOP_JWT_SECRET"),
        description="Signs the API's access tokens (at least 32 bytes); made once under data_dir/secrets when unset.",
    )
    # single sign-on (tradeloop/identity/oidc.py): an OpenID Connect provider's tokens
    oidc_issuer: str | None = Field(
        default=None,
        validation_alias=_env("TRADELOOP_OIDC_ISSUER"),
        description="The OIDC provider's issuer URL (https); its tokens sign users in. Local sign-in only when unset.",
    )
    oidc_audience: str | None = Field(
        default=None,
        validation_alias=_env("TRADELOOP_OIDC_AUDIENCE"),
        description="The `aud` the provider puts in tokens for this API (Supabase: 'authenticated').",
    )
    oidc_role_claim: str = Field(
        default="tradeloop_role",
        validation_alias=_env("TRADELOOP_OIDC_ROLE_CLAIM"),
        description="Dotted path of the claim naming the role (Supabase: app_metadata.tradeloop_role; "
        "Keycloak: resource_access.<client>.roles).",
    )
    oidc_default_role: Literal["viewer", "trader"] = Field(
        default="viewer",
        validation_alias=_env("TRADELOOP_OIDC_DEFAULT_ROLE"),
        description="The role of a provider user whose token names none.",
    )
    local_login: bool = Field(
        default=True,
        validation_alias=_env("TRADELOOP_LOCAL_LOGIN"),
        description="Password sign-in (POST /auth/login, /auth/refresh); false: only the OIDC provider and API keys.",
    )
    encryption_key: SecretStr | None = Field(
        default=None,
        validation_alias=_env("TRADELOOP_ENCRYPTION_KEY"),
        description="Fernet key(s), comma-separated, newest first: exchange credentials encrypted at rest.",
    )
    cors_origins: str = Field(
        default="",
        validation_alias=_env("TRADELOOP_CORS_ORIGINS"),
        description="Comma-separated origins a browser may call the API from; none by default (CORS closed).",
    )
    # API hardening (api/ratelimit.py, api/security.py): limits in the `limits` notation
    # ("600/minute", "10/second;600/hour"); an empty string turns that limit off
    rate_limit_user: str = Field(
        default="600/minute",
        validation_alias=_env("TRADELOOP_RATE_LIMIT_USER"),
        description="Requests per signed-in user (bearer token).",
    )
    rate_limit_api_key: str = Field(
        default="1200/minute",
        validation_alias=_env("TRADELOOP_RATE_LIMIT_API_KEY"),
        description="Requests per API key.",
    )
    rate_limit_ip: str = Field(
        default="300/minute",
        validation_alias=_env("TRADELOOP_RATE_LIMIT_IP"),
        description="Requests per client IP that carry no credentials, and refused credentials (401s) per client IP.",
    )
    rate_limit_login: str = Field(
        default="20/minute",
        validation_alias=_env("TRADELOOP_RATE_LIMIT_LOGIN"),
        description="Password sign-ins (POST /auth/login) per client IP, against password guessing.",
    )
    trusted_proxies: str = Field(
        default="",
        validation_alias=_env("TRADELOOP_TRUSTED_PROXIES"),
        description="Comma-separated IPs or networks (CIDR) of the reverse proxies whose X-Forwarded-For "
        "names the client; none by default: the client is the socket's peer.",
    )
    api_behind_tls: bool = Field(
        default=False,
        validation_alias=_env("TRADELOOP_API_BEHIND_TLS"),
        description="The API is reached over HTTPS (a TLS proxy in front): responses carry Strict-Transport-Security.",
    )
    api_max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        validation_alias=_env("TRADELOOP_API_MAX_BODY_BYTES"),
        description="The largest request body the API reads; a larger one is refused with 413.",
    )

    # metrics (tradeloop.observability): the live engine and job workers serve /metrics here; the API on its own port
    metrics_host: str = Field(
        default="127.0.0.1",
        validation_alias=_env("TRADELOOP_METRICS_HOST"),
        description="Where a process without a web server of its own (engine, worker) serves /metrics for Prometheus.",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        validation_alias=_env("TRADELOOP_METRICS_PORT"),
        description="The port of that /metrics (one per process); unset: not served. The API serves its own /metrics.",
    )

    @field_validator(
        "metrics_port",
        "log_file",
        "exchange_api_key",
        "exchange_secret",
        "exchange_password",
        "exchange_api_url",
        "exchange_ws_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return blank_is_none(value)

    @field_validator("venues", mode="before")
    @classmethod
    def _venue_ids_lowercase(cls, value: object) -> object:
        return venue_ids_lowercase(value)

    @field_validator("venues", mode="after")
    @classmethod
    def _known_venues(cls, value: dict[str, VenueKeys]) -> dict[str, VenueKeys]:
        return known_venues(value)

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("not a log level; use DEBUG, INFO, WARNING or ERROR")
        return level

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def research_dir(self) -> Path:
        return self.data_dir / "research"

    @property
    def registry_dir(self) -> Path:
        return self.data_dir / "registry"

    @property
    def runs_dir(self) -> Path:
        """Executed notebooks, one folder per pipeline run."""
        return self.data_dir / "runs"

    @property
    def dagster_dir(self) -> Path:
        """Dagster's instance folder, absolute (Dagster refuses a relative DAGSTER_HOME)."""
        return Path(self.dagster_home or self.data_dir / "dagster").resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'tradeloop.db').as_posix()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process (read once). Its secrets are masked in every log record
    from then on (``tradeloop.redaction``).

    Raises
    ------
    ConfigError
        A bad environment variable (or ``.env`` line), named with the fix; a venue's key is never shown.
    """
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from tradeloop.settings_errors import settings_error, unreadable_setting

    try:
        settings = Settings()
    except ValidationError as exc:  # a bad environment variable: exit 2 naming it, never a traceback
        raise settings_error(exc) from None
    except SettingsError as exc:  # a value pydantic-settings cannot even parse (TRADELOOP_VENUES=okx)
        raise unreadable_setting(exc) from None
    register_settings_secrets(settings)
    return settings


def variable(field: str) -> str:
    """The environment variable of a settings field."""
    alias = Settings.model_fields[field].validation_alias
    choices = getattr(alias, "choices", None)
    return str(choices[0]) if choices else field.upper()


def register_settings_secrets(settings: Settings) -> None:
    """Exchange keys, the signing and encryption keys, the backup password and the passwords inside
    DATABASE_URL / REDIS_URL / TRADELOOP_BACKUP_REPOSITORY never reach a log."""
    from tradeloop.redaction import register_secret, url_password

    secrets: list[str | None] = [
        s.get_secret_value()
        for s in (
            settings.exchange_api_key,
            settings.exchange_secret,
            settings.exchange_password,
            settings.jwt_secret,
            settings.encryption_key,
            settings.backup_password,
        )
        if s is not None
    ]
    for keys in settings.venues.values():
        secrets += [s.get_secret_value() for s in (keys.api_key, keys.secret, keys.password) if s is not None]
    secrets += [
        url_password(url) for url in (settings.database_url, settings.redis_url, settings.backup_repository) if url
    ]
    register_secret(*secrets)
