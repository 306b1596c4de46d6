"""One subject's retention data, for the subjects service's export and erasure (DESIGN §7,
§14): their recorded retention events, the legal holds naming them, and the retention
erasure tasks sent to systems about them.

Erasing a subject under an active legal hold naming them is refused (409
`subject_on_hold`): the hold exists to preserve their data for a legal claim (GDPR Art.
17(3)(e)), this service's records of them included. Category holds (everyone's records of a
category at the systems) do not stop it: they preserve the systems' records, not this
service's. Once erased, the subject's events, expiries, ended holds and retention tasks keep
the erasure's pseudonym only; expiries not yet acted on are dropped (superseded), since no
system could be told whom to erase.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict
from app.fulfilment.models import RETENTION_ERASURE, FulfilmentTask
from app.retention import holds as legal_holds
from app.retention.models import LegalHold, RetentionEvent, RetentionExpiry
from app.retention.schemas import HoldRead, RetentionEventExport
from app.retention.service import hold_read


class SubjectOnHold(Conflict):
    code = "subject_on_hold"


def _subject_tasks(tenant: str, subject_id: str) -> Select[FulfilmentTask]:
    """The retention erasure tasks about the subject: those of their expiries."""
    expiries = select(RetentionExpiry.id).where(
        RetentionExpiry.tenant == tenant, RetentionExpiry.subject_id == subject_id
    )
    return (
        select(FulfilmentTask)
        .where(
            FulfilmentTask.tenant == tenant,
            FulfilmentTask.type == RETENTION_ERASURE,
            FulfilmentTask.retention_ref.in_(expiries),
        )
        .order_by(FulfilmentTask.created_at, FulfilmentTask.id)
    )


async def export_subject(
    session: AsyncSession, tenant: str, subject_id: str, now: datetime
) -> tuple[list[RetentionEventExport], list[HoldRead], list[FulfilmentTask]]:
    events = await session.scalars(
        select(RetentionEvent)
        .where(RetentionEvent.tenant == tenant, RetentionEvent.subject_id == subject_id)
        .order_by(RetentionEvent.recorded_at, RetentionEvent.id)
    )
    holds = await session.scalars(
        select(LegalHold)
        .where(LegalHold.tenant == tenant, LegalHold.subject_id == subject_id)
        .order_by(LegalHold.created_at, LegalHold.id)
    )
    tasks = await session.scalars(_subject_tasks(tenant, subject_id))
    return (
        [
            RetentionEventExport(
                id=e.id,
                policy_key=e.policy_key,
                policy_version=e.policy_version,
                event=e.event,
                occurred_at=e.occurred_at,
                recorded_at=e.recorded_at,
            )
            for e in events
        ],
        [hold_read(h, now) for h in holds],
        list(tasks),
    )


async def erase_subject(
    session: AsyncSession, tenant: str, subject_id: str, pseudonym: str, now: datetime
) -> dict[str, int]:
    """In the caller's unit of work: 409 under an active hold naming the subject; else the
    pseudonym everywhere. Returns counts for the erasure's record."""
    active = (
        await session.scalars(
            select(LegalHold.id).where(
                LegalHold.tenant == tenant,
                LegalHold.subject_id == subject_id,
                legal_holds.active(now),
            )
        )
    ).all()
    if active:
        raise SubjectOnHold(
            "A legal hold preserves this subject's data: release it before erasing them",
            holds=[str(i) for i in active],
        )
    tasks = list(await session.scalars(_subject_tasks(tenant, subject_id)))
    events = (
        await session.execute(
            update(RetentionEvent)
            .where(RetentionEvent.tenant == tenant, RetentionEvent.subject_id == subject_id)
            .values(subject_id=pseudonym)
            .execution_options(synchronize_session=False)
        )
    ).rowcount  # type: ignore[attr-defined]
    await session.execute(
        update(RetentionExpiry)
        .where(
            RetentionExpiry.tenant == tenant,
            RetentionExpiry.subject_id == subject_id,
            RetentionExpiry.tasks_created_at.is_(None),
            RetentionExpiry.superseded_at.is_(None),
        )
        .values(superseded_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(RetentionExpiry)
        .where(RetentionExpiry.tenant == tenant, RetentionExpiry.subject_id == subject_id)
        .values(subject_id=pseudonym)
        .execution_options(synchronize_session=False)
    )
    holds = (
        await session.execute(
            update(LegalHold)
            .where(LegalHold.tenant == tenant, LegalHold.subject_id == subject_id)
            .values(subject_id=pseudonym)
            .execution_options(synchronize_session=False)
        )
    ).rowcount  # type: ignore[attr-defined]
    for task in tasks:
        task.subject = {"id": pseudonym, "email": None, "name": None}
        task.retention = {**(task.retention or {}), "subject_id": pseudonym}
        task.updated_at = now
    return {"retention_events": int(events or 0), "legal_holds": int(holds or 0)}
