"""The unit of work: one request's transaction, and the rule that sends a write consisting of
one statement to the bare pool.

Every write is one transaction. A service does its reads and ORM writes on `uow.session` and
ends with `await uow.commit()`. A repository whose whole write is one statement hands it to
`uow.execute_alone(stmt, params)`: on PostgreSQL, when the unit has written nothing before
it, the statement runs alone in autocommit on the bare asyncpg pool (app/core/rawpg.py: a
third of the cost of the session's checkout, BEGIN, execution and COMMIT), being its own
transaction; otherwise (SQLite, or earlier writes in the unit, or a lock the unit holds) it
runs in the session's transaction and `commit()` commits it with the rest.

"Has written" is decided by what the unit did, not by whether the session happened to open a
transaction: a read (a policy-cache miss) opens one too and does not count. The session
reports its writes to the unit (`_note_write`, a listener on every ORM session): a flush, or
any statement that is not a SELECT (a bulk INSERT or UPDATE, `text()` such as an advisory
lock — counted conservatively). A unit whose one statement went to the pool is complete: a
write on the session after it is a programming error, refused at `commit()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from sqlalchemy.sql.elements import TextClause

from app.core import rawpg

_WROTE = "uow.wrote"


@event.listens_for(Session, "do_orm_execute")
def _note_statement(state: ORMExecuteState) -> None:
    # a SELECT … FOR UPDATE holds its rows for the session's transaction: a write after it
    # belongs there too
    if not state.is_select or getattr(state.statement, "_for_update_arg", None) is not None:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_flush")
def _note_flush(session: Session, _: UOWTransaction) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_WROTE, None)


class UnitOfWork:
    def __init__(self, session: AsyncSession, pool: asyncpg.Pool | None = None) -> None:
        self.session = session
        self._pool = pool
        self._sent_alone = False

    @property
    def has_written(self) -> bool:
        """A write reported by the session, or objects added, changed or deleted and not yet
        flushed (the same facts as `session.new`, `dirty` and `deleted`, without building
        those sets: this is asked on every hot request)."""
        s = self.session.sync_session
        return bool(s.info.get(_WROTE) or s._new or s._deleted or s.identity_map.check_modified())

    def _alone(self) -> asyncpg.Pool | None:
        if self._pool is None or self.has_written:
            return None
        return self._pool

    async def execute_alone(self, stmt: TextClause, params: Mapping[str, Any]) -> Sequence[Any]:
        """The unit's write, when it is this one statement (module docstring); its rows."""
        pool = self._alone()
        if pool is not None:
            self._sent_alone = True
            await self._end_reads()
            return await rawpg.fetch(pool, stmt, params)
        return list(await self.session.execute(stmt, params))

    async def read(self, stmt: TextClause, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """A read on the bare pool when the unit has written nothing (it must see its own
        writes otherwise); None when it must go through the session (the caller's ORM form)."""
        pool = self._alone()
        if pool is None:
            return None
        await self._end_reads()
        return await rawpg.fetch(pool, stmt, params)

    async def _end_reads(self) -> None:
        """Before a statement on the pool, end the session's transaction, which holds reads
        only (the unit has written nothing; a lock counts as a write): one request never
        holds two connections at once. Behind a transaction-mode pooler, requests each
        holding a server connection while they wait for a second one could take its whole
        server pool and stall (DB_POOLER=pgbouncer). A commit, not a rollback: the objects
        read stay loaded (expire_on_commit=False), and it is the round trip `commit()` would
        have made at the end anyway."""
        if self.session.in_transaction():
            await self.session.commit()

    async def commit(self) -> None:
        """Commit what the unit did on the session (nothing to do after a read-only or a
        one-statement unit but end the read's transaction)."""
        if self._sent_alone and self.has_written:
            raise RuntimeError("a unit whose one statement was committed alone wrote again")
        if self.session.in_transaction():
            await self.session.commit()

    async def rollback(self) -> None:
        if self.session.in_transaction():
            await self.session.rollback()

    async def __aenter__(self) -> UnitOfWork:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closing is only needed when a transaction is still open (after an error): a
        session that never began one, or has committed, holds no connection."""
        if self.session.in_transaction():
            await self.session.close()


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession], pool: asyncpg.Pool | None
) -> AsyncIterator[UnitOfWork]:
    uow = UnitOfWork(sessionmaker(), pool)
    try:
        yield uow
    finally:
        await uow.close()
