"""Use cases on one data subject across domains: consents, export (portability), erasure.
Each domain exports and erases what it holds (`export_subject`, `erase_subject`); this
service composes them in one unit of work and records the erasure.

Erasure pseudonymises rather than deletes: the ledger keeps its proof that consent was
given or refused, under an identifier that no longer points at the person. The pseudonym
is random (`erased:` + 128 random bits) and the mapping is kept nowhere; one erasure uses one
pseudonym, so the erased subject's events still hang together.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from functools import cached_property

from pydantic import BaseModel, Field
from sqlalchemy.orm.exc import StaleDataError

from app.audit import trail
from app.consent.schemas import ConsentEventOut, ConsentStateOut, SubjectConsents
from app.consent.service import ConsentService
from app.core.clock import Clock
from app.core.errors import Conflict, NotFound
from app.core.security import Principal
from app.core.uow import UnitOfWork
from app.dsar.schemas import DsarRead
from app.dsar.service import DsarService
from app.fulfilment import fanout
from app.fulfilment.fanout import task_read
from app.fulfilment.schemas import TaskExport
from app.retention import subject as retention
from app.retention.schemas import HoldRead, RetentionEventExport
from app.subjects.models import SubjectErasure

PSEUDONYM_PREFIX = "erased:"


class SubjectNotFound(NotFound):
    code = "subject_not_found"


class ErasureConflict(Conflict):
    code = "subject_erasure_conflict"


class SubjectExport(BaseModel):
    """Everything the service holds on one subject, as portable JSON."""

    subject_id: str
    exported_at: datetime
    consent_events: list[ConsentEventOut] = Field(description="The whole ledger, oldest first")
    consent_states: list[ConsentStateOut]
    dsar_tickets: list[DsarRead]
    fulfilment_tasks: list[TaskExport] = Field(
        description="The tasks of the subject's tickets, with what each system returned, and "
        "the retention erasure tasks about them"
    )
    retention_events: list[RetentionEventExport] = Field(
        description="The retention triggers recorded for the subject (account closed, …)"
    )
    legal_holds: list[HoldRead] = Field(description="The legal holds naming the subject")


def new_pseudonym() -> str:
    return PSEUDONYM_PREFIX + secrets.token_hex(16)


class SubjectService:
    def __init__(self, uow: UnitOfWork, clock: Clock, due_soon: timedelta) -> None:
        self.uow = uow
        self.session = uow.session
        self.clock = clock
        self.due_soon = due_soon

    # built when first used: the hot consents read needs only the consent service
    @cached_property
    def consent(self) -> ConsentService:
        return ConsentService(self.uow, self.clock)

    @cached_property
    def dsar(self) -> DsarService:
        return DsarService(self.uow, self.clock, self.due_soon)

    async def consents(
        self,
        who: Principal,
        subject_id: str,
        policy_key: str | None,
        as_of: datetime | None,
    ) -> SubjectConsents:
        return await self.consent.consents(who, subject_id, policy_key, as_of)

    async def export(self, who: Principal, subject_id: str) -> SubjectExport:
        now = self.clock()
        events, states = await self.consent.export_subject(who.tenant, subject_id)
        tickets = await self.dsar.export_subject(who.tenant, subject_id)
        tasks = await fanout.export_subject(self.session, who.tenant, [t.id for t in tickets], now)
        kept, holds, erasures = await retention.export_subject(
            self.session, who.tenant, subject_id, now
        )
        tasks += [TaskExport(**task_read(t, now).model_dump(), data=t.data) for t in erasures]
        if not (events or states or tickets or kept or holds):
            raise SubjectNotFound("This tenant holds nothing on that subject")
        return SubjectExport(
            subject_id=subject_id,
            exported_at=now,
            consent_events=events,
            consent_states=states,
            dsar_tickets=tickets,
            fulfilment_tasks=tasks,
            retention_events=kept,
            legal_holds=holds,
        )

    async def erase(self, who: Principal, subject_id: str) -> None:
        now = self.clock()
        pseudonym = new_pseudonym()
        # first: a legal hold naming the subject refuses the erasure (409) before any change
        kept = await retention.erase_subject(self.session, who.tenant, subject_id, pseudonym, now)
        events, states = await self.consent.erase_subject(who.tenant, subject_id, pseudonym)
        tickets = await self.dsar.erase_subject(who.tenant, subject_id, pseudonym, now)
        if not (events or states or tickets or any(kept.values())):
            raise SubjectNotFound("This tenant holds nothing on that subject")
        erasure_id = uuid.uuid4()
        # The audit entry names the erasure record, never the identifier or the pseudonym.
        trail.record(
            self.session,
            tenant=who.tenant,
            actor=who.sub,
            action="subject.erased",
            object_type="subject_erasure",
            object_id=erasure_id,
            data={
                "consent_events": events,
                "consent_states": states,
                "dsar_tickets": tickets,
                **kept,
            },
            at=now,
        )
        self.session.add(
            SubjectErasure(
                id=erasure_id,
                tenant=who.tenant,
                pseudonym=pseudonym,
                at=now,
                actor=who.sub,
                consent_events=events,
                consent_states=states,
                dsar_tickets=tickets,
            )
        )
        try:
            await self.session.flush()
        except StaleDataError:
            await self.uow.rollback()
            raise ErasureConflict(
                "A request of this subject changed meanwhile; retry the erasure"
            ) from None
        await self.uow.commit()
