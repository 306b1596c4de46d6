"""Database layer: declarative base, portable column types, engine and session factory.

SQLite (aiosqlite) is the embedded default, PostgreSQL (asyncpg) the production database.
The engine is built in the app's lifespan, never at import.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import JSON, DateTime, Enum, MetaData, Select, event, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from app.core.config import ConfigurationError

log = logging.getLogger("app.db")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; on SQLite (which drops offsets) UTC in, aware UTC out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime reached the database layer")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def str_enum(enum_cls: type[enum.Enum], name: str) -> Enum:
    """VARCHAR + named CHECK storing the enum's values (not member names)."""
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


def create_engine(
    database_url: str,
    pool_size: int = 10,
    statement_timeout_ms: int = 15_000,
    pooler: str = "none",
) -> AsyncEngine:
    url = make_url(database_url)
    # No pre-ping: SQLAlchemy's asyncpg ping costs three round trips (BEGIN, ";", ROLLBACK) on
    # every checkout, a third of a small write's time. A connection the server dropped fails
    # its first statement as a disconnect instead: SQLAlchemy then invalidates the whole pool
    # (every connection older than the failure), that one request gets a 503 problem, and the
    # next ones reconnect — the service recovers without a restart (bench/durability.py).
    # hide_parameters: SQL errors never carry the values bound (subject identifiers).
    kwargs: dict[str, Any] = {"pool_pre_ping": False, "hide_parameters": True}
    if url.get_backend_name() == "sqlite":
        # One writer at a time: wait for the lock instead of failing at once.
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = pool_size
        kwargs["pool_timeout"] = 10
        kwargs["connect_args"] = {
            "timeout": 5,  # connecting to a database that is away fails fast (→ 503)
            **asyncpg_connect_args(statement_timeout_ms, pooler),
        }
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        _sqlite_pragmas(engine)
    return engine


def asyncpg_connect_args(statement_timeout_ms: int, pooler: str) -> dict[str, Any]:
    """What both pools (SQLAlchemy's and app/core/rawpg.py's) pass to asyncpg at connect.

    Direct to PostgreSQL (`none`): the statement timeout as a setting of the session.

    Behind pgbouncer in transaction mode a session's server connection serves other clients
    between transactions, and pgbouncer refuses an unknown startup parameter, so
    `statement_timeout` is not sent: set it on the role (`ALTER ROLE … SET
    statement_timeout`). What happens to prepared statements depends on the pooler:

    - `pgbouncer-prepared` (DB_POOLER_PREPARED_STATEMENTS, pgbouncer ≥ 1.21 with
      `max_prepared_statements`): pgbouncer keeps track of each client's named statements and
      prepares them on whichever server connection runs the next transaction. The statements
      are then named and cached exactly as on a direct connection: one Bind + Execute per
      execution, parsed and planned once per server connection.
    - `pgbouncer` (any version): no prepared statement may outlive its transaction. asyncpg's
      statement cache is off (`statement_cache_size=0`) and the statements SQLAlchemy
      prepares are unnamed (`prepared_statement_name_func` → ""), which asyncpg then parses
      again with every execution, in the same message as its Bind and Execute. Unique names,
      SQLAlchemy's other suggestion, would pile up on the server connections. What stays on
      the client is only the statements' descriptions: SQLAlchemy's
      `prepared_statement_cache_size` (kept at its default) caches those unnamed statements
      per connection, so a cached statement costs one round trip, not a Parse + Describe
      first (the bare pool does the same: rawpg.UnnamedStatements). PostgreSQL parses and
      plans every execution: bench/processes.py measures what that costs.
    """
    if pooler == "pgbouncer":
        return {"statement_cache_size": 0, "prepared_statement_name_func": _unnamed}
    if pooler == "pgbouncer-prepared":
        return {}
    return {"server_settings": {"statement_timeout": str(statement_timeout_ms)}}


async def verify_pooler_keeps_statements(database_url: str) -> bool:
    """DB_POOLER_PREPARED_STATEMENTS: check that the pooler really keeps prepared statements,
    so that a pooler which does not (pgbouncer < 1.21, or `max_prepared_statements = 0`)
    stops the process at start instead of failing requests at random under load.

    pgbouncer prepares a client's named statement on the server under a name of its own
    (`PGBOUNCER_<n>`); any other pooler (or PostgreSQL itself) prepares it under the client's
    name, or loses it before it runs. A statement named once, listing the names of the
    server connection's prepared statements, tells which. Raises ConfigurationError when the
    pooler does not keep them; False when the database cannot be reached now (the process
    starts and answers 503 until it can, unchecked, and says so in its log)."""
    url = make_url(database_url).set(drivername="postgresql")
    name = f"prapi_probe_{uuid.uuid4().hex}"
    try:
        conn = await asyncpg.connect(url.render_as_string(hide_password=False), timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        log.warning(
            "pooler not checked: the database is unreachable now",
            extra={"event": "pooler_check_skipped", "error": type(exc).__name__},
        )
        return False
    try:
        stmt = await conn.prepare("SELECT name FROM pg_prepared_statements", name=name)
        names = [row[0] for row in await stmt.fetch()]
        kept = name not in names
    except asyncpg.InvalidSQLStatementNameError:
        kept = False  # described on one server connection, executed on another
    finally:
        await conn.close()
    if not kept:
        raise ConfigurationError(
            "DB_POOLER_PREPARED_STATEMENTS=true, but the pooler at DATABASE_URL does not keep "
            "prepared statements across transactions: use pgbouncer 1.21 or newer with "
            "max_prepared_statements > 0, or unset DB_POOLER_PREPARED_STATEMENTS"
        )
    log.info("the pooler keeps prepared statements", extra={"event": "pooler_keeps_statements"})
    return True


def _unnamed() -> str:
    return ""


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


def create_sessionmaker(
    engine: AsyncEngine, info: Mapping[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """`info`: what every session carries in `Session.info` (e.g. the idempotency window and
    the service's clock, app/core/idempotency.py)."""
    return async_sessionmaker(
        engine, expire_on_commit=False, autoflush=False, info=dict(info or {})
    )


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One session per request; services commit, anything left open is rolled back."""
    async with factory() as session:
        yield session


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def take_write_lock(session: AsyncSession, table: str) -> None:
    """SQLite: make the transaction the writer now (BEGIN IMMEDIATE in effect), so a
    concurrent worker waits for the lock instead of failing when it upgrades a read snapshot
    later. PostgreSQL needs nothing: its writers lock rows. `table` is any table of ours."""
    if not is_postgres(session):
        await session.execute(text(f"UPDATE {table} SET rowid = rowid WHERE 0"))


async def begin_batch(session: AsyncSession, pending: Select[*tuple[Any, ...]], table: str) -> bool:
    """Open a worker batch's transaction: whether there is work, and if so the transaction
    that will take it. The look is a cheap indexed read (an idle round takes no lock);
    `pending` is ordered like the batch, so it walks the batch's index and stops at the first
    row. The batch then reads its rows again `FOR UPDATE SKIP LOCKED` (PostgreSQL: several
    workers share the work without waiting on each other); on SQLite the write lock on
    `table` is taken here first (`take_write_lock`), one writer at a time."""
    found = await session.scalar(pending.limit(1))
    # End the read: SQLite cannot upgrade a read snapshot to the write lock once another
    # writer has committed, so the write transaction starts afresh.
    await session.rollback()
    if found is None:
        return False
    await take_write_lock(session, table)
    return True


async def take_batch(
    session: AsyncSession,
    rows: Select[*tuple[Any, ...]],
    table: str,
    batch: int,
    *,
    scalars: bool = False,
) -> Sequence[Any]:
    """A worker batch: up to `batch` of `rows` (a select ordered like the batch's index, no
    LIMIT), locked for this transaction — `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several
    workers share the work; on SQLite after the write lock (`begin_batch`). Empty (and the
    transaction rolled back) when there is nothing to do. `scalars`: the select names one
    column or ORM entity, and its values are returned rather than rows."""
    if not await begin_batch(session, rows, table):
        return []
    result = await session.execute(rows.limit(batch).with_for_update(skip_locked=True))
    taken: Sequence[Any] = result.scalars().all() if scalars else result.all()
    if not taken:
        await session.rollback()
    return taken


def insert_cte(
    name: str,
    table: str,
    columns: Sequence[str],
    select: Mapping[str, str],
    *,
    source: str | None = None,
    where: str | None = None,
    order_by: str | None = None,
) -> str:
    """`name AS (INSERT INTO table (columns) SELECT … [FROM source] [WHERE] [ORDER BY])`: one
    table's INSERT as a part of a PostgreSQL statement composed of several (a data-modifying
    CTE). The table's module owns `columns` and builds `select` (an SQL expression for each
    column) from its own arguments, so the shape of the row is written once, there."""
    if set(select) != set(columns):
        raise ValueError(f"{table}: values for {sorted(select)}, columns {sorted(columns)}")
    sql = f"{name} AS (\n    INSERT INTO {table} ({', '.join(columns)})\n"
    sql += f"    SELECT {', '.join(select[c] for c in columns)}"
    if source is not None:
        sql += f"\n    FROM {source}"
    if where is not None:
        sql += f"\n    WHERE {where}"
    if order_by is not None:
        sql += f"\n    ORDER BY {order_by}"
    return sql + "\n)"
