"""A bare asyncpg pool beside SQLAlchemy's, for the hot paths on PostgreSQL.

Measured on the 2-core reference machine, one statement through an SQLAlchemy `AsyncSession`
costs about 1.5 ms of CPU (checkout, BEGIN, execution context, result, ROLLBACK/COMMIT)
against about 0.5 ms on a bare asyncpg pool. The hottest writes and reads (a consent event,
the current consent state, a new DSAR) are therefore one statement each, sent on this pool in
autocommit: a single statement is its own transaction, so "every write is one transaction"
holds. Everything else, and every path on SQLite, goes through the ORM. Only the unit of work
(app/core/uow.py) decides when a statement may take this pool.

The SQL stays SQLAlchemy `text()` with named parameters; `to_asyncpg` compiles it once to
asyncpg's `$n` form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from asyncpg.prepared_stmt import PreparedStatement
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.sql.elements import TextClause

from app.core.db import asyncpg_connect_args

_DIALECT = pg_asyncpg.dialect()  # type: ignore[no-untyped-call]
_COMPILED: dict[int, tuple[TextClause, str, tuple[str, ...]]] = {}


async def create_raw_pool(
    database_url: str, pool_size: int, statement_timeout_ms: int, pooler: str = "none"
) -> asyncpg.Pool | None:
    """The pool for PostgreSQL (None on SQLite). It opens no connection until first used, so
    the service starts (and answers 503) while the database is away."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=pool_size,
        timeout=5,  # connecting to a database that is away fails fast (→ 503)
        reset=_nothing_to_reset,
        # pgbouncer without prepared statements: asyncpg's statement cache off, nothing sent
        # at connect (app/core/db.py), and the statements' descriptions kept on the client
        # (UnnamedStatements); pgbouncer-prepared: as direct, without the settings
        **{
            k: v
            for k, v in asyncpg_connect_args(statement_timeout_ms, pooler).items()
            if k in ("server_settings", "statement_cache_size")
        },
        **({"connection_class": UnnamedStatements} if pooler == "pgbouncer" else {}),
    )
    return pool


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """Replaces asyncpg's reset query (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`, one more round trip on every release). Statements on this pool run alone in
    autocommit and never leave session state behind: no SET, LISTEN, cursor or advisory
    lock. An open transaction is still rolled back by asyncpg before this is called."""


def to_asyncpg(stmt: TextClause) -> tuple[str, tuple[str, ...]]:
    """`text()` with :named parameters → asyncpg SQL with $n, and the names in order."""
    cached = _COMPILED.get(id(stmt))
    if cached is None or cached[0] is not stmt:
        compiled = stmt.compile(dialect=_DIALECT)
        cached = (stmt, compiled.string, tuple(compiled.positiontup or ()))
        _COMPILED[id(stmt)] = cached
    return cached[1], cached[2]


async def fetch(pool: asyncpg.Pool, stmt: TextClause, params: Mapping[str, Any]) -> list[Any]:
    sql, names = to_asyncpg(stmt)
    args = [params[n] for n in names]
    async with pool.acquire() as conn:
        unnamed = getattr(conn, "fetch_unnamed", None)  # the proxy forwards to the connection
        if unnamed is not None:
            return await unnamed(sql, args)  # type: ignore[no-any-return]
        rows: list[Any] = await conn.fetch(sql, *args)
    return rows


class UnnamedStatements(asyncpg.Connection):  # type: ignore[misc]
    """A connection of the bare pool behind a transaction-mode pooler (`DB_POOLER=pgbouncer`).

    Without a statement cache, asyncpg sends each statement twice: Parse + Describe (for the
    types of its parameters and columns), then Parse again with Bind and Execute — two round
    trips, and the server parses the statement twice. Nothing named may live on the server
    (the next transaction may run on another server connection), but the *description* can
    live here: the unnamed statement's state (its types and codecs) is kept per connection and
    reused, so every later execution is one round trip of Parse + Bind + Execute + Sync —
    one implicit transaction, which the pooler keeps on one server connection. asyncpg
    parses an unnamed statement with every execution when its statement cache is off
    (`mark_unprepared`), so no server-side prepared statement is ever relied on.

    A column type changed by a migration while this process runs would be decoded with the
    old description: such a migration already requires stopping the old processes first
    (docs/production.md, Upgrades).
    """

    __slots__ = ("_described",)

    MAX_STATEMENTS = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._described: dict[str, Any] = {}

    async def fetch_unnamed(self, sql: str, args: Sequence[Any]) -> list[Any]:
        state = self._described.get(sql)
        if state is None:
            stmt = await self.prepare(sql, name="")
            if len(self._described) >= self.MAX_STATEMENTS:
                self._described.clear()
            self._described[sql] = stmt._state
        else:
            # a PreparedStatement is bound to one pool checkout: a new one on the kept state
            stmt = PreparedStatement(self, sql, state)
        rows: list[Any] = await stmt.fetch(*args)
        return rows
