"""DSAR persistence, always scoped by tenant. Flushes, never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.dsar.models import DsarEvent, DsarTicket


class DsarRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(
        self, tenant: str, ticket_id: uuid.UUID, *, lock: bool = False
    ) -> DsarTicket | None:
        stmt = select(DsarTicket).where(DsarTicket.tenant == tenant, DsarTicket.id == ticket_id)
        if lock:
            stmt = stmt.with_for_update()  # PostgreSQL; SQLite relies on the version check
        return await self.session.scalar(stmt.execution_options(populate_existing=True))

    async def list(
        self,
        tenant: str,
        *,
        filters: Sequence[ColumnElement[bool]],
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[DsarTicket]:
        stmt = select(DsarTicket).where(DsarTicket.tenant == tenant, *filters)
        if after is not None:
            due, tid = after
            stmt = stmt.where(
                or_(
                    DsarTicket.due_sort > due, and_(DsarTicket.due_sort == due, DsarTicket.id > tid)
                )
            )
        stmt = stmt.order_by(DsarTicket.due_sort, DsarTicket.id).limit(limit)
        return (await self.session.scalars(stmt)).all()

    async def events(
        self, ticket_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[DsarEvent]:
        stmt = select(DsarEvent).where(DsarEvent.ticket_id == ticket_id)
        if after is not None:
            at, eid = after
            stmt = stmt.where(or_(DsarEvent.at > at, and_(DsarEvent.at == at, DsarEvent.id > eid)))
        stmt = stmt.order_by(DsarEvent.at, DsarEvent.id).limit(limit)
        return (await self.session.scalars(stmt)).all()

    async def for_subject(self, tenant: str, subject_id: str) -> Sequence[DsarTicket]:
        stmt = (
            select(DsarTicket)
            .where(DsarTicket.tenant == tenant, DsarTicket.subject_id == subject_id)
            .order_by(DsarTicket.received_at, DsarTicket.id)
        )
        return (await self.session.scalars(stmt)).all()


def sla_filter(sla: str, now: datetime, window: timedelta) -> ColumnElement[bool]:
    """SQL for the `sla` computed at read time (see service.sla_of: the same rules)."""
    soon = now + window
    due = DsarTicket.due_at
    # Open tickets are filtered on `due_sort` (= due_at, or the far future when there is no
    # due date), so each open-state filter is one range of the (tenant, is_open, due_sort, id)
    # index, already in list order: an index scan whatever the table size.
    sort = DsarTicket.due_sort
    conditions: dict[str, Any] = {
        "overdue": and_(DsarTicket.is_open.is_(True), sort < now),
        "due_soon": and_(DsarTicket.is_open.is_(True), sort >= now, sort <= soon),
        "on_track": and_(DsarTicket.is_open.is_(True), sort > soon),
        "met": and_(DsarTicket.is_open.is_(False), or_(due.is_(None), DsarTicket.closed_at <= due)),
        "missed": and_(DsarTicket.is_open.is_(False), due.is_not(None), DsarTicket.closed_at > due),
    }
    result: ColumnElement[bool] = conditions[sla]
    return result
