"""The transactional outbox: an event is a row added in the caller's transaction, so it
exists exactly when the change that caused it was committed. Nothing is sent from a request;
the worker fans events out to the subscriptions and delivers them.

The outbox row is written here only: `row` (its column values), `emit_many` (the rows in one
INSERT; `emit` is the same with one row) and `insert_cte` (the part of a one-statement write on
PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Literal, cast, get_args

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import insert_cte as _insert_cte
from app.core.instants import json_ready
from app.events.models import OutboxEvent

EventType = Literal[
    "dsar.created",
    "dsar.status_changed",
    "dsar.due_soon",
    "dsar.overdue",
    "consent.changed",
    "breach.created",
    "breach.deadline_approaching",
    "task.created",
    "task.overdue",
    "task.reported",
    "dsar.fulfilled",
    "webhook.disabled",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
# Sent only by POST /v1/webhooks/{id}/ping, to that one subscription: not a type a
# subscription asks for.
PingType = Literal["webhook.ping"]
PING: Final[PingType] = "webhook.ping"
# A push system's job (DESIGN §13): addressed to that system only, never fanned out.
TASK_JOB: EventType = "task.created"
# A receiver answered 410 Gone and its subscription (or a push system's job endpoint) was
# disabled; fanned out to the tenant's other subscriptions that asked for it.
WEBHOOK_DISABLED: Final = "webhook.disabled"


COLUMNS = ("tenant", "type", "data", "created_at")
_TABLE = cast(Table, OutboxEvent.__table__)


def row(
    tenant: str,
    type: EventType | PingType,
    data: dict[str, Any],
    at: datetime,
    *,
    dispatched_at: datetime | None = None,
) -> dict[str, Any]:
    """One event's column values. `data` carries ids, dates and states, and what a receiver
    needs to act (`consent.changed` names the subject and purpose); never an e-mail or free
    text. Subject erasure rewrites a subject id found here to its pseudonym. `dispatched_at`
    marks an event whose one delivery the writer adds itself (a push system's job, a ping;
    app/webhooks/repository.py `emit_addressed`): the worker's fan-out to the webhooks then
    leaves it alone."""
    return {
        "tenant": tenant,
        "type": type,
        "data": data,
        "created_at": at,
        "dispatched_at": dispatched_at,
    }


async def emit(
    session: AsyncSession, tenant: str, type: EventType, data: dict[str, Any], at: datetime
) -> None:
    """One event in the caller's transaction (`emit_many` with one row)."""
    await emit_many(session, [row(tenant, type, data, at)])


async def emit_many(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Events built by `row`, in the caller's transaction, in one INSERT (however many
    rows: one round trip); their ids, in the order of `rows`."""
    if not rows:
        return []
    # The table's INSERT, not the ORM's bulk one: that one leaves out the None values and so
    # splits rows with and without `dispatched_at` into two statements.
    result = await session.execute(
        insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True), list(rows)
    )
    return list(result.scalars())


def insert_cte(
    name: str,
    *,
    tenant: str,
    type: EventType,
    data: str,
    at: str,
    source: str | None = None,
    where: str | None = None,
    order_by: str | None = None,
) -> str:
    """The events' INSERT as a CTE of a one-statement write: `tenant`, `data` (jsonb) and `at`
    are SQL (bind parameters or expressions over `source`); `type` is the event type."""
    if type not in EVENT_TYPES:
        raise ValueError(f"not an event type: {type}")
    return _insert_cte(
        name,
        OutboxEvent.__tablename__,
        COLUMNS,
        {"tenant": tenant, "type": f"'{type}'", "data": data, "created_at": at},
        source=source,
        where=where,
        order_by=order_by,
    )


def iso(value: Any) -> Any:
    """JSON-ready dates for event and audit data: instants in UTC with `Z`, dates as
    `YYYY-MM-DD` (app/core/instants.py)."""
    return json_ready(value)
