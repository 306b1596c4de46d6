"""Appending to the audit log, in the caller's transaction. The audit entry's row is written
here only: `entry` (its column values), `record`/`record_many` (the ORM and bulk forms) and
`insert_cte` (the part of a one-statement write on PostgreSQL, app/core/uow.py).

The writer only adds the row: its sequence number (`id`) comes from the database and, on
PostgreSQL, its transaction id from a server default. The chain (position and digest) is
the sealer's job (app.audit.chain), so no request takes a per-tenant lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEntry
from app.core.db import insert_cte as _insert_cte

COLUMNS = ("tenant", "at", "actor", "action", "object_type", "object_id", "data")


def entry(
    *,
    tenant: str,
    actor: str,
    action: str,
    object_type: str,
    object_id: Any,
    data: dict[str, Any],
    at: datetime,
) -> dict[str, Any]:
    """One audit entry's column values. `data` never carries a subject identifier."""
    return {
        "tenant": tenant,
        "at": at,
        "actor": actor,
        "action": action,
        "object_type": object_type,
        "object_id": str(object_id),
        "data": data,
    }


def record(
    session: AsyncSession,
    *,
    tenant: str,
    actor: str,
    action: str,
    object_type: str,
    object_id: Any,
    data: dict[str, Any],
    at: datetime,
) -> None:
    session.add(
        AuditEntry(
            **entry(
                tenant=tenant,
                actor=actor,
                action=action,
                object_type=object_type,
                object_id=object_id,
                data=data,
                at=at,
            )
        )
    )


async def record_many(session: AsyncSession, entries: Sequence[dict[str, Any]]) -> None:
    """Entries built by `entry`, in one multi-row INSERT (in that order)."""
    if entries:
        await session.execute(insert(AuditEntry).values(list(entries)))


def insert_cte(
    name: str,
    *,
    tenant: str,
    at: str,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    data: str,
    source: str | None = None,
    order_by: str | None = None,
) -> str:
    """The audit entries' INSERT as a CTE of a one-statement write: each argument is the SQL
    for that column (a bind parameter, a literal, or an expression over `source`); `object_id`
    must be text and `data` jsonb."""
    return _insert_cte(
        name,
        AuditEntry.__tablename__,
        COLUMNS,
        {
            "tenant": tenant,
            "at": at,
            "actor": actor,
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "data": data,
        },
        source=source,
        order_by=order_by,
    )
