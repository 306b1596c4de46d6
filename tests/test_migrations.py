"""The models and the Alembic migrations agree, on SQLite and on PostgreSQL; and the schema
goes down to base and up again."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from app.core.db import create_engine
from app.models import Base
from tests.conftest import create_pg_database, drop_pg_database, run_alembic


def _diff(connection: Connection) -> list[Any]:
    ctx = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "render_as_batch": connection.dialect.name == "sqlite"},
    )
    return list(compare_metadata(ctx, Base.metadata))


async def test_autogenerate_finds_nothing_to_do(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_downgrade_to_base_and_upgrade_again(backend: str, tmp_path: Any) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'mig.db'}"
    else:
        url = await create_pg_database()
    try:
        run_alembic(command.upgrade, url, "heads")
        run_alembic(command.downgrade, url, "base")
        run_alembic(command.upgrade, url, "heads")
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                assert await conn.run_sync(_diff) == []
        finally:
            await engine.dispose()
    finally:
        if backend == "postgresql":
            await drop_pg_database(url)
