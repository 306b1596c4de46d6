"""Audit reads, always scoped by tenant."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEntry


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(
        self,
        tenant: str,
        *,
        filters: Sequence[ColumnElement[bool]],
        after: int | None,
        limit: int,
    ) -> Sequence[AuditEntry]:
        stmt = select(AuditEntry).where(AuditEntry.tenant == tenant, *filters)
        if after is not None:
            stmt = stmt.where(AuditEntry.id > after)
        return (await self.session.scalars(stmt.order_by(AuditEntry.id).limit(limit))).all()
