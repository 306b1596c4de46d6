"""Settings from the environment (pydantic-settings).

The default needs no configuration at all: SQLite beside the working directory and a dev
signing secret generated once. `APP_ENV=production` refuses to start without a real key,
an issuer and an audience.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./privacy.db"


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

    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    due_soon_days: int = Field(default=7, ge=0, le=365)
    cors_origins: str = ""
    db_pool_size: int = Field(default=10, ge=1)
    request_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    statement_timeout_ms: int = Field(default=15_000, ge=0)
    rate_limit_writes: int | None = Field(default=None, ge=1, description="per tenant per minute")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _production_needs_real_keys(self) -> Settings:
        if self.app_env == "production":
            if not (self.auth_secret or self.auth_public_key):
                raise ConfigurationError(
                    "APP_ENV=production needs AUTH_SECRET (HS256) or AUTH_PUBLIC_KEY (RS256/ES256)"
                )
            if not (self.auth_issuer and self.auth_audience):
                raise ConfigurationError("APP_ENV=production needs AUTH_ISSUER and AUTH_AUDIENCE")
        if self.auth_secret is not None and len(self.auth_secret) < 32:
            raise ConfigurationError("AUTH_SECRET must be at least 32 characters")
        return self

    @property
    def is_sqlite(self) -> bool:
        return make_url(self.database_url).get_backend_name() == "sqlite"

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def dev_secret_path(self) -> Path:
        """Where dev mode keeps its generated HS256 secret.

        Beside the SQLite file; with PostgreSQL (or in-memory SQLite) a git-ignored file in the
        working directory.
        """
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            db = Path(str(url.database))
            return db.with_name(db.name + ".jwt-secret")
        return Path(".dev-jwt-secret")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
