"""Breach persistence, always scoped by tenant. Flushes, never commits."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.breaches.models import BreachEvent, BreachIncident, BreachNotification
from app.core.pagination import seek


class BreachRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(
        self, tenant: str, incident_id: uuid.UUID, *, lock: bool = False
    ) -> BreachIncident | None:
        stmt = select(BreachIncident).where(
            BreachIncident.tenant == tenant, BreachIncident.id == incident_id
        )
        if lock:
            stmt = stmt.with_for_update()  # PostgreSQL; SQLite relies on the version check
        return await self.session.scalar(stmt.execution_options(populate_existing=True))

    async def page(
        self,
        tenant: str,
        *,
        filters: Sequence[ColumnElement[bool]],
        before: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[BreachIncident]:
        """Newest awareness first; the cursor is the last (aware_at, id) seen."""
        stmt = select(BreachIncident).where(BreachIncident.tenant == tenant, *filters)
        stmt = seek(
            stmt, BreachIncident.aware_at, BreachIncident.id, before, limit, descending=True
        )
        return (await self.session.scalars(stmt)).all()

    async def notifications(
        self, incident_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[BreachNotification]]:
        found: dict[uuid.UUID, list[BreachNotification]] = defaultdict(list)
        if not incident_ids:
            return found
        stmt = (
            select(BreachNotification)
            .where(BreachNotification.incident_id.in_(incident_ids))
            .order_by(
                BreachNotification.sent_at,
                BreachNotification.recorded_at,
                BreachNotification.id,
            )
        )
        for row in await self.session.scalars(stmt):
            found[row.incident_id].append(row)
        return found

    async def events(self, incident_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[BreachEvent]]:
        found: dict[uuid.UUID, list[BreachEvent]] = defaultdict(list)
        if not incident_ids:
            return found
        stmt = (
            select(BreachEvent)
            .where(BreachEvent.incident_id.in_(incident_ids))
            .order_by(BreachEvent.version)
        )
        for row in await self.session.scalars(stmt):
            found[row.incident_id].append(row)
        return found


def overdue_filter(now: datetime) -> ColumnElement[bool]:
    """SQL for `overdue` (service.is_overdue: the same rule). `next_due_at` is the earliest
    due instant of a required notice with no notification of its audience yet, kept null once
    closed, so "a required notice is missing past its due instant" is one indexed range."""
    return and_(BreachIncident.next_due_at.is_not(None), BreachIncident.next_due_at < now)


def not_overdue_filter(now: datetime) -> ColumnElement[bool]:
    return or_(BreachIncident.next_due_at.is_(None), BreachIncident.next_due_at >= now)
