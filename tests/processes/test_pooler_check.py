"""DB_POOLER_PREPARED_STATEMENTS (DESIGN §16): a process checks at start that the pooler
really keeps prepared statements across transactions, and refuses to start when it does not,
instead of failing requests at random under load ("prepared statement … does not exist")."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url

from app.core.config import ConfigurationError, Settings
from app.core.db import asyncpg_connect_args, verify_pooler_keeps_statements
from app.main import create_app
from tests.conftest import make_settings
from tests.live import free_port
from tests.pgbouncer import start_pgbouncer

PG = "postgresql+asyncpg://prapi@db.internal/prapi"


def test_prepared_statements_need_a_pooler() -> None:
    with pytest.raises(ConfigurationError, match="DB_POOLER=pgbouncer"):
        Settings(database_url=PG, db_pooler_prepared_statements=True)
    s = Settings(
        database_url=PG,
        db_pooler="pgbouncer",
        db_pooler_prepared_statements=True,
        database_listen_url=PG,
    )
    assert s.pooler == "pgbouncer-prepared"
    # named statements cached as on a direct connection; still nothing sent at connect
    assert asyncpg_connect_args(15_000, "pgbouncer-prepared") == {}


async def test_pgbouncer_keeping_statements_passes(pg_url: str, tmp_path: Path) -> None:
    pg = make_url(pg_url)
    bouncer = start_pgbouncer(
        tmp_path / "b", pg.host or "127.0.0.1", pg.port or 5432, 3, prepared=True
    )
    try:
        assert await verify_pooler_keeps_statements(bouncer.url_for(pg_url)) is True
    finally:
        bouncer.stop()


@pytest.mark.parametrize("pooler", ["distribution", "max_prepared_statements=0", "none"])
async def test_a_pooler_that_does_not_keep_them_is_refused(
    pg_url: str, tmp_path: Path, pooler: str
) -> None:
    """The distribution's pgbouncer (1.18 on Debian 12), 1.24 with the feature off, and
    PostgreSQL itself (which keeps a statement on its one session only)."""
    pg = make_url(pg_url)
    bouncer = None
    url = pg_url
    if pooler != "none":
        bouncer = start_pgbouncer(
            tmp_path / "b",
            pg.host or "127.0.0.1",
            pg.port or 5432,
            3,
            prepared=pooler != "distribution",
            max_prepared_statements=0,
        )
        url = bouncer.url_for(pg_url)
    try:
        with pytest.raises(ConfigurationError, match="max_prepared_statements"):
            await verify_pooler_keeps_statements(url)
    finally:
        if bouncer is not None:
            bouncer.stop()


async def test_the_service_does_not_start_behind_a_pooler_that_loses_them(
    pg_url: str, tmp_path: Path
) -> None:
    pg = make_url(pg_url)
    bouncer = start_pgbouncer(tmp_path / "b", pg.host or "127.0.0.1", pg.port or 5432, 3)
    try:
        settings = make_settings(
            bouncer.url_for(pg_url),
            db_pooler="pgbouncer",
            db_pooler_prepared_statements=True,
            database_listen_url=pg_url,
        )
        with pytest.raises(ConfigurationError, match="does not keep prepared statements"):
            async with LifespanManager(create_app(settings)):
                pass
    finally:
        bouncer.stop()


async def test_an_unreachable_database_is_not_checked_now(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The service starts while the database is away (and answers 503); it says it could not
    check."""
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/prapi"
    with caplog.at_level(logging.WARNING, logger="app.db"):
        assert await verify_pooler_keeps_statements(url) is False
    assert [r.__dict__.get("event") for r in caplog.records] == ["pooler_check_skipped"]


@pytest.mark.parametrize("command", [["worker", "--once"], ["rotate-secrets-key"]])
async def test_the_commands_do_not_start_either(
    pg_url: str, tmp_path: Path, command: list[str]
) -> None:
    pg = make_url(pg_url)
    bouncer = start_pgbouncer(tmp_path / "b", pg.host or "127.0.0.1", pg.port or 5432, 3)
    try:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DB_", "REDIS_"))
        }
        env |= {
            "DATABASE_URL": bouncer.url_for(pg_url),
            "DB_POOLER": "pgbouncer",
            "DB_POOLER_PREPARED_STATEMENTS": "true",
            "DATABASE_LISTEN_URL": pg_url,
            "APP_ENV": "dev",
            "SECRETS_KEY": "a-secrets-key-for-the-pooler-check-" + "k" * 10,
        }
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "app", *command],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert "max_prepared_statements" in done.stderr
    finally:
        bouncer.stop()
