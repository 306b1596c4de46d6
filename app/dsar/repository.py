"""DSAR persistence, always scoped by tenant. Flushes, never commits."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic_core import to_json
from sqlalchemy import ColumnElement, TextClause, and_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import rawpg
from app.dsar.models import NO_DUE_SORT, DsarEvent, DsarTicket


def _insert_sql() -> TextClause:
    """A new ticket, its first timeline entry, its audit entry and its `dsar.created` outbox
    row, as one statement (PostgreSQL checks the event's foreign key at the statement's end,
    when the ticket row exists)."""
    cols = [c.name for c in DsarTicket.__table__.columns]
    json_cols = {"explanation"}
    ticket_values = ", ".join(
        f"CAST(:t_{c} AS jsonb)" if c in json_cols else f":t_{c}" for c in cols
    )
    return text(
        f"""
WITH t AS (
    INSERT INTO dsar_ticket ({", ".join(cols)}) VALUES ({ticket_values})
), e AS (
    INSERT INTO dsar_event (id, ticket_id, tenant, at, actor, kind, from_status, to_status,
        reason, data)
    VALUES (:e_id, :t_id, :t_tenant, :e_at, :e_actor, :e_kind, NULL, :t_status, NULL,
        CAST(:e_data AS jsonb))
), a AS (
    INSERT INTO audit_entry (tenant, at, actor, action, object_type, object_id, data)
    VALUES (:t_tenant, :e_at, :e_actor, 'dsar.created', 'dsar_ticket', :a_object_id,
        CAST(:facts AS jsonb))
)
INSERT INTO outbox_event (tenant, type, data, created_at)
VALUES (:t_tenant, 'dsar.created', CAST(:facts AS jsonb), :e_at)
"""
    )


_PG_CREATE = _insert_sql()
# (attribute, parameter) for every ticket column, in table order
_TICKET_COLUMNS = [(c.key, f"t_{c.name}") for c in DsarTicket.__table__.columns]


def _json(value: Any) -> str:
    return to_json(value).decode()


class DsarRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_created_raw(
        self,
        pool: Any,
        ticket: DsarTicket,
        event: dict[str, Any],  # dsar.service.event_values
        facts: dict[str, Any],
    ) -> None:
        """The whole creation in one statement on the bare pool (app/core/rawpg.py)."""
        params: dict[str, Any] = {}
        for key, name in _TICKET_COLUMNS:
            value = getattr(ticket, key)
            if name == "t_explanation":
                value = _json(value)
            elif isinstance(value, enum.Enum):
                value = value.value
            params[name] = value
        params.update(
            e_id=event["id"],
            e_at=event["at"],
            e_actor=event["actor"],
            e_kind=event["kind"],
            e_data=_json(event["data"]),
            a_object_id=str(ticket.id),
            facts=_json(facts),
        )
        await rawpg.fetch(pool, _PG_CREATE, params)

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
        "on_track": and_(DsarTicket.is_open.is_(True), sort > soon, sort < NO_DUE_SORT),
        "no_fixed_deadline": and_(DsarTicket.is_open.is_(True), sort == NO_DUE_SORT),
        "met": and_(DsarTicket.is_open.is_(False), or_(due.is_(None), DsarTicket.closed_at <= due)),
        "missed": and_(DsarTicket.is_open.is_(False), due.is_not(None), DsarTicket.closed_at > due),
    }
    result: ColumnElement[bool] = conditions[sla]
    return result
