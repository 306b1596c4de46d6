"""Appending to the audit log, in the caller's transaction.

The writer only adds the row: its sequence number (`id`) comes from the database and, on
PostgreSQL, its transaction id from a server default. The chain (position and digest) is
the sealer's job (app.audit.chain), so no request takes a per-tenant lock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEntry


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
            tenant=tenant,
            at=at,
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            data=data,
        )
    )
