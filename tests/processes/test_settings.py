"""The settings of several processes (DESIGN §16)."""

from __future__ import annotations

import pytest

from app.core.config import ConfigurationError, Settings
from app.core.db import asyncpg_connect_args

PG = "postgresql+asyncpg://prapi@db.internal/prapi"


def test_pgbouncer_without_a_direct_listen_url_is_refused() -> None:
    """LISTEN through a transaction-mode pooler would hear nothing, silently."""
    with pytest.raises(ConfigurationError, match="DATABASE_LISTEN_URL"):
        Settings(database_url=PG, db_pooler="pgbouncer")
    direct = "postgresql+asyncpg://prapi@db-direct.internal/prapi"
    s = Settings(database_url=PG, db_pooler="pgbouncer", database_listen_url=direct)
    assert s.listen_url == direct


def test_the_listener_uses_the_database_url_by_default() -> None:
    assert Settings(database_url=PG).listen_url == PG


def test_behind_pgbouncer_nothing_is_prepared_by_name_or_sent_at_connect() -> None:
    direct = asyncpg_connect_args(15_000, "none")
    assert direct == {"server_settings": {"statement_timeout": "15000"}}
    pooled = asyncpg_connect_args(15_000, "pgbouncer")
    assert "server_settings" not in pooled  # pgbouncer refuses unknown startup parameters
    assert pooled["statement_cache_size"] == 0  # asyncpg's cache of named statements
    assert pooled["prepared_statement_name_func"]() == ""  # unnamed: parsed with each use
