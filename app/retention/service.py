"""Retention use cases (DESIGN §14): each is one transaction, committed here.

- sweeps: run today's now (the worker's own job, `app.retention.jobs.create_sweeps`) and list
  them with their tasks' outcomes;
- per-subject triggers: record an event (its expiries are computed by the rules module and
  kept; the worker acts on them when they pass) and read a subject's retention state;
- legal holds: place, list, release. Every hold and release is audited (without the subject's
  identifier or the free-text reason: ids, categories and dates).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from fastapi.responses import JSONResponse
from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import trail
from app.core.clock import Clock
from app.core.errors import NotFound, Unprocessable
from app.core.idempotency import as_sent, idempotent
from app.core.ids import new_id
from app.core.pagination import decode_keyset_cursor, keyset, page_of, seek
from app.core.security import Principal
from app.core.uow import UnitOfWork
from app.events.outbox import iso
from app.fulfilment.models import FulfilmentTask
from app.policies.models import Policy, PolicyVersion
from app.policies.repository import PolicyRepository
from app.policies.service import PolicyNotFound, PolicyService
from app.retention import holds as legal_holds
from app.retention import jobs
from app.retention.models import LegalHold, RetentionEvent, RetentionExpiry, RetentionSweep
from app.retention.schemas import (
    HoldCreate,
    HoldRead,
    RetentionEventIn,
    RetentionEventRead,
    RetentionExpiryRead,
    SubjectRetention,
    SubjectRetentionItem,
    SweepPostponed,
    SweepRead,
    SweepRunRead,
)
from app.rules.explain import Step
from app.rules.retention import SWEEP_TRIGGERS, subject_events, subject_expiry


class RetentionEventUnknown(Unprocessable):
    code = "retention_event_unknown"


class RetentionInvalid(Unprocessable):
    code = "validation_error"


class HoldNotFound(NotFound):
    code = "hold_not_found"


def subject_path(subject_id: str) -> str:
    return "/v1/subjects/" + quote(subject_id, safe="")


def hold_read(h: LegalHold, now: datetime) -> HoldRead:
    return HoldRead(
        id=h.id,
        subject_id=h.subject_id,
        categories=list(h.categories) if h.categories is not None else None,
        reason=h.reason,
        until=h.until,
        active=h.released_at is None and (h.until is None or h.until > now),
        created_at=h.created_at,
        created_by=h.created_by,
        released_at=h.released_at,
        released_by=h.released_by,
    )


def hold_facts(h: LegalHold) -> dict[str, Any]:
    """What the audit log keeps of a hold: never the subject's id nor the reason's text."""
    return {
        "id": str(h.id),
        "subject": h.subject_id is not None,
        "categories": list(h.categories) if h.categories is not None else None,
        "until": iso(h.until),
    }


async def known_categories(session: AsyncSession, tenant: str) -> set[str]:
    """The data categories the tenant's policies name in their retention rules (any version)."""
    rows = await session.scalars(
        select(PolicyVersion.resolved).where(PolicyVersion.tenant == tenant)
    )
    return {str(r["category"]) for resolved in rows for r in resolved.get("retention") or []}


class RetentionService:
    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self.uow = uow
        self.session = uow.session
        self.clock = clock

    # ---- sweeps ----------------------------------------------------------------------------

    async def _policy_exists(self, tenant: str, key: str) -> None:
        if await PolicyRepository(self.session).get(tenant, key) is None:
            raise PolicyNotFound(f"No policy '{key}' in this tenant")

    async def run_sweeps(self, who: Principal, policy_key: str | None) -> SweepRunRead:
        if policy_key is not None:
            await self._policy_exists(who.tenant, policy_key)
            await self.session.rollback()
        now = self.clock()
        outcome = await jobs.create_sweeps(
            self.session, now, tenant=who.tenant, policy_key=policy_key, actor=who.sub
        )
        items: list[SweepRead] = []
        if outcome.today:
            wanted = set(outcome.today)
            rows = await self._sweep_rows(
                [
                    RetentionSweep.tenant == who.tenant,
                    RetentionSweep.system_id.in_({s for s, _, _ in wanted}),
                    RetentionSweep.day.in_({d for _, _, d in wanted}),
                ],
                None,
                10_000,
            )
            items = [
                self._sweep_read(s, t)
                for s, t in rows
                if (s.system_id, s.category, s.day) in wanted
            ]
        await self.session.rollback()
        return SweepRunRead(
            created=len(outcome.created),
            items=items,
            postponed=[
                SweepPostponed(
                    policy_key=p.policy_key,
                    system=p.system,
                    category=p.category,
                    day=p.day,
                    held_by=p.held_by,
                )
                for p in outcome.postponed
            ],
        )

    async def _sweep_rows(
        self,
        filters: Sequence[Any],
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[tuple[RetentionSweep, FulfilmentTask | None]]:
        stmt = (
            select(RetentionSweep, FulfilmentTask)
            .outerjoin(
                FulfilmentTask,
                and_(
                    FulfilmentTask.retention_ref == RetentionSweep.id,
                    FulfilmentTask.system_id == RetentionSweep.system_id,
                ),
            )
            .where(*filters)
        )
        stmt = seek(stmt, RetentionSweep.created_at, RetentionSweep.id, after, limit)
        return [(s, t) for s, t in (await self.session.execute(stmt)).all()]

    @staticmethod
    def _sweep_read(sweep: RetentionSweep, task: FulfilmentTask | None) -> SweepRead:
        return SweepRead(
            id=sweep.id,
            policy_key=sweep.policy_key,
            policy_version=sweep.policy_version,
            system=sweep.system_key,
            category=sweep.category,
            day=sweep.day,
            cutoff=sweep.cutoff,
            then=sweep.then,
            holds=list(sweep.holds),
            explanation=list(sweep.explanation),
            task_id=task.id if task is not None else None,
            status=task.status if task is not None else None,
            records_affected=task.records_affected if task is not None else None,
            reported_at=task.reported_at if task is not None else None,
            created_at=sweep.created_at,
        )

    async def list_sweeps(
        self,
        who: Principal,
        *,
        policy_key: str | None,
        system: str | None,
        category: str | None,
        day: date | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[SweepRead], str | None]:
        filters: list[Any] = [RetentionSweep.tenant == who.tenant]
        if policy_key is not None:
            filters.append(RetentionSweep.policy_key == policy_key)
        if system is not None:
            filters.append(RetentionSweep.system_key == system)
        if category is not None:
            filters.append(RetentionSweep.category == category)
        if day is not None:
            filters.append(RetentionSweep.day == day)
        rows = await self._sweep_rows(filters, decode_keyset_cursor(cursor), limit + 1)
        page, nxt = page_of(rows, limit, lambda r: keyset(r[0].created_at, r[0].id))
        return [self._sweep_read(s, t) for s, t in page], nxt

    # ---- per-subject triggers --------------------------------------------------------------

    async def record_event(
        self,
        who: Principal,
        subject_id: str,
        body: RetentionEventIn,
        idempotency_key: str | None,
    ) -> JSONResponse | tuple[RetentionEventRead, str]:
        now = self.clock()
        if body.occurred_at > now:
            raise RetentionInvalid.at(["body", "occurred_at"], "must not be in the future")
        version = await PolicyService(self.session, self.clock).version_at(
            who.tenant, body.policy_key, body.occurred_at
        )
        allowed = subject_events(version.resolved)
        if body.event not in allowed:
            raise RetentionEventUnknown(
                f"No retention rule of policy '{body.policy_key}' v{version.version} starts at "
                "this event",
                errors=[
                    {
                        "loc": ["body", "event"],
                        "msg": "not an event a retention rule of the policy starts at",
                        "type": "value_error",
                    }
                ],
                allowed=sorted(allowed),
            )
        request = {"subject_id": subject_id, **as_sent(body)}
        async with idempotent(
            self.session, who.tenant, "recordRetentionEvent", idempotency_key, lambda: request
        ) as idem:
            if idem.replay is not None:
                return idem.replay
            event = RetentionEvent(
                id=new_id(),
                tenant=who.tenant,
                subject_id=subject_id,
                policy_key=body.policy_key,
                policy_version=version.version,
                event=body.event,
                occurred_at=body.occurred_at,
                recorded_at=now,
                recorded_by=who.sub,
            )
            self.session.add(event)
            await self.session.flush()
            # the latest occurrence governs: an earlier one's expiries not yet acted on go
            await self.session.execute(
                update(RetentionExpiry)
                .where(
                    RetentionExpiry.tenant == who.tenant,
                    RetentionExpiry.subject_id == subject_id,
                    RetentionExpiry.policy_key == body.policy_key,
                    RetentionExpiry.tasks_created_at.is_(None),
                    RetentionExpiry.superseded_at.is_(None),
                    RetentionExpiry.event_id.in_(
                        select(RetentionEvent.id).where(
                            RetentionEvent.tenant == who.tenant,
                            RetentionEvent.subject_id == subject_id,
                            RetentionEvent.policy_key == body.policy_key,
                            RetentionEvent.event == body.event,
                            RetentionEvent.id != event.id,
                        )
                    ),
                )
                .values(superseded_at=now)
                .execution_options(synchronize_session=False)
            )
            expiries: list[RetentionExpiryRead] = []
            for rule in version.resolved.get("retention") or []:
                if rule["starts_at"] != body.event:
                    continue
                found = subject_expiry(version.resolved, rule, body.occurred_at, now)
                if found.expires_at is None:
                    continue  # kept indefinitely: nothing to schedule
                self.session.add(
                    RetentionExpiry(
                        id=new_id(),
                        tenant=who.tenant,
                        event_id=event.id,
                        subject_id=subject_id,
                        policy_key=body.policy_key,
                        policy_version=version.version,
                        category=found.category,
                        expires_at=found.expires_at,
                        then=found.then,
                        explanation=found.explanation,
                        tasks_created_at=None,
                        superseded_at=None,
                        created_at=now,
                    )
                )
                expiries.append(
                    RetentionExpiryRead(
                        category=found.category,
                        expires_at=found.expires_at,
                        then=found.then,
                        state="expired" if found.state == "expired" else "running",
                    )
                )
            trail.record(
                self.session,
                tenant=who.tenant,
                actor=who.sub,
                action="retention.event_recorded",
                object_type="retention_event",
                object_id=event.id,
                data={
                    "id": str(event.id),
                    "policy_key": body.policy_key,
                    "policy_version": version.version,
                    "event": body.event,
                    "occurred_at": iso(body.occurred_at),
                    "expiries": [
                        {"category": e.category, "expires_at": iso(e.expires_at)}
                        for e in expiries
                    ],
                },
                at=now,
            )
            read = RetentionEventRead(
                id=event.id,
                subject_id=subject_id,
                policy_key=body.policy_key,
                policy_version=version.version,
                event=body.event,
                occurred_at=body.occurred_at,
                recorded_at=now,
                expiries=expiries,
            )
            location = f"{subject_path(subject_id)}/retention?policy_key={body.policy_key}"
            idem.remember(201, read.model_dump(mode="json"), location, at=now)
            await self.uow.commit()
            return read, location

    async def subject_retention(
        self, who: Principal, subject_id: str, policy_key: str | None
    ) -> SubjectRetention:
        now = self.clock()
        stmt = select(Policy.id).where(Policy.tenant == who.tenant)
        if policy_key is not None:
            stmt = stmt.where(Policy.key == policy_key)
        ids = list(await self.session.scalars(stmt))
        if policy_key is not None and not ids:
            raise PolicyNotFound(f"No policy '{policy_key}' in this tenant")
        versions = sorted(
            (await PolicyRepository(self.session).versions_in_force(ids, now)).values(),
            key=lambda v: v.policy_key,
        )
        # the subject's latest occurrence of each event, per policy, and its kept expiries
        events: dict[tuple[str, str], RetentionEvent] = {}
        for recorded in await self.session.scalars(
            select(RetentionEvent)
            .where(RetentionEvent.tenant == who.tenant, RetentionEvent.subject_id == subject_id)
            .order_by(RetentionEvent.recorded_at, RetentionEvent.id)
        ):
            events[(recorded.policy_key, recorded.event)] = recorded
        kept: dict[tuple[uuid.UUID, str], RetentionExpiry] = {
            (e.event_id, e.category): e
            for e in await self.session.scalars(
                select(RetentionExpiry).where(
                    RetentionExpiry.tenant == who.tenant,
                    RetentionExpiry.subject_id == subject_id,
                )
            )
        }
        holds = (await legal_holds.active_holds(self.session, [who.tenant], now))[who.tenant]
        items: list[SubjectRetentionItem] = []
        for pv in versions:
            for rule in pv.resolved.get("retention") or []:
                category, trigger = str(rule["category"]), str(rule["starts_at"])
                state: str
                expires_at: datetime | None = None
                explanation: list[dict[str, Any]]
                if trigger in SWEEP_TRIGGERS:
                    found = subject_expiry(pv.resolved, rule, None, now)
                    if found.state == "indefinite":
                        state, explanation = "indefinite", found.explanation
                    else:
                        state = "running"
                        explanation = [
                            found.explanation[0],
                            Step(
                                "retention sweep",
                                None,
                                f"each record's clock starts at its own '{trigger}' instant: "
                                "the daily sweep applies "
                                f"'{rule['then']}' to the records past their retention",
                            ).to_dict(),
                        ]
                else:
                    ev: RetentionEvent | None = events.get((pv.policy_key, trigger))
                    row = kept.get((ev.id, category)) if ev is not None else None
                    if row is not None:
                        expires_at = row.expires_at
                        state = "expired" if row.expires_at <= now else "running"
                        explanation = list(row.explanation)
                    else:
                        found = subject_expiry(
                            pv.resolved, rule, ev.occurred_at if ev is not None else None, now
                        )
                        state, expires_at = found.state, found.expires_at
                        explanation = found.explanation
                held = legal_holds.covering(holds, subject_id, category)
                if held:
                    state = "held"
                    explanation = [*explanation, legal_holds.step(held, "kept while ").to_dict()]
                items.append(
                    SubjectRetentionItem(
                        policy_key=pv.policy_key,
                        category=category,
                        state=state,
                        expires_at=expires_at,
                        then=str(rule["then"]),
                        explanation=explanation,
                    )
                )
        return SubjectRetention(subject_id=subject_id, items=items)

    # ---- legal holds -----------------------------------------------------------------------

    async def create_hold(
        self, who: Principal, body: HoldCreate, idempotency_key: str | None
    ) -> JSONResponse | HoldRead:
        now = self.clock()
        if body.until is not None and body.until <= now:
            raise RetentionInvalid.at(["body", "until"], "must be in the future")
        if body.categories:
            known = await known_categories(self.session, who.tenant)
            for i, name in enumerate(body.categories):
                if name not in known:
                    raise RetentionInvalid.at(
                        ["body", "categories", i],
                        "not a data category of this tenant's policies' retention rules",
                    )
        async with idempotent(
            self.session, who.tenant, "createHold", idempotency_key, lambda: as_sent(body)
        ) as idem:
            if idem.replay is not None:
                return idem.replay
            h = LegalHold(
                id=new_id(),
                tenant=who.tenant,
                subject_id=body.subject_id,
                categories=body.categories,
                reason=body.reason,
                until=body.until,
                created_at=now,
                created_by=who.sub,
                released_at=None,
                released_by=None,
            )
            self.session.add(h)
            await self.session.flush()
            self._audit(who, "hold.placed", h, now)
            read = hold_read(h, now)
            idem.remember(201, read.model_dump(mode="json"), f"/v1/holds/{h.id}", at=now)
            await self.uow.commit()
            return read

    async def list_holds(
        self,
        who: Principal,
        *,
        active: bool | None,
        subject_id: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[HoldRead], str | None]:
        now = self.clock()
        stmt = select(LegalHold).where(LegalHold.tenant == who.tenant)
        if active is True:
            stmt = stmt.where(legal_holds.active(now))
        elif active is False:
            stmt = stmt.where(~legal_holds.active(now))
        if subject_id is not None:
            stmt = stmt.where(LegalHold.subject_id == subject_id)
        stmt = seek(
            stmt, LegalHold.created_at, LegalHold.id, decode_keyset_cursor(cursor), limit + 1
        )
        rows = (await self.session.scalars(stmt)).all()
        page, nxt = page_of(rows, limit, lambda h: keyset(h.created_at, h.id))
        return [hold_read(h, now) for h in page], nxt

    async def release_hold(self, who: Principal, hold_id: uuid.UUID) -> None:
        """Releases the hold (a second release changes nothing); the tenant's held tasks are
        looked at again by the next worker round."""
        now = self.clock()
        h = await self.session.scalar(
            select(LegalHold)
            .where(LegalHold.tenant == who.tenant, LegalHold.id == hold_id)
            .with_for_update()
        )
        if h is None:
            raise HoldNotFound(f"No hold {hold_id} in this tenant")
        if h.released_at is not None:
            await self.session.rollback()
            return
        h.released_at = now
        h.released_by = who.sub
        self._audit(who, "hold.released", h, now)
        await jobs.wake_held(self.session, [who.tenant], now)
        await self.uow.commit()

    def _audit(self, who: Principal, action: str, h: LegalHold, at: datetime) -> None:
        trail.record(
            self.session,
            tenant=who.tenant,
            actor=who.sub,
            action=action,
            object_type="legal_hold",
            object_id=h.id,
            data=hold_facts(h),
            at=at,
        )
