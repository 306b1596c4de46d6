"""Settings from the environment (pydantic-settings).

The default needs no configuration at all: SQLite in the project directory and a dev signing
secret generated once beside it. `APP_ENV=production` refuses to start without a real key,
an issuer and an audience.

A relative SQLite path is taken from the project directory (the one holding `app/` and
`alembic.ini`), never from the working directory: the server, `alembic upgrade head` and
`python -m app token` then find the same database, and so the same dev secret, wherever they
are started from.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

# app/core/config.py → the checkout (or the directory the package was copied to).
PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///privacy.db"  # relative: in PROJECT_DIR


class ConfigurationError(RuntimeError):
    """The service cannot start with these settings."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    app_env: Literal["dev", "production"] = "dev"

    auth_secret: str | None = None
    auth_public_key: str | None = None
    auth_private_key: str | None = None
    auth_key_id: str | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    # A JWKS file of several public keys, the token's `kid` choosing one; re-read when the
    # file changes (key rotation without a restart). Instead of AUTH_SECRET/AUTH_PUBLIC_KEY.
    auth_jwks_file: Path | None = None

    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    due_soon_days: int = Field(default=7, ge=0, le=365)
    cors_origins: str = ""
    db_pool_size: int = Field(default=10, ge=1)
    # Several processes on one PostgreSQL (DESIGN §16). LISTEN needs a session of its own:
    # behind a transaction-mode pooler this URL reaches PostgreSQL directly.
    database_listen_url: str | None = None
    # `pgbouncer`: a transaction-mode pooler sits between the service and PostgreSQL (no
    # server-side prepared statement outlives a statement; no settings sent at connect).
    db_pooler: Literal["none", "pgbouncer"] = "none"
    # With DB_POOLER=pgbouncer: the pooler keeps prepared statements across transactions
    # (pgbouncer ≥ 1.21 with `max_prepared_statements` > 0, its default from 1.22). Statements
    # are then prepared once per server connection and reused, as on a direct connection;
    # every process checks at start that the pooler really does (app/core/db.py).
    db_pooler_prepared_statements: bool = False
    # Set: the write limit is counted in Redis, shared by every process.
    redis_url: str | None = None
    rate_limit_redis_prefix: str = "prapi:writes:"
    request_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    statement_timeout_ms: int = Field(default=15_000, ge=0)
    rate_limit_writes: int | None = Field(default=None, ge=1, description="per tenant per minute")
    log_level: str = "INFO"
    # The hot routes' binder (app/core/routing.py); off = every request through FastAPI's
    # dependency solver (the equivalence tests compare both).
    fast_paths: bool = True

    # Webhooks and the worker (DESIGN §9).
    webhook_allow_hosts: str = Field(
        default="", description="comma-separated hosts exempt from the private-network refusal"
    )
    webhook_max_attempts: int = Field(default=12, ge=1, le=50)
    webhook_backoff_base_seconds: float = Field(default=30.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=6 * 3600.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    breach_reminder_hours: int = Field(default=24, ge=0, le=24 * 30)
    # The worker loop inside the server process: default on for SQLite (the embedded
    # deployment), off for PostgreSQL (run `python -m app worker` beside the replicas).
    worker_in_process: bool | None = None
    worker_interval_seconds: float = Field(default=1.0, gt=0, le=3600)

    # Fulfilment (DESIGN §13).
    task_data_max_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    task_retry_backoff_base_seconds: float = Field(default=60.0, gt=0)
    task_retry_backoff_max_seconds: float = Field(default=6 * 3600.0, gt=0)
    # HMAC key of the access-package links; generated once in dev (like the JWT secret).
    package_link_secret: str | None = None

    # The service's own data (DESIGN §14): how long it keeps what it needs only for a while,
    # and how much the worker deletes per transaction.
    idempotency_ttl_hours: int = Field(default=24, ge=1, le=24 * 365)
    outbox_keep_days: int = Field(default=30, ge=1, le=3650)
    prune_batch_size: int = Field(default=500, ge=1, le=10_000)
    # Retention (DESIGN §14): how often a worker looks for the day's sweeps to create (every
    # round would read every policy and system each second); 0 = every round.
    retention_sweep_check_seconds: float = Field(default=60.0, ge=0, le=3600)

    # Keys and secrets rotating without downtime (DESIGN §16).
    # The key that encrypts the webhook and system signing secrets at rest (AES-GCM);
    # generated once in dev (like the JWT secret), required in production.
    secrets_key: str | None = None
    # Retired keys still read during `python -m app rotate-secrets-key` (comma-separated).
    secrets_key_old: str = ""
    # After a rotate-secret, deliveries carry the new and the previous signature this long.
    webhook_secret_overlap_hours: float = Field(default=24.0, ge=0, le=24 * 30)

    @model_validator(mode="after")
    def _anchor_relative_sqlite_path(self) -> Settings:
        self.database_url = anchored_database_url(self.database_url)
        return self

    @model_validator(mode="after")
    def _pooler_needs_a_direct_listener(self) -> Settings:
        if self.db_pooler == "pgbouncer" and not self.is_sqlite and not self.database_listen_url:
            # LISTEN through a transaction-mode pooler would hear nothing (its session is lent
            # to other clients): the listener needs its own direct connection.
            raise ConfigurationError(
                "DB_POOLER=pgbouncer needs DATABASE_LISTEN_URL: a direct connection to "
                "PostgreSQL for the cache listener (LISTEN needs a session of its own)"
            )
        if self.db_pooler_prepared_statements and self.db_pooler != "pgbouncer":
            raise ConfigurationError(
                "DB_POOLER_PREPARED_STATEMENTS is about a pooler: it needs DB_POOLER=pgbouncer"
            )
        return self

    @property
    def pooler(self) -> str:
        """How the pools talk to PostgreSQL (app/core/db.py asyncpg_connect_args): `none`,
        `pgbouncer` (unnamed statements) or `pgbouncer-prepared` (named, kept by the pooler)."""
        if self.is_sqlite or self.db_pooler == "none":
            return "none"
        return "pgbouncer-prepared" if self.db_pooler_prepared_statements else "pgbouncer"

    @model_validator(mode="after")
    def _production_needs_real_keys(self) -> Settings:
        if self.app_env == "production":
            if not (self.auth_secret or self.auth_public_key or self.auth_jwks_file):
                raise ConfigurationError(
                    "APP_ENV=production needs AUTH_SECRET (HS256), AUTH_PUBLIC_KEY (RS256/ES256) "
                    "or AUTH_JWKS_FILE"
                )
            if not (self.auth_issuer and self.auth_audience):
                raise ConfigurationError("APP_ENV=production needs AUTH_ISSUER and AUTH_AUDIENCE")
            if not self.secrets_key:
                raise ConfigurationError(
                    "APP_ENV=production needs SECRETS_KEY (it encrypts the signing secrets)"
                )
        if self.secrets_key is not None and len(self.secrets_key) < 32:
            raise ConfigurationError("SECRETS_KEY must be at least 32 characters")
        if self.auth_jwks_file is not None and (self.auth_secret or self.auth_public_key):
            raise ConfigurationError(
                "AUTH_JWKS_FILE replaces AUTH_SECRET and AUTH_PUBLIC_KEY: set one of them"
            )
        if self.package_link_secret is not None and len(self.package_link_secret) < 32:
            raise ConfigurationError("PACKAGE_LINK_SECRET must be at least 32 characters")
        if self.auth_secret is not None and len(self.auth_secret) < 32:
            raise ConfigurationError("AUTH_SECRET must be at least 32 characters")
        if self.auth_private_key and not (self.auth_public_key or self.auth_jwks_file):
            # The service verifies with AUTH_PUBLIC_KEY only: without it, it would check HS256
            # tokens against AUTH_SECRET (or the dev secret) and ignore this key.
            raise ConfigurationError(
                "AUTH_PRIVATE_KEY is set without AUTH_PUBLIC_KEY or AUTH_JWKS_FILE"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return make_url(self.database_url).get_backend_name() == "sqlite"

    @property
    def listen_url(self) -> str:
        return self.database_listen_url or self.database_url

    @property
    def run_worker_in_process(self) -> bool:
        return self.is_sqlite if self.worker_in_process is None else self.worker_in_process

    @property
    def webhook_allow_host_set(self) -> frozenset[str]:
        return frozenset(
            h.strip().lower().strip("[]") for h in self.webhook_allow_hosts.split(",") if h.strip()
        )

    @property
    def idempotency_ttl(self) -> timedelta:
        return timedelta(hours=self.idempotency_ttl_hours)

    @property
    def outbox_keep(self) -> timedelta:
        return timedelta(days=self.outbox_keep_days)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def package_link_secret_path(self) -> Path:
        """Where dev mode keeps its generated package-link key (beside the JWT secret)."""
        jwt_path = self.dev_secret_path()
        return jwt_path.with_name(jwt_path.name.replace("jwt-secret", "package-link-secret"))

    def secrets_key_path(self) -> Path:
        """Where dev mode keeps its generated SECRETS_KEY (beside the JWT secret)."""
        jwt_path = self.dev_secret_path()
        return jwt_path.with_name(jwt_path.name.replace("jwt-secret", "secrets-key"))

    def dev_secret_path(self) -> Path:
        """Where dev mode keeps its generated HS256 secret: one absolute path per database,
        whatever the working directory.

        Beside the SQLite file (`privacy.db.jwt-secret`); with PostgreSQL (or in-memory SQLite)
        `.dev-jwt-secret` in the project directory. Both names are git-ignored.
        """
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and not _in_memory(url.database):
            db = Path(str(url.database))
            return db.with_name(db.name + ".jwt-secret")
        return PROJECT_DIR / ".dev-jwt-secret"


def _in_memory(database: str | None) -> bool:
    return database in (None, "", ":memory:") or str(database).startswith("file:")


def anchored_database_url(value: str) -> str:
    """A SQLite URL whose file path is relative, made absolute from PROJECT_DIR."""
    url = make_url(value)
    if url.get_backend_name() != "sqlite" or _in_memory(url.database):
        return value
    path = Path(str(url.database))
    if path.is_absolute():
        return value
    return url.set(database=str(PROJECT_DIR / path)).render_as_string(hide_password=False)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
