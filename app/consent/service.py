"""Consent use cases: each is one transaction, committed here.

Recording resolves the policy version in force at `occurred_at`, checks the purpose against
it, and hands the events to the repository, which appends them and moves the projection
forward in one statement (PostgreSQL). Reads of the current state never scan history; only
`as_of` (a past moment) reads the ledger.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.consent.models import ConsentAction, ConsentEvent, ConsentState
from app.consent.repository import ConsentRepository, IdemRow, NewEvent
from app.consent.schemas import (
    MAX_BATCH,
    ConsentBatchOut,
    ConsentEntry,
    ConsentEventCreated,
    ConsentEventIn,
    ConsentEventOut,
    ConsentReceipt,
    ConsentStateOut,
    StateName,
    SubjectConsents,
)
from app.core.clock import Clock
from app.core.errors import (
    DomainError,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
    problem_body,
    validation_items,
)
from app.core.idempotency import as_sent, idempotent
from app.core.ids import new_id as new_event_id
from app.core.pagination import decode_keyset_cursor, keyset, page_of
from app.core.security import Principal
from app.core.uow import UnitOfWork
from app.policies.cache import VersionSnapshot, in_force, version_in_force
from app.policies.repository import PolicyRepository
from app.policies.service import PolicyService, UnknownPolicy
from app.rules.periods import Period, add_period
from app.rules.policy import ConsentPurposeRule

# A device's clock may run a little ahead; beyond this an event "in the future" is refused
# (it would otherwise pin the state against every real event until that moment).
CLOCK_SKEW = timedelta(seconds=60)
GPC_SOURCE = "gpc"
RECEIPT_NAMESPACE = uuid.UUID("8f0b7a44-6f1e-4c55-9a55-2c5b8d3e27a1")
RECEIPT_SPECIFICATION = "ISO/IEC TS 27560:2023 (Kantara Consent Receipt v1.1 fields)"
RECORD_RETENTION = (
    "Kept as proof of consent for the life of the ledger; on erasure the subject identifier "
    "is replaced by a pseudonym"
)


class UnknownPurpose(Unprocessable):
    code = "consent_unknown_purpose"


class ConsentInvalid(Unprocessable):
    code = "validation_error"


class ConsentEventNotFound(NotFound):
    code = "consent_event_not_found"


class BatchTooLarge(PayloadTooLarge):
    code = "consent_batch_too_large"


def to_out(ev: ConsentEvent) -> ConsentEventOut:
    return ConsentEventOut(
        id=ev.id,
        policy_key=ev.policy_key,
        policy_version=ev.policy_version,
        subject_id=ev.subject_id,
        purpose=ev.purpose,
        action=ev.action,
        occurred_at=ev.occurred_at,
        recorded_at=ev.recorded_at,
        expires_at=ev.expires_at,
        source=ev.source,
        proof=ev.proof,
        gpc=ev.gpc,
        erased=ev.erased,
    )


def created_from(
    event: NewEvent, recorded_at: datetime, gpc_events: Sequence[NewEvent] = ()
) -> ConsentEventCreated:
    """The answer for a recorded event; `became_current` is set once the write returns."""
    return ConsentEventCreated(
        id=event.id,
        policy_key=event.policy_key,
        policy_version=event.policy_version,
        subject_id=event.subject_id,
        purpose=event.purpose,
        action=ConsentAction(event.action),
        occurred_at=event.occurred_at,
        recorded_at=recorded_at,
        expires_at=event.expires_at,
        source=event.source,
        proof=event.proof,
        gpc=event.gpc,
        erased=False,
        became_current=False,
        gpc_applied=[e.purpose for e in gpc_events],
        gpc_event_ids=[e.id for e in gpc_events],
    )


def state_name(state: ConsentAction | str, expires_at: datetime | None, at: datetime) -> StateName:
    """A grant past its `expires_after` reads as `expired` (nothing is written when it lapses)."""
    value = ConsentAction(state).value
    if value == "granted" and expires_at is not None and expires_at <= at:
        return "expired"
    return cast(StateName, value)  # the three actions are three of the state names


def expiry(
    purpose: ConsentPurposeRule, action: str, occurred_at: datetime, tz: str
) -> datetime | None:
    """Only a grant lapses: occurred_at + the purpose's `expires_after` (rules module)."""
    period = purpose.get("expires_after")
    if action != "granted" or not period:
        return None
    return _lapse(occurred_at, int(period["value"]), str(period["unit"]), tz)


@lru_cache(maxsize=4096)
def _lapse(occurred_at: datetime, value: int, unit: str, tz: str) -> datetime:
    # memoised: a batch (or a burst) records many events at the same instant
    expires: datetime = add_period(occurred_at, Period(value, unit), tz)
    return expires


class ConsentService:
    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self.uow = uow
        self.session = uow.session
        self.repo = ConsentRepository(uow)
        self.clock = clock

    # ---- record ---------------------------------------------------------------------------

    def _events_for(
        self,
        pv: VersionSnapshot,
        body: ConsentEventIn,
        occurred_at: datetime,
        gpc: bool,
    ) -> list[NewEvent]:
        purposes = pv.purposes
        purpose = purposes.get(body.purpose)
        if purpose is None:
            defined = list(purposes)
            raise UnknownPurpose(
                f"Policy '{pv.policy_key}' v{pv.version} defines no purpose '{body.purpose}'",
                defined=defined,
                errors=[
                    {
                        "loc": ["body", "purpose"],
                        "msg": f"not a purpose of the policy; defined: {', '.join(defined)}",
                        "type": "value_error",
                    }
                ],
            )
        tz = pv.resolved["jurisdiction"]["timezone"]
        events = [
            NewEvent(
                id=new_event_id(),
                policy_key=pv.policy_key,
                policy_version=pv.version,
                subject_id=body.subject_id,
                purpose=body.purpose,
                action=body.action.value,
                occurred_at=occurred_at,
                source=body.source,
                proof=body.proof,
                gpc=False,
                expires_at=expiry(purpose, body.action.value, occurred_at, tz),
            )
        ]
        if gpc:
            # Recorded after the main event (greater ids), so at the same instant the opt-out
            # wins: a GPC signal is the stronger legal statement.
            events.extend(
                NewEvent(
                    id=new_event_id(),
                    policy_key=pv.policy_key,
                    policy_version=pv.version,
                    subject_id=body.subject_id,
                    purpose=key,
                    action=ConsentAction.denied.value,
                    occurred_at=occurred_at,
                    source=GPC_SOURCE,
                    proof=None,
                    gpc=True,
                    expires_at=None,
                )
                for key, p in purposes.items()
                if p.get("honors_gpc")
            )
        return events

    async def record(
        self, who: Principal, body: ConsentEventIn, gpc: bool, idempotency_key: str | None
    ) -> JSONResponse | ConsentEventCreated:
        now = self.clock()
        occurred_at = (body.occurred_at or now).astimezone(UTC)
        if occurred_at > now + CLOCK_SKEW:
            raise ConsentInvalid.at(["body", "occurred_at"], "an event cannot occur in the future")
        async with idempotent(
            self.session,
            who.tenant,
            "recordConsentEvent",
            idempotency_key,
            # the header changes the outcome: part of the request
            lambda: {**as_sent(body), **({"sec_gpc": True} if gpc else {})},
        ) as idem:
            if idem.replay is not None:
                return idem.replay
            policies = PolicyService(self.session, self.clock)
            pv = await policies.version_at(who.tenant, body.policy_key, occurred_at)
            try:
                events = self._events_for(pv, body, occurred_at, gpc)
            except UnknownPurpose:
                # Never refused on the cache's word alone: a version that defines the purpose
                # may have just been published through another process (its notification
                # still on its way). Refusals are rare; they read the versions afresh.
                pv = await policies.version_at(
                    who.tenant, body.policy_key, occurred_at, fresh=True
                )
                events = self._events_for(pv, body, occurred_at, gpc)
            main = events[0]
            gpc_events = events[1:]
            created = created_from(main, now, gpc_events)
            location = f"/v1/consent-events/{main.id}"
            row = None
            if idem.key is not None:
                row = IdemRow(
                    idem=idem,
                    status_code=201,
                    body=created.model_dump(mode="json"),
                    location=location,
                    current_flag_for=main.id,
                )
            current = await self.repo.append(who.tenant, who.sub, now, events, row)
            await self.uow.commit()
            created.became_current = main.id in current
            return created

    async def record_batch(
        self, who: Principal, items: list[Any], idempotency_key: str | None
    ) -> JSONResponse | ConsentBatchOut:
        if len(items) > MAX_BATCH:
            raise BatchTooLarge(
                f"A batch holds at most {MAX_BATCH} events, not {len(items)}", max=MAX_BATCH
            )
        now = self.clock()
        async with idempotent(
            self.session,
            who.tenant,
            "recordConsentEventsBatch",
            idempotency_key,
            lambda: {"events": items},
        ) as idem:
            if idem.replay is not None:
                return idem.replay
            slots: list[ConsentEventIn | dict[str, Any]] = []
            for i, item in enumerate(items):
                slots.append(self._parse_item(i, item, now))
            keys = sorted({s.policy_key for s in slots if isinstance(s, ConsentEventIn)})
            policies = PolicyService(self.session, self.clock)
            by_key = {key: await policies.snapshots(who.tenant, key) for key in keys}
            events: list[NewEvent | None] = []
            results: list[Any] = []
            in_force_at: dict[tuple[str, datetime], VersionSnapshot | None] = {}
            refreshed: set[str] = set()
            for i, slot in enumerate(slots):
                if not isinstance(slot, ConsentEventIn):
                    events.append(None)
                    results.append(slot)
                    continue
                occurred_at = (slot.occurred_at or now).astimezone(UTC)
                # most items share a policy and an instant (now): one lookup for all of them
                governing = (slot.policy_key, occurred_at)
                if governing not in in_force_at:
                    in_force_at[governing] = in_force(by_key[slot.policy_key], occurred_at)
                pv = in_force_at[governing]
                try:
                    if pv is None:
                        raise UnknownPolicy(
                            f"No policy '{slot.policy_key}' in this tenant", field="policy_key"
                        )
                    try:
                        ev = self._events_for(pv, slot, occurred_at, gpc=False)[0]
                    except UnknownPurpose:
                        if slot.policy_key in refreshed:
                            raise
                        # as in `record`: read this policy's versions afresh, once
                        refreshed.add(slot.policy_key)
                        by_key[slot.policy_key] = await policies.snapshots(
                            who.tenant, slot.policy_key, fresh=True
                        )
                        for at_key in [k for k in in_force_at if k[0] == slot.policy_key]:
                            del in_force_at[at_key]
                        pv = in_force_at[governing] = in_force(by_key[slot.policy_key], occurred_at)
                        if pv is None:
                            raise UnknownPolicy(
                                f"No policy '{slot.policy_key}' in this tenant",
                                field="policy_key",
                            ) from None
                        ev = self._events_for(pv, slot, occurred_at, gpc=False)[0]
                except DomainError as exc:
                    events.append(None)
                    results.append(_item_problem(i, exc))
                    continue
                events.append(ev)
                results.append(None)
            valid = [e for e in events if e is not None]
            # The statement goes out first; the result models are built while the database
            # runs it (a thousand models take a few milliseconds), then marked.
            writing = asyncio.ensure_future(self.repo.append(who.tenant, who.sub, now, valid))
            recorded: list[ConsentEventCreated] = []
            try:
                await asyncio.sleep(0)  # let the write send its statement
                for i, new in enumerate(events):
                    if new is not None:
                        results[i] = model = created_from(new, now)
                        recorded.append(model)
            finally:
                # never left running on its own, even when this request is cancelled meanwhile
                current = await writing
            for model in recorded:
                model.became_current = model.id in current
            out = ConsentBatchOut(
                results=results, recorded=len(valid), rejected=len(items) - len(valid)
            )
            if idem.key is not None:
                idem.remember(200, out.model_dump(mode="json"), None, at=now)
                await self.session.flush()
            await self.uow.commit()
            return out

    def _parse_item(self, i: int, item: Any, now: datetime) -> ConsentEventIn | dict[str, Any]:
        try:
            parsed = ConsentEventIn.model_validate(item)
        except ValidationError as exc:
            errors = [
                {**e, "loc": ["body", "events", i, *e["loc"]]}
                for e in validation_items(exc.errors())
            ]
            first = errors[0]
            detail = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
            return problem_body(422, "validation_error", detail, index=i, errors=errors)
        if parsed.occurred_at is not None and parsed.occurred_at > now + CLOCK_SKEW:
            msg = "an event cannot occur in the future"
            return problem_body(
                422,
                "validation_error",
                f"body.events.{i}.occurred_at: {msg}",
                index=i,
                errors=[
                    {"loc": ["body", "events", i, "occurred_at"], "msg": msg, "type": "value_error"}
                ],
            )
        return parsed

    # ---- read -----------------------------------------------------------------------------

    async def history(
        self,
        who: Principal,
        *,
        subject_id: str | None,
        purpose: str | None,
        policy_key: str | None,
        since: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[ConsentEventOut], str | None]:
        before = decode_keyset_cursor(cursor)
        rows = await self.repo.history(
            who.tenant,
            subject_id=subject_id,
            purpose=purpose,
            policy_key=policy_key,
            since=since,
            before=before,
            limit=limit + 1,
        )
        page, nxt = page_of(rows, limit, lambda e: keyset(e.occurred_at, e.id))
        return [to_out(e) for e in page], nxt

    async def consents(
        self,
        who: Principal,
        subject_id: str,
        policy_key: str | None = None,
        as_of: datetime | None = None,
    ) -> SubjectConsents:
        """One entry per purpose of each policy in force (at `as_of`, default now)."""
        at = as_of or self.clock()
        state_rows: Sequence[Any] = ()
        if as_of is None:  # the hot read: one round trip for both
            rows, state_rows = await self.repo.purposes_and_states(
                who.tenant, subject_id, policy_key
            )
        else:
            rows = await self.repo.policy_purposes(who.tenant, policy_key)
        if policy_key is not None and not rows:
            raise UnknownPolicy(f"No policy '{policy_key}' in this tenant", field="policy_key")
        versions: dict[str, list[tuple[int, datetime]]] = defaultdict(list)
        purposes_of: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for key, number, effective_at, purposes in rows:
            versions[key].append((number, effective_at))
            purposes_of[(key, number)] = purposes or []
        evidence: list[ConsentEventOut] | None = None
        current: dict[tuple[str, str], tuple[str, datetime, datetime | None, uuid.UUID]] = {}
        if as_of is None:
            for st in state_rows:
                current[(st.policy_key, st.purpose)] = (
                    st.state,
                    st.since,
                    st.expires_at,
                    st.event_id,
                )
        else:
            last: dict[tuple[str, str], ConsentEvent] = {}
            for ev in await self.repo.events_until(who.tenant, subject_id, as_of, policy_key):
                last[(ev.policy_key, ev.purpose)] = ev  # ordered by (occurred_at, id)
            for k, ev in last.items():
                current[k] = (ev.action, ev.occurred_at, ev.expires_at, ev.id)
            evidence = []
        entries: list[ConsentEntry] = []
        justifying: set[uuid.UUID] = set()
        for key in sorted(versions):
            governing = version_in_force(versions[key], at)
            if governing is None:
                continue
            for p in purposes_of[(key, governing)]:
                found = current.get((key, p["key"]))
                if found is None:
                    entries.append(
                        ConsentEntry(
                            policy_key=key,
                            purpose=p["key"],
                            state="not_set",
                            since=None,
                            expires_at=None,
                            event_id=None,
                            default=p.get("default", "denied"),
                        )
                    )
                    continue
                state, since, expires_at, event_id = found
                justifying.add(event_id)
                entries.append(
                    ConsentEntry(
                        policy_key=key,
                        purpose=p["key"],
                        state=state_name(state, expires_at, at),
                        since=since,
                        expires_at=expires_at,
                        event_id=event_id,
                        default=p.get("default", "denied"),
                    )
                )
        if evidence is not None:
            evidence = [
                to_out(ev)
                for ev in sorted(
                    (e for e in last.values() if e.id in justifying),
                    key=lambda e: (e.occurred_at, e.id),
                )
            ]
        return SubjectConsents(
            subject_id=subject_id, as_of=as_of, consents=entries, events=evidence
        )

    # ---- one subject (the subjects service composes these) --------------------------------

    async def export_subject(
        self, tenant: str, subject_id: str
    ) -> tuple[list[ConsentEventOut], list[ConsentStateOut]]:
        """The subject's whole ledger (oldest first) and current states."""
        now = self.clock()
        events = await self.repo.events_of_subject(tenant, subject_id)
        states = await self.repo.states(tenant, subject_id)
        return [to_out(e) for e in events], [
            ConsentStateOut(
                policy_key=s.policy_key,
                purpose=s.purpose,
                state=state_name(s.state, s.expires_at, now),
                since=s.since,
                expires_at=s.expires_at,
                event_id=s.event_id,
            )
            for s in sorted(states, key=lambda s: (s.policy_key, s.purpose))
        ]

    async def erase_subject(self, tenant: str, subject_id: str, pseudonym: str) -> tuple[int, int]:
        """The identifier replaced by `pseudonym` in the ledger and the projection, and the
        stored idempotent answers that carry it forgotten; (events, states) rewritten. In the
        caller's unit of work."""
        counts = await self.repo.pseudonymise(tenant, subject_id, pseudonym)
        await self.repo.forget_idempotent_responses(tenant, subject_id)
        return counts

    async def _event(self, who: Principal, event_id: uuid.UUID) -> ConsentEvent:
        ev = await self.repo.get(who.tenant, event_id)
        if ev is None:
            raise ConsentEventNotFound(f"No consent event {event_id} in this tenant")
        return ev

    async def get(self, who: Principal, event_id: uuid.UUID) -> ConsentEventOut:
        return to_out(await self._event(who, event_id))

    async def receipt(self, who: Principal, event_id: uuid.UUID) -> ConsentReceipt:
        ev = await self._event(who, event_id)
        pv = await PolicyRepository(self.session).get_version_by_key(
            who.tenant, ev.policy_key, ev.policy_version
        )
        assert pv is not None, "an event always references an existing policy version"
        resolved = pv.resolved
        purpose = next(
            (p for p in resolved.get("consent_purposes") or [] if p["key"] == ev.purpose),
            {"key": ev.purpose},
        )
        controller = resolved.get("controller") or {}
        contact = controller.get("contact_email")
        now = self.clock()
        st: ConsentState | None = await self.repo.state(
            who.tenant, ev.subject_id, ev.policy_key, ev.purpose
        )
        current = state_name(st.state, st.expires_at, now) if st is not None else "not_set"
        withdrawal = purpose.get("withdrawal_method") or (f"Contact {contact}" if contact else None)
        return ConsentReceipt.model_validate(
            {
                "receipt_id": uuid.uuid5(RECEIPT_NAMESPACE, str(ev.id)),
                "issued_at": now,
                "specification": RECEIPT_SPECIFICATION,
                "controller": {"name": controller.get("name", ""), "contact": contact},
                "subject_id": ev.subject_id,
                "purpose": {"key": ev.purpose, "description": purpose.get("description")},
                "lawful_basis": purpose.get("lawful_basis", "consent"),
                "action": ev.action,
                "state": ConsentAction(ev.action).value,
                "current_state": current,
                "occurred_at": ev.occurred_at,
                "recorded_at": ev.recorded_at,
                "source": ev.source,
                "gpc": ev.gpc,
                "policy": {
                    "key": pv.policy_key,
                    "version": pv.version,
                    "title": resolved.get("title", ""),
                    "published_at": pv.published_at,
                    "effective_at": pv.effective_at,
                },
                "jurisdiction": resolved["jurisdiction"]["regime"],
                "withdrawal_method": withdrawal,
                "retention": {
                    "consent_expires_after": purpose.get("expires_after"),
                    "consent_expires_at": ev.expires_at,
                    "record": RECORD_RETENTION,
                },
                "event_id": ev.id,
            }
        )


def _item_problem(index: int, exc: DomainError) -> dict[str, Any]:
    extra = dict(exc.extra)
    if "errors" in extra:
        extra["errors"] = [
            {**e, "loc": ["body", "events", index, *e["loc"][1:]]} for e in extra["errors"]
        ]
    return problem_body(exc.status, exc.code, exc.detail, index=index, **extra)
