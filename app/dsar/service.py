"""DSAR use cases: each is one transaction, committed here.

Dates come from `app.rules` only; this module decides *which* facts to give it (receipt,
verification, extension) and records what it answered.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import ColumnElement, and_

from app.audit import trail
from app.core import idempotency
from app.core.clock import Clock
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.idempotency import IdempotencyRecord, as_sent, idempotent
from app.core.ids import new_id
from app.core.pagination import decode_keyset_cursor, keyset, page_of
from app.core.security import Principal
from app.core.uow import UnitOfWork
from app.core.versioning import Optimistic
from app.dsar.models import (
    NO_DUE_SORT,
    OPEN_STATUSES,
    TRANSITIONS,
    DsarEvent,
    DsarStatus,
    DsarTicket,
)
from app.dsar.repository import DsarRepository, NewTicket, sla_filter
from app.dsar.schemas import DsarCreate, DsarEventRead, DsarRead, ExtensionIn, TransitionIn
from app.events.outbox import emit, iso
from app.fulfilment import fanout
from app.fulfilment.schemas import TasksSummary
from app.policies.models import PolicyVersion
from app.policies.repository import PolicyRepository
from app.policies.service import PolicyService
from app.rules.deadlines import DsarDeadlines, dsar_deadlines
from app.rules.regimes import cite

CLOCK_SKEW = timedelta(seconds=5)


class DsarNotFound(NotFound):
    code = "dsar_not_found"


class DsarTypeNotOffered(Unprocessable):
    code = "dsar_type_not_offered"


class DsarInvalid(Unprocessable):
    code = "validation_error"


class TransitionNotAllowed(Conflict):
    code = "dsar_transition_not_allowed"


class ReasonRequired(Unprocessable):
    code = "dsar_reason_required"


class ExtensionAlreadyTaken(Conflict):
    code = "dsar_extension_already_taken"


class ExtensionNotAllowed(Conflict):
    code = "dsar_extension_not_allowed"


class ExtensionTooLate(Conflict):
    code = "dsar_extension_window_closed"


class DsarClosed(Conflict):
    code = "dsar_closed"


def sla_of(ticket: DsarTicket | NewTicket, now: datetime, window: timedelta) -> str:
    due = ticket.due_at
    if not ticket.is_open:
        if due is None or (ticket.closed_at is not None and ticket.closed_at <= due):
            return "met"
        return "missed"
    if due is None:
        # nothing to be on track for: the law sets no period (Morocco access, "sans délais")
        # and the policy made no promise of its own
        return "no_fixed_deadline"
    if now > due:
        return "overdue"
    if due - now <= window:
        return "due_soon"
    return "on_track"


def extension_open(ticket: DsarTicket | NewTicket, now: datetime) -> bool:
    """Whether an extension could be taken now: the rule allows one, it was not taken, the
    ticket is open and the first period has not ended (the same tests `extend` applies, so a
    true here is never answered by a 409 there)."""
    return (
        bool(ticket.extension_allowed)
        and ticket.is_open
        and not ticket.extended
        and (ticket.first_due_at is None or now <= ticket.first_due_at)
    )


def to_read(
    ticket: DsarTicket | NewTicket,
    now: datetime,
    window: timedelta,
    tasks: TasksSummary | None = None,
    tasks_late: bool = False,
) -> DsarRead:
    sla = sla_of(ticket, now, window)
    if tasks_late and sla in ("on_track", "no_fixed_deadline"):
        sla = "due_soon"  # a system is late with its task: the request is at risk
    return DsarRead.model_validate(
        {
            "id": ticket.id,
            "policy_key": ticket.policy_key,
            "policy_version": ticket.policy_version,
            "type": ticket.type,
            "requester": ticket.requester,
            "status": ticket.status,
            "subject": {
                "id": ticket.subject_id,
                "email": ticket.subject_email,
                "name": ticket.subject_name,
            },
            "channel": ticket.channel,
            "description": ticket.description,
            "received_at": ticket.received_at,
            "clock_started_at": ticket.clock_started_at,
            "verified_at": ticket.verified_at,
            "identity_requested_at": ticket.identity_requested_at,
            "acknowledge_by": ticket.acknowledge_by,
            "due_at": ticket.due_at,
            "due_date": ticket.due_date,
            "provisional": ticket.provisional,
            "extension_allowed": extension_open(ticket, now),
            "extended": ticket.extended,
            "extension_reason": ticket.extension_reason,
            "extension_notice_by": ticket.extension_notice_by,
            "status_reason": ticket.status_reason,
            "status_reason_code": ticket.status_reason_code,
            "sla": sla,
            "explanation": ticket.explanation,
            "closed_at": ticket.closed_at,
            "created_at": ticket.created_at,
            "updated_at": ticket.updated_at,
            "version": ticket.version,
            "tasks_summary": tasks or TasksSummary(),
        }
    )


def deadline_columns(dl: DsarDeadlines, *, extended: bool) -> dict[str, Any]:
    """The ticket's columns that follow from its deadlines (the extended due date once taken)."""
    columns: dict[str, Any] = {
        "clock_started_at": dl.clock_started_at,
        "acknowledge_by": dl.acknowledge_by,
        "provisional": dl.provisional,
        "extension_allowed": dl.extension_allowed,
        "first_due_at": dl.due_at,
        "explanation": [step.to_dict() for step in dl.explanation],
    }
    if extended and dl.extended_due_at is not None:
        columns["due_at"], columns["due_date"] = dl.extended_due_at, dl.extended_due_date
        columns["extension_notice_by"] = dl.extension_notice_by
    else:
        columns["due_at"], columns["due_date"] = dl.due_at, dl.due_date
    columns["due_sort"] = columns["due_at"] or NO_DUE_SORT
    return columns


def _apply_deadlines(ticket: DsarTicket, dl: DsarDeadlines, *, extended: bool) -> None:
    for name, value in deadline_columns(dl, extended=extended).items():
        setattr(ticket, name, value)


class DsarService:
    def __init__(self, uow: UnitOfWork, clock: Clock, due_soon: timedelta) -> None:
        self.uow = uow
        self.session = uow.session
        self.repo = DsarRepository(uow)
        self.policies = PolicyRepository(self.session)
        self.clock = clock
        self.due_soon = due_soon

    def read(self, ticket: DsarTicket | NewTicket) -> DsarRead:
        return to_read(ticket, self.clock(), self.due_soon)

    async def read_with_tasks(self, ticket: DsarTicket) -> DsarRead:
        # --- fulfilment hook: the ticket's tasks_summary and late tasks (DESIGN §13) ---
        now = self.clock()
        counts, late = await fanout.task_overview(self.session, ticket.tenant, [ticket.id], now)
        return to_read(
            ticket, now, self.due_soon, fanout.summary(counts[ticket.id]), ticket.id in late
        )

    async def create(
        self, who: Principal, body: DsarCreate, idempotency_key: str | None
    ) -> JSONResponse | DsarRead:
        now = self.clock()
        received_at = (body.received_at or now).astimezone(UTC)
        if received_at > now + CLOCK_SKEW:
            raise DsarInvalid.at(
                ["body", "received_at"], "a request cannot be received in the future"
            )
        async with idempotent(
            self.session,
            who.tenant,
            "createDsar",
            idempotency_key,
            lambda: as_sent(body),
            etag=True,
        ) as idem:
            if idem.replay is not None:
                return idem.replay
            pv = await PolicyService(self.session, self.clock).version_at(
                who.tenant, body.policy_key, received_at
            )
            offered: list[str] = list(pv.resolved["rights"])
            if body.type not in offered:
                raise DsarTypeNotOffered(
                    f"Policy '{body.policy_key}' v{pv.version} does not offer '{body.type}'",
                    offered=offered,
                )
            dl = dsar_deadlines(
                pv.resolved, type=body.type, received_at=received_at, requester=body.requester
            )
            ticket = NewTicket(
                id=uuid.uuid4(),
                tenant=who.tenant,
                policy_key=body.policy_key,
                policy_version=pv.version,
                type=body.type,
                requester=body.requester,
                status=DsarStatus.received,
                is_open=True,
                subject_id=body.subject.id,
                subject_email=body.subject.email,
                subject_name=body.subject.name,
                channel=body.channel,
                description=body.description,
                received_at=received_at,
                verified_at=None,
                identity_requested_at=None,
                extended=False,
                extension_reason=None,
                extension_notice_by=None,
                status_reason=None,
                status_reason_code=None,
                closed_at=None,
                created_at=now,
                updated_at=now,
                **deadline_columns(dl, extended=False),
            )
            created = event_values(
                ticket,
                who,
                now,
                "created",
                None,
                DsarStatus.received,
                None,
                {"policy_version": pv.version, "due_date": _iso(ticket.due_date)},
            )
            # ticket, event, audit entry and outbox row: one statement where it can be
            await self.repo.create(ticket, created, ticket_facts(ticket))
            read = self.read(ticket)
            idem.remember(201, read.model_dump(mode="json"), f"/v1/dsars/{ticket.id}", at=now)
            await self.uow.commit()
            return read

    async def get(self, who: Principal, ticket_id: uuid.UUID) -> DsarRead:
        return await self.read_with_tasks(await self._ticket(who, ticket_id))

    async def _ticket(self, who: Principal, ticket_id: uuid.UUID, lock: bool = False) -> DsarTicket:
        ticket = await self.repo.get(who.tenant, ticket_id, lock=lock)
        if ticket is None:
            raise DsarNotFound(f"No DSAR {ticket_id} in this tenant")
        return ticket

    async def _policy_version(self, ticket: DsarTicket) -> PolicyVersion:
        pv = await self.policies.get_version_by_key(
            ticket.tenant, ticket.policy_key, ticket.policy_version
        )
        assert pv is not None, "a ticket always references an existing policy version"
        return pv

    async def transition(
        self, who: Principal, ticket_id: uuid.UUID, body: TransitionIn, if_match: str | None
    ) -> DsarRead:
        change = Optimistic(self.session, if_match, "ticket")
        return await change.run(lambda: self._transition_once(who, ticket_id, body, change))

    async def _transition_once(
        self, who: Principal, ticket_id: uuid.UUID, body: TransitionIn, change: Optimistic
    ) -> DsarRead:
        now = self.clock()
        ticket = change.check(await self._ticket(who, ticket_id, lock=True))
        current = DsarStatus(ticket.status)
        allowed = TRANSITIONS[current]
        if body.to not in allowed:
            raise TransitionNotAllowed(
                f"A ticket in '{current.value}' cannot move to '{body.to.value}'",
                allowed=[s.value for s in allowed],
            )
        if body.to == DsarStatus.rejected and not body.reason:
            regime = (await self._policy_version(ticket)).resolved["jurisdiction"]["regime"]
            rule, source = cite(regime, "refusal")
            why = f"{source}" if source is not None else f"{rule}: a rejection records its reason"
            raise ReasonRequired(
                f"Rejecting a request needs a reason ({why})",
                rule=rule,
                errors=[
                    {"loc": ["body", "reason"], "msg": "required to reject", "type": "missing"}
                ],
            )
        if body.reason_code is not None and body.to != DsarStatus.rejected:
            raise DsarInvalid.at(["body", "reason_code"], "only when rejecting (to rejected)")
        if body.to == DsarStatus.completed:
            # --- fulfilment hook: completion waits for every system's answer (§13) ---
            await fanout.check_completion(self.session, ticket, body.reason)
        verifying = body.to == DsarStatus.in_progress and current in (
            DsarStatus.received,
            DsarStatus.awaiting_verification,
        )
        if body.verified_at is not None and not verifying:
            raise DsarInvalid.at(
                ["body", "verified_at"], "only when identity is verified (to in_progress)"
            )
        data: dict[str, Any] = {}
        pv: PolicyVersion | None = None
        if body.to == DsarStatus.awaiting_verification:
            # The controller asks for information to confirm identity: under the GDPR and UK
            # GDPR presets the clock now waits for it (the dates become provisional).
            ticket.identity_requested_at = now
            data["identity_requested_at"] = iso(now)
            pv = await self._policy_version(ticket)
            dl = dsar_deadlines(
                pv.resolved,
                type=ticket.type,
                received_at=ticket.received_at,
                requester=ticket.requester,
                extended=ticket.extended,
                identity_requested=True,
            )
            if dl.due_at != ticket.due_at or ticket.provisional != dl.provisional:
                data["due_at_before"] = _iso(ticket.due_at)
            _apply_deadlines(ticket, dl, extended=ticket.extended)
            data["due_date"] = _iso(ticket.due_date)
        if verifying:
            if current == DsarStatus.awaiting_verification:
                verified_at = body.verified_at or now
            else:  # identity already known at receipt
                verified_at = body.verified_at or ticket.received_at
            if verified_at > now + CLOCK_SKEW:
                raise DsarInvalid.at(["body", "verified_at"], "cannot be in the future")
            if verified_at < ticket.received_at:
                raise DsarInvalid.at(
                    ["body", "verified_at"], "cannot be before the request was received"
                )
            ticket.verified_at = verified_at
            data["verified_at"] = iso(verified_at)
            pv = await self._policy_version(ticket)
            dl = dsar_deadlines(
                pv.resolved,
                type=ticket.type,
                received_at=ticket.received_at,
                verified_at=verified_at,
                requester=ticket.requester,
                extended=ticket.extended,
                identity_requested=ticket.identity_requested_at is not None,
            )
            if dl.due_at != ticket.due_at or ticket.provisional != dl.provisional:
                data["due_at_before"] = _iso(ticket.due_at)
            _apply_deadlines(ticket, dl, extended=ticket.extended)
            data["due_date"] = _iso(ticket.due_date)
        ticket.status = body.to
        ticket.is_open = body.to in OPEN_STATUSES
        if not ticket.is_open:
            ticket.closed_at = now
        if body.reason:
            ticket.status_reason = body.reason
        if body.reason_code is not None:
            ticket.status_reason_code = body.reason_code
            data["reason_code"] = body.reason_code.value
        ticket.updated_at = now
        # --- fulfilment hook: tasks in this same transaction (DESIGN §13) ---
        if body.to == DsarStatus.in_progress:
            pv = pv or await self._policy_version(ticket)
            steps = await fanout.create_tasks(self.session, ticket, pv.resolved, who.sub, now)
            ticket.explanation = [*ticket.explanation, *(s.to_dict() for s in steps)]
        elif not ticket.is_open:
            pv = pv or await self._policy_version(ticket)
            await fanout.on_closed(self.session, ticket, pv.resolved, who.sub, now)
        # --- end of the fulfilment hook ---
        self._event(ticket, who, now, "status_changed", current, body.to, body.reason, data)
        await self.session.flush()  # bumps `version`, which the event carries
        changed = {**ticket_facts(ticket), "from": current.value, "to": body.to.value}
        await emit(self.session, who.tenant, "dsar.status_changed", changed, now)
        self._audit(who, ticket, "dsar.status_changed", changed, now)
        read = await self.read_with_tasks(ticket)
        await self.uow.commit()
        return read

    async def extend(
        self, who: Principal, ticket_id: uuid.UUID, body: ExtensionIn, if_match: str | None
    ) -> DsarRead:
        change = Optimistic(self.session, if_match, "ticket")
        return await change.run(lambda: self._extend_once(who, ticket_id, body, change))

    async def _extend_once(
        self, who: Principal, ticket_id: uuid.UUID, body: ExtensionIn, change: Optimistic
    ) -> DsarRead:
        now = self.clock()
        ticket = change.check(await self._ticket(who, ticket_id, lock=True))
        if not ticket.is_open:
            raise DsarClosed(f"The ticket is {ticket.status}: it can no longer be extended")
        if ticket.extended:
            raise ExtensionAlreadyTaken("The extension was already taken (it is allowed once)")
        if not ticket.extension_allowed:
            raise ExtensionNotAllowed("The rule governing this request allows no extension")
        if ticket.first_due_at is not None and now > ticket.first_due_at:
            raise ExtensionTooLate(
                "An extension must be taken within the first period, which ended "
                f"{iso(ticket.first_due_at)}"
            )
        pv = await self._policy_version(ticket)
        dl = dsar_deadlines(
            pv.resolved,
            type=ticket.type,
            received_at=ticket.received_at,
            verified_at=ticket.verified_at,
            requester=ticket.requester,
            extended=True,
            identity_requested=ticket.identity_requested_at is not None,
        )
        before = ticket.due_at
        # --- fulfilment hook: the note on the ticket's tasks outlives the new dates ---
        notes = [
            step
            for step in ticket.explanation
            if step.get("rule") in ("fulfilment", "legal hold")
        ]
        _apply_deadlines(ticket, dl, extended=True)
        ticket.explanation = [*ticket.explanation, *notes]
        ticket.extended = True
        ticket.extension_reason = body.reason
        ticket.updated_at = now
        # --- fulfilment hook: the open tasks' due instants follow the new deadline (§13) ---
        await fanout.on_deadline_moved(self.session, ticket, pv.resolved, now)
        self._event(
            ticket,
            who,
            now,
            "extended",
            None,
            None,
            body.reason,
            {
                "due_at_before": _iso(before),
                "due_date": _iso(ticket.due_date),
                "subject_must_be_told_by": _iso(ticket.extension_notice_by),
            },
        )
        await self.session.flush()
        self._audit(
            who,
            ticket,
            "dsar.extended",
            {**ticket_facts(ticket), "due_at_before": iso(before)},
            now,
        )
        read = await self.read_with_tasks(ticket)
        await self.uow.commit()
        return read

    async def list_page(
        self,
        who: Principal,
        *,
        status: DsarStatus | None,
        type: str | None,
        sla: str | None,
        policy_key: str | None,
        due_before: datetime | None,
        received_after: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[DsarRead], str | None]:
        now = self.clock()
        filters: list[ColumnElement[bool]] = []
        if status is not None:
            filters.append(DsarTicket.status == status)
        if type is not None:
            filters.append(DsarTicket.type == type)
        if policy_key is not None:
            filters.append(DsarTicket.policy_key == policy_key)
        if due_before is not None:
            filters.append(DsarTicket.due_at < due_before)
        if received_after is not None:
            filters.append(DsarTicket.received_at > received_after)
        if sla is not None:
            filters.append(sla_filter(sla, now, self.due_soon))
        parsed = decode_keyset_cursor(cursor)
        rows = await self.repo.list(who.tenant, filters=filters, after=parsed, limit=limit + 1)
        page, nxt = page_of(rows, limit, lambda t: keyset(t.due_sort, t.id))
        # --- fulfilment hook: tasks_summary and late tasks for the page, two queries ---
        counts, late = await fanout.task_overview(
            self.session, who.tenant, [t.id for t in page], now
        )
        items = [
            to_read(t, now, self.due_soon, fanout.summary(counts[t.id]), t.id in late)
            for t in page
        ]
        return items, nxt

    async def events(
        self, who: Principal, ticket_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[DsarEventRead], str | None]:
        await self._ticket(who, ticket_id)
        parsed = decode_keyset_cursor(cursor)
        rows = await self.repo.events(ticket_id, parsed, limit + 1)
        page, nxt = page_of(rows, limit, lambda e: keyset(e.at, e.id))
        items = [DsarEventRead.model_validate(e, from_attributes=True) for e in page]
        return items, nxt

    # ---- one subject (the subjects service composes these) --------------------------------

    async def export_subject(self, tenant: str, subject_id: str) -> list[DsarRead]:
        return [self.read(t) for t in await self.repo.for_subject(tenant, subject_id)]

    async def erase_subject(
        self, tenant: str, subject_id: str, pseudonym: str, now: datetime
    ) -> int:
        """The subject's tickets keep their history under `pseudonym`, without e-mail or name
        (each ticket's version moves: a concurrent change of one fails the flush), and the
        stored answers of their creation are forgotten; returns how many tickets. In the
        caller's unit of work."""
        tickets = await self.repo.for_subject(tenant, subject_id)
        for ticket in tickets:
            ticket.subject_id = pseudonym
            ticket.subject_email = None
            ticket.subject_name = None
            ticket.updated_at = now
        # --- fulfilment hook: the tasks' copies of the identifiers, and their data, go too ---
        await fanout.erase_subject(self.session, tenant, [t.id for t in tickets], pseudonym)
        body = IdempotencyRecord.response_body
        await idempotency.forget_where(
            self.session,
            tenant,
            and_(
                IdempotencyRecord.operation == "createDsar",
                body["subject"]["id"].as_string() == subject_id,
            ),
        )
        return len(tickets)

    def _audit(
        self, who: Principal, ticket: DsarTicket, action: str, data: dict[str, Any], at: datetime
    ) -> None:
        trail.record(
            self.session,
            tenant=ticket.tenant,
            actor=who.sub,
            action=action,
            object_type="dsar_ticket",
            object_id=ticket.id,
            data=data,
            at=at,
        )

    def _event(
        self,
        ticket: DsarTicket,
        who: Principal,
        at: datetime,
        kind: str,
        from_status: DsarStatus | None,
        to_status: DsarStatus | None,
        reason: str | None,
        data: dict[str, Any],
    ) -> None:
        self.session.add(
            DsarEvent(**event_values(ticket, who, at, kind, from_status, to_status, reason, data))
        )


def event_values(
    ticket: DsarTicket | NewTicket,
    who: Principal,
    at: datetime,
    kind: str,
    from_status: DsarStatus | None,
    to_status: DsarStatus | None,
    reason: str | None,
    data: dict[str, Any],
) -> dict[str, Any]:
    """One timeline entry, as column values (the ORM and the one-statement path share it)."""
    return {
        "id": new_id(),
        "ticket_id": ticket.id,
        "tenant": ticket.tenant,
        "at": at,
        "actor": who.sub,
        "kind": kind,
        "from_status": from_status.value if from_status else None,
        "to_status": to_status.value if to_status else None,
        "reason": reason,
        "data": data,
    }


def ticket_facts(ticket: DsarTicket | NewTicket) -> dict[str, Any]:
    """What events and audit entries say about a ticket: ids, dates, states. Never the
    subject, the description or a reason (free text may carry personal data)."""
    return {
        "id": str(ticket.id),
        "policy_key": ticket.policy_key,
        "policy_version": ticket.policy_version,
        "type": ticket.type,
        "status": DsarStatus(ticket.status).value,
        "due_at": iso(ticket.due_at),
        "due_date": iso(ticket.due_date),
        "version": ticket.version,
    }


def _iso(value: Any) -> str | None:
    return iso(value) if value is not None else None
