"""Reading and verifying the tenant's audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import chain
from app.audit.models import AuditEntry
from app.audit.repository import AuditRepository
from app.audit.schemas import AuditEventRead, AuditVerification, BrokenLink
from app.core.pagination import decode_int_cursor, page_of
from app.core.security import Principal


class AuditService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = AuditRepository(session)

    async def list_page(
        self,
        who: Principal,
        *,
        action: str | None,
        object_type: str | None,
        object_id: str | None,
        actor: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[AuditEventRead], str | None]:
        filters: list[ColumnElement[bool]] = []
        if action is not None:
            filters.append(AuditEntry.action == action)
        if object_type is not None:
            filters.append(AuditEntry.object_type == object_type)
        if object_id is not None:
            filters.append(AuditEntry.object_id == object_id)
        if actor is not None:
            filters.append(AuditEntry.actor == actor)
        if since is not None:
            filters.append(AuditEntry.at >= since)
        if until is not None:
            filters.append(AuditEntry.at < until)
        after = decode_int_cursor(cursor)
        rows = await self.repo.page(who.tenant, filters=filters, after=after, limit=limit + 1)
        page, nxt = page_of(rows, limit, lambda e: [e.id])
        items = [AuditEventRead.model_validate(e, from_attributes=True) for e in page]
        return items, nxt

    async def verify(self, who: Principal) -> AuditVerification:
        result = await chain.verify(self.session, who.tenant)
        return AuditVerification(
            ok=result.ok,
            checked=result.checked,
            unsealed=result.unsealed,
            first_broken=BrokenLink(**result.first_broken) if result.first_broken else None,
        )
