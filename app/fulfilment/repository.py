"""Systems and tasks persistence, always scoped by tenant. Flushes, never commits."""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, bindparam, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause

from app.core.db import is_postgres, take_write_lock
from app.core.uow import UnitOfWork
from app.fulfilment.models import (
    DONE_TASK_STATUSES,
    OPEN_TASK_STATUSES,
    FulfilmentSystem,
    FulfilmentTask,
    TaskStatus,
)


class FulfilmentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ---- systems -----------------------------------------------------------------------

    async def system(self, tenant: str, key: str, *, lock: bool = False) -> FulfilmentSystem | None:
        stmt = select(FulfilmentSystem).where(
            FulfilmentSystem.tenant == tenant, FulfilmentSystem.key == key
        )
        if lock:
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt)

    async def systems_page(
        self, tenant: str, after: str | None, limit: int
    ) -> Sequence[FulfilmentSystem]:
        stmt = select(FulfilmentSystem).where(FulfilmentSystem.tenant == tenant)
        if after is not None:
            stmt = stmt.where(FulfilmentSystem.key > after)
        return (await self.session.scalars(stmt.order_by(FulfilmentSystem.key).limit(limit))).all()

    async def active_systems(self, tenant: str) -> Sequence[FulfilmentSystem]:
        stmt = (
            select(FulfilmentSystem)
            .where(FulfilmentSystem.tenant == tenant, FulfilmentSystem.active.is_(True))
            .order_by(FulfilmentSystem.key)
        )
        return (await self.session.scalars(stmt)).all()

    # ---- tasks -------------------------------------------------------------------------

    async def task(
        self,
        tenant: str,
        task_id: uuid.UUID,
        *,
        system: str | None = None,
        lock: bool = False,
    ) -> FulfilmentTask | None:
        stmt = select(FulfilmentTask).where(
            FulfilmentTask.tenant == tenant, FulfilmentTask.id == task_id
        )
        if system is not None:
            stmt = stmt.where(FulfilmentTask.system_key == system)
        if lock:
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt)

    async def tasks_page(
        self,
        tenant: str,
        filters: Sequence[ColumnElement[bool]],
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[FulfilmentTask]:
        stmt = select(FulfilmentTask).where(FulfilmentTask.tenant == tenant, *filters)
        if after is not None:
            at, tid = after
            stmt = stmt.where(
                or_(
                    FulfilmentTask.created_at > at,
                    and_(FulfilmentTask.created_at == at, FulfilmentTask.id > tid),
                )
            )
        stmt = stmt.order_by(FulfilmentTask.created_at, FulfilmentTask.id).limit(limit)
        return (await self.session.scalars(stmt)).all()

    async def tasks_of(
        self, tenant: str, dsar_id: uuid.UUID, *, lock: bool = False
    ) -> Sequence[FulfilmentTask]:
        stmt = (
            select(FulfilmentTask)
            .where(FulfilmentTask.tenant == tenant, FulfilmentTask.dsar_id == dsar_id)
            .order_by(FulfilmentTask.system_key)
        )
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.scalars(stmt)).all()

    async def tasks_of_tickets(
        self, tenant: str, dsar_ids: Sequence[uuid.UUID]
    ) -> Sequence[FulfilmentTask]:
        """The tasks of several tickets, in one query (a subject's export)."""
        if not dsar_ids:
            return []
        stmt = (
            select(FulfilmentTask)
            .where(FulfilmentTask.tenant == tenant, FulfilmentTask.dsar_id.in_(dsar_ids))
            .order_by(FulfilmentTask.created_at, FulfilmentTask.id)
        )
        return (await self.session.scalars(stmt)).all()

    async def overview(
        self, tenant: str, dsar_ids: Sequence[uuid.UUID], now: datetime
    ) -> tuple[dict[uuid.UUID, dict[str, int]], set[uuid.UUID]]:
        """{ticket: {status: count}} for the tickets given, and which of them have a late open
        task, in one grouped query."""
        counts: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
        late: set[uuid.UUID] = set()
        if not dsar_ids:
            return counts, late
        overdue = func.count().filter(late_filter(now))
        rows = await self.session.execute(
            select(FulfilmentTask.dsar_id, FulfilmentTask.status, func.count(), overdue)
            .where(FulfilmentTask.tenant == tenant, FulfilmentTask.dsar_id.in_(list(dsar_ids)))
            .group_by(FulfilmentTask.dsar_id, FulfilmentTask.status)
        )
        for dsar_id, status, n, n_late in rows:
            if dsar_id is None:
                continue
            counts[dsar_id][TaskStatus(status).value] = int(n)
            if n_late:
                late.add(dsar_id)
        return counts, late

    async def claim(
        self, tenant: str, system: str, now: datetime, lease: timedelta, limit: int
    ) -> Sequence[FulfilmentTask]:
        """Lease up to `limit` claimable tasks of one system, in one statement. PostgreSQL:
        `FOR UPDATE SKIP LOCKED`, so concurrent claimers take disjoint rows without waiting
        on each other; SQLite: the write lock first (one writer at a time, BEGIN IMMEDIATE
        in effect), so the select and the update see the same rows."""
        if not is_postgres(self.session):
            await take_write_lock(self.session, "fulfilment_task")
        params = {
            "c_tenant": tenant,
            "c_system": system,
            "c_now": now,
            "c_limit": limit,
            "c_until": now + lease,
        }
        return (await self.session.scalars(_CLAIM, params)).all()

    async def claim_pg(
        self,
        uow: UnitOfWork,
        tenant: str,
        system: str,
        now: datetime,
        lease: timedelta,
        limit: int,
    ) -> list[dict[str, Any]]:
        """The same claim as one SQL statement (PostgreSQL): alone on the bare pool when the
        unit has written nothing, its own transaction (the pull systems' hot path)."""
        params = {"c_tenant": tenant, "c_system": system, "c_now": now, "c_until": now + lease}
        rows = await uow.execute_alone(claim_statement(limit), params)
        return [dict(r._mapping) if hasattr(r, "_mapping") else dict(r) for r in rows]

    async def open_tasks_for_dsar(
        self, tenant: str, dsar_id: uuid.UUID
    ) -> Sequence[FulfilmentTask]:
        stmt = select(FulfilmentTask).where(
            FulfilmentTask.tenant == tenant,
            FulfilmentTask.dsar_id == dsar_id,
            FulfilmentTask.status.not_in(list(DONE_TASK_STATUSES)),
        )
        return (await self.session.scalars(stmt.order_by(FulfilmentTask.system_key))).all()

    async def set_purge_after(self, tenant: str, dsar_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(FulfilmentTask)
            .where(FulfilmentTask.tenant == tenant, FulfilmentTask.dsar_id == dsar_id)
            .values(purge_after=at)
            .execution_options(synchronize_session=False)
        )


def _claim_statement() -> Any:
    """Built once: the claim is the hot path of pull systems, and building the construct
    cost more than running it."""
    system_id = (
        select(FulfilmentSystem.id)
        .where(
            FulfilmentSystem.tenant == bindparam("c_tenant"),
            FulfilmentSystem.key == bindparam("c_system"),
        )
        .scalar_subquery()
    )
    due = (
        select(FulfilmentTask.id)
        .where(
            FulfilmentTask.system_id == system_id,
            FulfilmentTask.status.in_([TaskStatus.pending, TaskStatus.in_progress]),
            FulfilmentTask.available_at <= bindparam("c_now"),
        )
        .order_by(FulfilmentTask.available_at)
        .limit(bindparam("c_limit", type_=Integer))
        .with_for_update(skip_locked=True)
    )
    return (
        update(FulfilmentTask)
        .where(FulfilmentTask.id.in_(due.scalar_subquery()))
        .values(
            status=TaskStatus.in_progress,
            lease_until=bindparam("c_until"),
            available_at=bindparam("c_until"),
            updated_at=bindparam("c_now"),
            version=FulfilmentTask.version + 1,
        )
        .returning(FulfilmentTask)
        .execution_options(synchronize_session=False)
    )


_CLAIM = _claim_statement()


@functools.lru_cache(maxsize=100)
def claim_statement(limit: int) -> TextClause:
    """The claim in SQL, one statement per limit (1 to 100, validated by the schema). The
    limit is written into it: with `LIMIT $n` PostgreSQL cannot cost a generic plan below a
    custom one and plans every claim anew (0.5 ms on 1,000,000 tasks, a third of the
    statement); with a literal it keeps the generic plan after the fifth execution on a
    connection (asyncpg prepares and caches the statement)."""
    if not 1 <= limit <= 100:
        raise ValueError(f"claim limit out of range: {limit}")
    return text(
        f"""
    UPDATE fulfilment_task
       SET status = 'in_progress', lease_until = :c_until, available_at = :c_until,
           updated_at = :c_now, version = version + 1
     WHERE id IN (
           SELECT id FROM fulfilment_task
            WHERE system_id = (SELECT id FROM fulfilment_system
                                WHERE tenant = :c_tenant AND key = :c_system)
              AND status IN ('pending', 'in_progress')
              AND available_at <= :c_now
            ORDER BY available_at
            LIMIT {int(limit)}
              FOR UPDATE SKIP LOCKED)
    RETURNING id, dsar_id, system_key, type, subject, status, due_at, explanation, attempts,
              lease_until, records_affected, reason, proof, result_digest,
              (data IS NOT NULL AND data <> 'null'::jsonb) AS has_data, reported_at,
              created_at, updated_at, version, category, retention, held_by
    """  # the limit is an int in 1..100: nothing else is formatted in
    )


def open_filter() -> ColumnElement[bool]:
    return FulfilmentTask.status.in_(list(OPEN_TASK_STATUSES))


def late_filter(now: datetime) -> ColumnElement[bool]:
    """Open and past its due instant."""
    return and_(open_filter(), FulfilmentTask.due_at.is_not(None), FulfilmentTask.due_at < now)
