"""The models and the Alembic migrations agree, on SQLite and on PostgreSQL (SQLite's expression
indexes, which autogenerate cannot reflect, by their DDL); and the schema goes down to base and
up again."""

from __future__ import annotations

import warnings
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Index, text
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex

from app.core.db import create_engine
from app.models import Base
from tests.conftest import create_pg_database, drop_pg_database, run_alembic


def _diff(connection: Connection) -> list[Any]:
    ctx = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "render_as_batch": connection.dialect.name == "sqlite"},
    )
    with warnings.catch_warnings():
        # SQLite's expression indexes cannot be reflected, so autogenerate skips them, saying
        # so: `test_expression_indexes_are_built_as_the_models_declare_them_on_sqlite` compares
        # them instead.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression")
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


def _indexes(connection: Connection, table: str) -> dict[str, str]:
    """The indexes of `table` as the database defines them (name → its DDL), valid ones only."""
    if connection.dialect.name == "sqlite":
        query = (
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t "
            "AND sql IS NOT NULL"
        )
    else:
        query = (
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE t.relname = :t AND i.indisvalid"
        )
    rows = connection.execute(text(query), {"t": table})
    return {str(name): " ".join(str(ddl).split()) for name, ddl in rows}


def _expression_indexes() -> list[Index]:
    return [
        index
        for table in Base.metadata.sorted_tables
        for index in table.indexes
        if any(not isinstance(e, Column) for e in index.expressions)
    ]


async def test_expression_indexes_are_built_as_the_models_declare_them_on_sqlite(
    backend: str, database_url: str
) -> None:
    """Autogenerate cannot reflect SQLite's expression indexes (it skips them with a warning):
    compare each one's DDL with the models' instead. (PostgreSQL's are compared by
    `test_autogenerate_finds_nothing_to_do`.)"""
    declared = _expression_indexes()
    assert declared  # e.g. ix_webhook_delivery_kept_from
    if backend != "sqlite":
        return
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            for index in declared:
                ddl = str(CreateIndex(index).compile(dialect=conn.dialect))
                built = await conn.run_sync(_indexes, str(index.table.name))
                assert built.get(str(index.name)) == " ".join(ddl.split())
    finally:
        await engine.dispose()


# 0015 replaced the index of the pruning batch over finished webhook deliveries.
KEPT_FROM_REVISION = "0015"


async def test_the_finished_deliveries_index_is_replaced_and_restored(
    backend: str, tmp_path: Any
) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'mig.db'}"
    else:
        url = await create_pg_database()

    async def indexes() -> dict[str, str]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                found = await conn.run_sync(_indexes, "webhook_delivery")
        finally:
            await engine.dispose()
        return {k: v for k, v in found.items() if k.startswith("ix_webhook_delivery_")}

    before = f"{KEPT_FROM_REVISION}-1"
    try:
        run_alembic(command.upgrade, url, before)
        old = await indexes()
        assert "ix_webhook_delivery_finished" in old
        assert "ix_webhook_delivery_kept_from" not in old
        run_alembic(command.upgrade, url, KEPT_FROM_REVISION)
        new = await indexes()
        assert "ix_webhook_delivery_finished" not in new
        kept_from = new["ix_webhook_delivery_kept_from"].lower()
        assert "coalesce(last_attempt_at, created_at)" in kept_from
        assert "<> 'pending'" in kept_from
        run_alembic(command.downgrade, url, before)
        assert await indexes() == old
    finally:
        if backend == "postgresql":
            await drop_pg_database(url)
