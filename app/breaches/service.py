"""Breach use cases: each is one transaction, committed here.

Who must be told and by when comes from `app.rules` only (RULES.md §9); this module gives it
the facts (awareness, risk, role), stores what it answered, and keeps the record: every
notification sent, and every change with who made it and why.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import trail
from app.breaches.models import (
    TRANSITIONS,
    Audience,
    BreachEvent,
    BreachIncident,
    BreachNotification,
    BreachRisk,
    BreachRole,
    BreachStatus,
)
from app.breaches.repository import BreachRepository, not_overdue_filter, overdue_filter
from app.breaches.schemas import BreachCreate, BreachPatch, BreachRead, NotificationIn
from app.core.clock import Clock
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.idempotency import as_sent, idempotent
from app.core.pagination import decode_keyset_cursor, keyset, page_of
from app.core.security import Principal
from app.core.versioning import Optimistic
from app.events.outbox import emit, iso
from app.policies.models import PolicyVersion
from app.policies.repository import PolicyRepository
from app.policies.service import PolicyService
from app.rules.calendars import calendar_for
from app.rules.deadlines import BreachDeadlines, breach_deadlines
from app.rules.explain import Step, describe_period, local_moment, rule_name
from app.rules.periods import Period, add_period, zone
from app.rules.policy import ResolvedPolicy
from app.rules.regimes import cite

# A client's clock may run a little ahead of ours: "now" from a script is not "the future".
CLOCK_SKEW = timedelta(minutes=1)
AUDIENCES: tuple[Audience, ...] = (Audience.authority, Audience.subjects, Audience.controller)
# The duty columns a risk re-assessment may change (listed in the history entry).
DUTY_FIELDS = tuple(
    f"{a.value}_{suffix}" for a in AUDIENCES for suffix in ("notification_required", "due_at")
)


class BreachNotFound(NotFound):
    code = "breach_not_found"


class BreachInvalid(Unprocessable):
    code = "validation_error"


class TransitionNotAllowed(Conflict):
    code = "breach_transition_not_allowed"


class BreachClosed(Conflict):
    code = "breach_closed"


class CloseNeedsReason(Unprocessable):
    code = "breach_close_needs_reason"


class LateReasonRequired(Unprocessable):
    code = "breach_notification_late_reason_required"


class AudienceNotApplicable(Unprocessable):
    code = "breach_audience_not_applicable"


def _required(incident: BreachIncident, audience: Audience) -> bool:
    return bool(getattr(incident, f"{audience.value}_notification_required"))


def _due(incident: BreachIncident, audience: Audience) -> datetime | None:
    due: datetime | None = getattr(incident, f"{audience.value}_due_at")
    return due


def _notified(incident: BreachIncident, audience: Audience) -> datetime | None:
    at: datetime | None = getattr(incident, f"{audience.value}_notified_at")
    return at


def missing_notices(incident: BreachIncident) -> list[str]:
    """Audiences that must be told and have no notification recorded yet."""
    return [a.value for a in AUDIENCES if _required(incident, a) and _notified(incident, a) is None]


def refresh_next_due(incident: BreachIncident) -> None:
    """Keep `next_due_at` (the indexed column behind `overdue`) in step with the duties,
    the notifications and the status. Call after any of them changes."""
    if incident.status == BreachStatus.closed:
        incident.next_due_at = None
        return
    pending = [
        due
        for a in AUDIENCES
        if _required(incident, a)
        and _notified(incident, a) is None
        and (due := _due(incident, a)) is not None
    ]
    incident.next_due_at = min(pending) if pending else None


def is_overdue(incident: BreachIncident, now: datetime) -> bool:
    """A required notice is missing and its due instant has passed (repository.overdue_filter
    is the same rule in SQL)."""
    return incident.next_due_at is not None and incident.next_due_at < now


def _apply_duties(incident: BreachIncident, bd: BreachDeadlines, extra: list[Step]) -> None:
    incident.authority_notification_required = bd.authority_notification_required
    incident.authority_due_at = bd.authority_due_at
    incident.subjects_notification_required = bd.subjects_notification_required
    incident.subjects_due_at = bd.subjects_due_at
    incident.controller_notification_required = bd.controller_notification_required
    incident.controller_due_at = bd.controller_due_at
    incident.explanation = [step.to_dict() for step in (*bd.explanation, *extra)]
    refresh_next_due(incident)


def keep_until(resolved: ResolvedPolicy, aware_at: datetime) -> tuple[datetime | None, list[Step]]:
    """`aware_at` + the policy's `breach.records_kept_for`, with the step that says so."""
    breach = resolved.get("breach") or {}
    period = Period.of(breach.get("records_kept_for"))
    if period is None:
        return None, []
    jurisdiction = resolved["jurisdiction"]
    tz = str(jurisdiction["timezone"])
    calendar = calendar_for(jurisdiction["calendar"]) if period.unit == "business_days" else None
    until = add_period(aware_at, period, tz, calendar)
    if "records_kept_for" in breach.get("overrides", ()):
        rule, source = "policy promise", None
    else:
        legal = str(breach.get("legal_source") or breach.get("source") or "")
        rule, source = (rule_name(legal), legal) if legal else ("records_kept_for", None)
    step = Step(
        rule,
        source,
        f"The record of the incident is kept for {describe_period(period.to_dict())} from "
        f"awareness, {local_moment(aware_at, zone(tz), tz)} → until "
        f"{local_moment(until, zone(tz), tz)}; never deleted through the API, it is deleted by "
        "the service once closed and past that instant (its audit entries stay)",
    )
    return until, [step]


def _deadlines(
    resolved: ResolvedPolicy, aware_at: datetime, risk: BreachRisk, role: BreachRole
) -> BreachDeadlines:
    return breach_deadlines(
        resolved,
        aware_at=aware_at,
        risk=BreachRisk(risk).value,
        role=BreachRole(role).value,
    )


def to_read(
    incident: BreachIncident,
    notifications: Sequence[BreachNotification],
    events: Sequence[BreachEvent],
    now: datetime,
) -> BreachRead:
    return BreachRead.model_validate(
        {
            "id": incident.id,
            "policy_key": incident.policy_key,
            "policy_version": incident.policy_version,
            "title": incident.title,
            "aware_at": incident.aware_at,
            "occurred_at": incident.occurred_at,
            "data_categories": incident.data_categories,
            "subjects_affected": incident.subjects_affected,
            "risk": incident.risk,
            "role": incident.role,
            "description": incident.description,
            "status": incident.status,
            "authority_notification_required": incident.authority_notification_required,
            "authority_due_at": incident.authority_due_at,
            "subjects_notification_required": incident.subjects_notification_required,
            "subjects_due_at": incident.subjects_due_at,
            "controller_notification_required": incident.controller_notification_required,
            "controller_due_at": incident.controller_due_at,
            "next_due_at": incident.next_due_at,
            "notifications": [
                {
                    "id": n.id,
                    "audience": n.audience,
                    "sent_at": n.sent_at,
                    "reference": n.reference,
                    "late": n.late,
                    "late_reason": n.late_reason,
                    "recorded_at": n.recorded_at,
                }
                for n in notifications
            ],
            "overdue": is_overdue(incident, now),
            "explanation": incident.explanation,
            "keep_until": incident.keep_until,
            "closed_at": incident.closed_at,
            "closing_reason": incident.closing_reason,
            "history": [
                {
                    "id": e.id,
                    "at": e.at,
                    "actor": e.actor,
                    "version": e.version,
                    "kind": e.kind,
                    "changes": e.changes,
                    "reason": e.reason,
                }
                for e in events
            ],
            "created_at": incident.created_at,
            "updated_at": incident.updated_at,
            "version": incident.version,
        }
    )


def incident_facts(incident: BreachIncident) -> dict[str, Any]:
    """What events and audit entries say about an incident: ids, dates, duties, states. Never
    the title or description (free text)."""
    return {
        "id": str(incident.id),
        "policy_key": incident.policy_key,
        "policy_version": incident.policy_version,
        "status": BreachStatus(incident.status).value,
        "risk": BreachRisk(incident.risk).value,
        "role": BreachRole(incident.role).value,
        "aware_at": iso(incident.aware_at),
        "authority_notification_required": incident.authority_notification_required,
        "authority_due_at": iso(incident.authority_due_at),
        "subjects_notification_required": incident.subjects_notification_required,
        "subjects_due_at": iso(incident.subjects_due_at),
        "controller_notification_required": incident.controller_notification_required,
        "controller_due_at": iso(incident.controller_due_at),
        "version": incident.version,
    }


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, BreachStatus | BreachRisk | BreachRole | Audience):
        return value.value
    return value


def _change(changes: dict[str, Any], field: str, before: Any, after: Any) -> None:
    if before != after:
        changes[field] = {"from": _json(before), "to": _json(after)}


class BreachService:
    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.repo = BreachRepository(session)
        self.policies = PolicyRepository(session)
        self.clock = clock

    async def _read(self, incident: BreachIncident, now: datetime) -> BreachRead:
        notes = await self.repo.notifications([incident.id])
        events = await self.repo.events([incident.id])
        return to_read(incident, notes[incident.id], events[incident.id], now)

    # ---- create ------------------------------------------------------------------------

    async def create(
        self, who: Principal, body: BreachCreate, idempotency_key: str | None
    ) -> JSONResponse | BreachRead:
        now = self.clock()
        if body.aware_at > now + CLOCK_SKEW:
            raise BreachInvalid.at(["body", "aware_at"], "awareness cannot be in the future")
        if body.occurred_at is not None and body.occurred_at > body.aware_at:
            raise BreachInvalid.at(["body", "occurred_at"], "cannot be after aware_at")
        async with idempotent(
            self.session,
            who.tenant,
            "createBreach",
            idempotency_key,
            lambda: as_sent(body),
            etag=True,
        ) as idem:
            if idem.replay is not None:
                return idem.replay
            pv = await PolicyService(self.session, self.clock).version_at(
                who.tenant, body.policy_key, body.aware_at
            )
            bd = _deadlines(pv.resolved, body.aware_at, body.risk, body.role)
            until, records_steps = keep_until(pv.resolved, body.aware_at)
            incident = BreachIncident(
                id=uuid.uuid4(),
                tenant=who.tenant,
                policy_key=body.policy_key,
                policy_version=pv.version,
                title=body.title,
                aware_at=body.aware_at.astimezone(UTC),
                occurred_at=body.occurred_at.astimezone(UTC) if body.occurred_at else None,
                data_categories=list(body.data_categories),
                subjects_affected=body.subjects_affected,
                risk=body.risk,
                role=body.role,
                description=body.description,
                status=BreachStatus.open,
                authority_notified_at=None,
                subjects_notified_at=None,
                controller_notified_at=None,
                keep_until=until,
                closed_at=None,
                closing_reason=None,
                created_at=now,
                updated_at=now,
            )
            _apply_duties(incident, bd, records_steps)
            self.session.add(incident)
            await self.session.flush()
            changes: dict[str, Any] = {}
            _change(changes, "status", None, incident.status)
            _change(changes, "risk", None, incident.risk)
            _change(changes, "policy_version", None, pv.version)
            for field in DUTY_FIELDS:
                _change(changes, field, None, getattr(incident, field))
            self._event(incident, who, now, "created", changes, None)
            facts = incident_facts(incident)
            await emit(self.session, who.tenant, "breach.created", facts, now)
            self._audit(who, incident, "breach.created", facts, now)
            await self.session.flush()
            read = await self._read(incident, now)
            idem.remember(201, read.model_dump(mode="json"), f"/v1/breaches/{incident.id}", at=now)
            await self.session.commit()
            return read

    # ---- read --------------------------------------------------------------------------

    async def get(self, who: Principal, incident_id: uuid.UUID) -> BreachRead:
        return await self._read(await self._incident(who, incident_id), self.clock())

    async def _incident(
        self, who: Principal, incident_id: uuid.UUID, lock: bool = False
    ) -> BreachIncident:
        incident = await self.repo.get(who.tenant, incident_id, lock=lock)
        if incident is None:
            raise BreachNotFound(f"No breach incident {incident_id} in this tenant")
        return incident

    async def _policy_version(self, incident: BreachIncident) -> PolicyVersion:
        pv = await self.policies.get_version_by_key(
            incident.tenant, incident.policy_key, incident.policy_version
        )
        assert pv is not None, "an incident always references an existing policy version"
        return pv

    async def list_page(
        self,
        who: Principal,
        *,
        status: BreachStatus | None,
        overdue: bool | None,
        risk: BreachRisk | None,
        policy_key: str | None,
        aware_after: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[BreachRead], str | None]:
        now = self.clock()
        filters: list[ColumnElement[bool]] = []
        if status is not None:
            filters.append(BreachIncident.status == status)
        if risk is not None:
            filters.append(BreachIncident.risk == risk)
        if policy_key is not None:
            filters.append(BreachIncident.policy_key == policy_key)
        if aware_after is not None:
            filters.append(BreachIncident.aware_at > aware_after)
        if overdue is not None:
            filters.append(overdue_filter(now) if overdue else not_overdue_filter(now))
        parsed = decode_keyset_cursor(cursor)
        rows = await self.repo.page(who.tenant, filters=filters, before=parsed, limit=limit + 1)
        page, nxt = page_of(rows, limit, lambda i: keyset(i.aware_at, i.id))
        ids = [i.id for i in page]
        notes = await self.repo.notifications(ids)
        events = await self.repo.events(ids)
        items = [to_read(i, notes[i.id], events[i.id], now) for i in page]
        return items, nxt

    # ---- update ------------------------------------------------------------------------

    async def update(
        self, who: Principal, incident_id: uuid.UUID, body: BreachPatch, if_match: str | None
    ) -> BreachRead:
        change = Optimistic(self.session, if_match, "incident")
        return await change.run(lambda: self._update_once(who, incident_id, body, change))

    async def _update_once(
        self, who: Principal, incident_id: uuid.UUID, body: BreachPatch, change: Optimistic
    ) -> BreachRead:
        now = self.clock()
        incident = change.check(await self._incident(who, incident_id, lock=True))
        current = BreachStatus(incident.status)
        if current == BreachStatus.closed:
            if body.status is not None and body.status != current:
                raise TransitionNotAllowed(
                    f"A closed incident cannot move to '{body.status.value}': closed is final",
                    allowed=[],
                )
            raise BreachClosed("The incident is closed: its record is final", allowed=[])
        sent = body.model_fields_set
        changes: dict[str, Any] = {}

        if body.risk is not None and body.risk != incident.risk:
            pv = await self._policy_version(incident)
            before = {f: getattr(incident, f) for f in DUTY_FIELDS}
            bd = _deadlines(pv.resolved, incident.aware_at, body.risk, BreachRole(incident.role))
            _, records_steps = keep_until(pv.resolved, incident.aware_at)
            _change(changes, "risk", incident.risk, body.risk)
            incident.risk = body.risk
            _apply_duties(incident, bd, records_steps)
            for field in DUTY_FIELDS:
                _change(changes, field, before[field], getattr(incident, field))
        if "subjects_affected" in sent:
            _change(
                changes, "subjects_affected", incident.subjects_affected, body.subjects_affected
            )
            incident.subjects_affected = body.subjects_affected
        if body.data_categories is not None:
            _change(changes, "data_categories", incident.data_categories, body.data_categories)
            incident.data_categories = list(body.data_categories)
        if "description" in sent:
            _change(changes, "description", incident.description, body.description)
            incident.description = body.description

        # Sending the current status (a full representation) is not a transition.
        if body.status is not None and body.status != current:
            allowed = TRANSITIONS[current]
            if body.status not in allowed:
                raise TransitionNotAllowed(
                    f"An incident in '{current.value}' cannot move to '{body.status.value}'",
                    allowed=[s.value for s in allowed],
                )
            if body.status == BreachStatus.closed:
                missing = missing_notices(incident)  # after any re-assessment above
                if missing and not body.reason:
                    raise CloseNeedsReason(
                        "Closing while a required notice is missing ("
                        + ", ".join(missing)
                        + ") needs a `reason`",
                        missing=missing,
                        errors=[
                            {
                                "loc": ["body", "reason"],
                                "msg": "required to close with a notice missing",
                                "type": "missing",
                            }
                        ],
                    )
                incident.closed_at = now
                incident.closing_reason = body.reason
            _change(changes, "status", current, body.status)
            incident.status = body.status
            refresh_next_due(incident)

        if not changes:
            return await self._read(incident, now)  # nothing differs: no write, no new version
        incident.updated_at = now
        await self.session.flush()
        self._event(incident, who, now, "updated", changes, body.reason)
        # Which fields changed, not their values: a description is free text.
        self._audit(
            who,
            incident,
            "breach.updated",
            {**incident_facts(incident), "changed": sorted(changes)},
            now,
        )
        await self.session.flush()
        read = await self._read(incident, now)
        await self.session.commit()
        return read

    # ---- notifications -----------------------------------------------------------------

    async def notify(
        self,
        who: Principal,
        incident_id: uuid.UUID,
        body: NotificationIn,
        if_match: str | None,
        idempotency_key: str | None,
    ) -> JSONResponse | BreachRead:
        change = Optimistic(self.session, if_match, "incident")
        return await change.run(
            lambda: self._notify_once(who, incident_id, body, change, idempotency_key)
        )

    async def _notify_once(
        self,
        who: Principal,
        incident_id: uuid.UUID,
        body: NotificationIn,
        change: Optimistic,
        idempotency_key: str | None,
    ) -> JSONResponse | BreachRead:
        now = self.clock()
        if body.sent_at > now + CLOCK_SKEW:
            raise BreachInvalid.at(["body", "sent_at"], "a notice cannot be sent in the future")
        async with idempotent(
            self.session,
            who.tenant,
            "recordBreachNotification",
            idempotency_key,
            lambda: {"incident": str(incident_id), **as_sent(body)},
            etag=True,
        ) as idem:
            if idem.replay is not None:
                return idem.replay
            incident = change.check(await self._incident(who, incident_id, lock=True))
            if incident.status == BreachStatus.closed:
                raise BreachClosed("The incident is closed: its record is final", allowed=[])
            audience = body.audience
            if audience == Audience.controller and incident.role == BreachRole.controller:
                raise AudienceNotApplicable(
                    "This incident is the controller's own (role controller): there is no "
                    "controller to notify",
                    errors=[
                        {
                            "loc": ["body", "audience"],
                            "msg": "only for an incident registered with role processor",
                            "type": "value_error",
                        }
                    ],
                )
            if body.sent_at < incident.aware_at:
                raise BreachInvalid.at(["body", "sent_at"], "cannot be before aware_at")
            due = _due(incident, audience)
            late = due is not None and body.sent_at > due
            if late and not body.late_reason:
                assert due is not None
                pv = await self._policy_version(incident)
                rule, source = cite(pv.resolved["jurisdiction"]["regime"], "late_notice")
                why = (
                    f"a late notification must be accompanied by the reasons for the delay ({rule})"
                    if source is not None
                    else f"the register records why a notice was late ({rule})"
                )
                raise LateReasonRequired(
                    f"The notice to {audience.value} was sent after its due instant "
                    f"{iso(due)}: {why}; send them in `late_reason`",
                    rule=rule,
                    due_at=iso(due),
                    errors=[
                        {
                            "loc": ["body", "late_reason"],
                            "msg": "required for a notice sent after its due instant",
                            "type": "missing",
                        }
                    ],
                )
            note = BreachNotification(
                id=uuid.uuid4(),
                incident_id=incident.id,
                tenant=incident.tenant,
                audience=audience,
                sent_at=body.sent_at.astimezone(UTC),
                reference=body.reference,
                late=late,
                due_at=due,
                late_reason=body.late_reason,
                recorded_at=now,
                recorded_by=who.sub,
            )
            self.session.add(note)
            field = f"{audience.value}_notified_at"
            before = _notified(incident, audience)
            sent_at = body.sent_at.astimezone(UTC)
            after = sent_at if before is None else min(before, sent_at)
            setattr(incident, field, after)
            refresh_next_due(incident)
            incident.updated_at = now
            await self.session.flush()
            changes: dict[str, Any] = {
                "notification": {
                    "from": None,
                    "to": {
                        "id": str(note.id),
                        "audience": audience.value,
                        "sent_at": iso(body.sent_at),
                        "late": late,
                    },
                }
            }
            _change(changes, field, before, after)
            self._event(incident, who, now, "notification_recorded", changes, body.late_reason)
            self._audit(
                who,
                incident,
                "breach.notification_recorded",
                {
                    **incident_facts(incident),
                    "notification_id": str(note.id),
                    "audience": audience.value,
                    "sent_at": iso(sent_at),
                    "late": late,
                },
                now,
            )
            await self.session.flush()
            read = await self._read(incident, now)
            idem.remember(201, read.model_dump(mode="json"), f"/v1/breaches/{incident.id}", at=now)
            await self.session.commit()
            return read

    # ---- helpers -----------------------------------------------------------------------

    def _audit(
        self,
        who: Principal,
        incident: BreachIncident,
        action: str,
        data: dict[str, Any],
        at: datetime,
    ) -> None:
        trail.record(
            self.session,
            tenant=incident.tenant,
            actor=who.sub,
            action=action,
            object_type="breach_incident",
            object_id=incident.id,
            data=data,
            at=at,
        )

    def _event(
        self,
        incident: BreachIncident,
        who: Principal,
        at: datetime,
        kind: str,
        changes: dict[str, Any],
        reason: str | None,
    ) -> None:
        self.session.add(
            BreachEvent(
                id=uuid.uuid4(),
                incident_id=incident.id,
                tenant=incident.tenant,
                version=incident.version,
                at=at,
                actor=who.sub,
                kind=kind,
                changes=changes,
                reason=reason,
            )
        )
