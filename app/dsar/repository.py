"""DSAR persistence, always scoped by tenant. Flushes, never commits."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any

from pydantic_core import to_json
from sqlalchemy import ColumnElement, TextClause, and_, or_, select, text

from app.audit import trail
from app.core.db import is_postgres
from app.core.pagination import seek
from app.core.uow import UnitOfWork
from app.dsar.models import NO_DUE_SORT, DsarEvent, DsarStatus, DsarTicket
from app.events import outbox
from app.fulfilment.models import FulfilmentTask
from app.fulfilment.repository import late_filter


@dataclass(slots=True)
class NewTicket:
    """A ticket being opened, before any session holds it: the one-statement write sends it
    as it is, the ORM write copies it into a `DsarTicket` (as consent has `NewEvent`). Its
    fields are the ticket's columns (a test keeps them equal)."""

    id: uuid.UUID
    tenant: str
    policy_key: str
    policy_version: int
    type: str
    requester: str
    status: DsarStatus
    is_open: bool
    subject_id: str | None
    subject_email: str | None
    subject_name: str | None
    channel: str | None
    description: str | None
    received_at: datetime
    clock_started_at: datetime
    verified_at: datetime | None
    identity_requested_at: datetime | None
    acknowledge_by: date | None
    due_at: datetime | None
    due_date: date | None
    due_sort: datetime
    first_due_at: datetime | None
    provisional: bool
    extension_allowed: bool
    extended: bool
    extension_reason: str | None
    extension_notice_by: date | None
    explanation: list[dict[str, Any]]
    status_reason: str | None
    status_reason_code: str | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # set by the worker once the ticket has closed (app/pruning)
    delete_after: datetime | None = None
    version: int = 1

    def columns(self) -> dict[str, Any]:
        """The ticket's column values (the ORM instance takes them but `version`, which its
        mapper sets)."""
        return {f: getattr(self, f) for f in _TICKET_FIELDS}


_TICKET_FIELDS = [f.name for f in fields(NewTicket) if f.name != "version"]


def _insert_sql() -> TextClause:
    """A new ticket, its first timeline entry, its audit entry and its `dsar.created` outbox
    row, as one statement (PostgreSQL checks the event's foreign key at the statement's end,
    when the ticket row exists)."""
    cols = [c.name for c in DsarTicket.__table__.columns]
    json_cols = {"explanation"}
    ticket_values = ", ".join(
        f"CAST(:t_{c} AS jsonb)" if c in json_cols else f":t_{c}" for c in cols
    )
    audit = trail.insert_cte(
        "a",
        tenant=":t_tenant",
        at=":e_at",
        actor=":e_actor",
        action="'dsar.created'",
        object_type="'dsar_ticket'",
        object_id=":a_object_id",
        data="CAST(:facts AS jsonb)",
    )
    created = outbox.insert_cte(
        "o", tenant=":t_tenant", type="dsar.created", data="CAST(:facts AS jsonb)", at=":e_at"
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
), {audit}, {created}
SELECT 1
"""
    )


_PG_CREATE = _insert_sql()
# (attribute, parameter) for every ticket column, in table order
_TICKET_COLUMNS = [(c.key, f"t_{c.name}") for c in DsarTicket.__table__.columns]


def _json(value: Any) -> str:
    return to_json(value).decode()


class DsarRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.session = uow.session

    async def create(
        self,
        ticket: NewTicket,
        event: dict[str, Any],  # dsar.service.event_values
        facts: dict[str, Any],
    ) -> None:
        """The ticket, its first timeline entry, its audit entry and its `dsar.created` event.
        On PostgreSQL one statement (alone on the bare pool when it is the unit's whole write);
        on SQLite through the session. The caller commits the unit."""
        if not is_postgres(self.session):
            self.session.add(DsarTicket(**ticket.columns()))
            self.session.add(DsarEvent(**event))
            await outbox.emit(self.session, ticket.tenant, "dsar.created", facts, event["at"])
            trail.record(
                self.session,
                tenant=ticket.tenant,
                actor=event["actor"],
                action="dsar.created",
                object_type="dsar_ticket",
                object_id=ticket.id,
                data=facts,
                at=event["at"],
            )
            await self.session.flush()
            return
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
        await self.uow.execute_alone(_PG_CREATE, params)

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
        stmt = seek(stmt, DsarTicket.due_sort, DsarTicket.id, after, limit)
        return (await self.session.scalars(stmt)).all()

    async def events(
        self, ticket_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[DsarEvent]:
        stmt = select(DsarEvent).where(DsarEvent.ticket_id == ticket_id)
        stmt = seek(stmt, DsarEvent.at, DsarEvent.id, after, limit)
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
    # A ticket whose systems are late with their tasks is at risk: due_soon (DESIGN §13).
    late_tasks = (
        select(FulfilmentTask.id)
        .where(FulfilmentTask.dsar_id == DsarTicket.id, late_filter(now))
        .exists()
    )
    conditions: dict[str, Any] = {
        "overdue": and_(DsarTicket.is_open.is_(True), sort < now),
        "due_soon": and_(
            DsarTicket.is_open.is_(True),
            sort >= now,
            or_(sort <= soon, late_tasks),
        ),
        "on_track": and_(
            DsarTicket.is_open.is_(True), sort > soon, sort < NO_DUE_SORT, ~late_tasks
        ),
        "no_fixed_deadline": and_(
            DsarTicket.is_open.is_(True), sort == NO_DUE_SORT, ~late_tasks
        ),
        "met": and_(DsarTicket.is_open.is_(False), or_(due.is_(None), DsarTicket.closed_at <= due)),
        "missed": and_(DsarTicket.is_open.is_(False), due.is_not(None), DsarTicket.closed_at > due),
    }
    result: ColumnElement[bool] = conditions[sla]
    return result
