"""Consent persistence, always scoped by tenant. Flushes, never commits.

The write path sends the event rows, the projection upsert (and, for a single event, the
idempotency record) as ONE statement on PostgreSQL: a data-modifying CTE over `unnest`ed
arrays, so a batch of 1,000 is one round trip with ten array parameters. SQLite has no
data-modifying CTE: there it is one multi-row INSERT and one multi-row upsert.

The upsert only overwrites a state with a newer one: `(since, event_id)` compared as a row,
so a late event older than the recorded state changes nothing (and is not RETURNed).

The same statement appends one audit entry per event and one `consent.changed` outbox row
per state that moved (DESIGN §9: one round trip for event, projection, audit and outbox).
Their JSON is built here, in Python, so both databases store the same text. The audit data
carries ids, purposes and states, never the subject identifier; the `consent.changed` payload
names the subject (its receiver needs it), and erasure rewrites it to the pseudonym.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from pydantic_core import to_json
from sqlalchemy import (
    and_,
    exists,
    func,
    insert,
    select,
    text,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.audit import trail
from app.consent.models import ConsentEvent, ConsentState
from app.core import idempotency
from app.core.db import is_postgres
from app.core.idempotency import IdempotencyRecord, Idempotent
from app.core.instants import utc_text
from app.core.pagination import seek
from app.core.uow import UnitOfWork
from app.events import outbox
from app.policies.cache import PURPOSES, PurposeRow
from app.policies.models import PolicyVersion


@dataclass(slots=True)
class NewEvent:
    id: uuid.UUID
    policy_key: str
    policy_version: int
    subject_id: str
    purpose: str
    action: str
    occurred_at: datetime
    source: str | None
    proof: dict[str, Any] | None
    gpc: bool
    expires_at: datetime | None
    # Their text forms, computed once: the PostgreSQL write sends each in up to four documents.
    id_text: str = field(init=False)
    occurred_text: str = field(init=False)
    expires_text: str | None = field(init=False)

    def __post_init__(self) -> None:
        self.id_text = str(self.id)
        self.occurred_text = utc_text(self.occurred_at)
        self.expires_text = utc_text(self.expires_at) if self.expires_at is not None else None

    @property
    def state_key(self) -> tuple[str, str, str]:
        return (self.subject_id, self.policy_key, self.purpose)


@dataclass(slots=True)
class IdemRow:
    """The key's stored answer, written in the same statement as the event."""

    idem: Idempotent
    status_code: int
    body: dict[str, Any]
    location: str | None
    current_flag_for: uuid.UUID  # the body's `became_current` is that event's outcome


def winners(events: Sequence[NewEvent]) -> list[NewEvent]:
    """Per state key, the event the projection should end on: newest `occurred_at`, then
    greatest id. (One upsert statement may not touch a row twice.)"""
    best: dict[tuple[str, str, str], NewEvent] = {}
    for ev in events:
        cur = best.get(ev.state_key)
        if cur is None or (ev.occurred_at, ev.id) > (cur.occurred_at, cur.id):
            best[ev.state_key] = ev
    return list(best.values())


def audit_data(e: NewEvent) -> dict[str, Any]:
    return {
        "id": e.id_text,
        "policy_key": e.policy_key,
        "policy_version": e.policy_version,
        "purpose": e.purpose,
        "action": e.action,
        "occurred_at": e.occurred_text,
        "gpc": e.gpc,
    }


def changed_data(e: NewEvent) -> dict[str, Any]:
    """`consent.changed`: whose consent to what is now in which state, and the event that
    decided it, so that a receiver can act without calling back."""
    return {
        "event_id": e.id_text,
        "subject_id": e.subject_id,
        "policy_key": e.policy_key,
        "policy_version": e.policy_version,
        "purpose": e.purpose,
        "state": e.action,
        "since": e.occurred_text,
        "expires_at": e.expires_text,
    }


def _json(value: Any) -> str:
    # pydantic-core's encoder: about four times json.dumps on a batch's documents
    return to_json(value).decode()


# The whole write travels as four JSON documents (events, winning states, audit data, outbox
# data) expanded by jsonb_to_recordset / jsonb_array_elements: one parameter each, parsed by
# the server, instead of two dozen arrays encoded element by element by the driver.
_PG_EVENTS = """
ev AS (
    INSERT INTO consent_event (id, tenant, policy_key, policy_version, subject_id, purpose,
        action, occurred_at, expires_at, recorded_at, source, proof, gpc, erased, actor)
    SELECT u.id, :tenant, u.policy_key, u.policy_version, u.subject_id, u.purpose, u.action,
        u.occurred_at, u.expires_at, :recorded_at, u.source, u.proof, u.gpc, false, :actor
    FROM jsonb_to_recordset(CAST(:events AS jsonb)) AS u(id uuid, policy_key varchar,
        policy_version integer, subject_id varchar, purpose varchar, action varchar,
        occurred_at timestamptz, expires_at timestamptz, source varchar, proof jsonb,
        gpc boolean)
)"""

_PG_STATES = """
st AS (
    INSERT INTO consent_state AS cs (tenant, subject_id, policy_key, purpose, state, since,
        event_id, expires_at)
    SELECT :tenant, s.subject_id, s.policy_key, s.purpose, s.state, s.since, s.event_id,
        s.expires_at
    FROM jsonb_to_recordset(CAST(:states AS jsonb)) AS s(subject_id varchar,
        policy_key varchar, purpose varchar, state varchar, since timestamptz, event_id uuid,
        expires_at timestamptz)
    ON CONFLICT (tenant, subject_id, policy_key, purpose) DO UPDATE
        SET state = excluded.state, since = excluded.since, event_id = excluded.event_id,
            expires_at = excluded.expires_at
        WHERE (cs.since, cs.event_id) < (excluded.since, excluded.event_id)
    RETURNING cs.event_id
)"""

# The other tables' parts come from their owners (each table's row is written in one module).
_PG_IDEM = idempotency.insert_cte(
    "idem",
    tenant=":tenant",
    at=":recorded_at",
    # the stored answer's `became_current` is the outcome of the flagged event
    response_body="jsonb_set("
    + idempotency.STORED_BODY
    + ", '{became_current}', to_jsonb(EXISTS (SELECT 1 FROM st WHERE st.event_id = :i_event)))",
)
_PG_AUDIT = trail.insert_cte(
    "au",
    tenant=":tenant",
    at=":recorded_at",
    actor=":actor",
    action="'consent.recorded'",
    object_type="'consent_event'",
    object_id="a.doc ->> 'id'",
    data="a.doc -> 'data'",
    source="jsonb_array_elements(CAST(:audit AS jsonb)) WITH ORDINALITY AS a(doc, n)",
    order_by="a.n",
)
_PG_OUTBOX = outbox.insert_cte(
    "ob",
    tenant=":tenant",
    type="consent.changed",
    data="o.doc -> 'data'",
    at=":recorded_at",
    source="jsonb_array_elements(CAST(:outbox AS jsonb)) WITH ORDINALITY AS o(doc, n)",
    where="CAST(o.doc ->> 'event_id' AS uuid) IN (SELECT event_id FROM st)",
    order_by="o.n",
)

_PG_APPEND = text(
    f"WITH {_PG_EVENTS},{_PG_STATES},{_PG_AUDIT},{_PG_OUTBOX}\nSELECT event_id FROM st"
)
_PG_APPEND_IDEM = text(
    f"WITH {_PG_EVENTS},{_PG_STATES},{_PG_AUDIT},{_PG_OUTBOX},{_PG_IDEM}\nSELECT event_id FROM st"
)


_PG_PURPOSES_AND_STATES = text(
    """
SELECT 'v' AS kind, policy_key, version, effective_at,
    CAST(resolved -> 'consent_purposes' AS text) AS purposes, NULL AS purpose, NULL AS state,
    NULL AS since, NULL AS expires_at, NULL AS event_id
FROM policy_version
WHERE tenant = :tenant AND (CAST(:policy_key AS varchar) IS NULL OR policy_key = :policy_key)
UNION ALL
SELECT 's', policy_key, NULL, NULL, NULL, purpose, state, since, expires_at, event_id
FROM consent_state
WHERE tenant = :tenant AND subject_id = :subject_id
    AND (CAST(:policy_key AS varchar) IS NULL OR policy_key = :policy_key)
"""
)


_PG_STATES_OF_SUBJECT = text(
    """
SELECT policy_key, purpose, state, since, expires_at, event_id FROM consent_state
WHERE tenant = :tenant AND subject_id = :subject_id
"""
)


_PG_OUTBOX_PSEUDONYMISE = text(
    """
UPDATE outbox_event SET data = jsonb_set(data, '{subject_id}', to_jsonb(CAST(:pseudonym AS text)))
WHERE tenant = :tenant AND type = 'consent.changed' AND data ->> 'subject_id' = :subject_id
"""
)
_SQLITE_OUTBOX_PSEUDONYMISE = text(
    """
UPDATE outbox_event SET data = json_set(data, '$.subject_id', :pseudonym)
WHERE tenant = :tenant AND type = 'consent.changed'
    AND json_extract(data, '$.subject_id') = :subject_id
"""
)


class StateRow(NamedTuple):
    policy_key: str
    purpose: str
    state: str
    since: datetime
    expires_at: datetime | None
    event_id: uuid.UUID


class ConsentRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.session = uow.session
        self.is_pg = is_postgres(self.session)

    # ---- writes ---------------------------------------------------------------------------

    async def append(
        self,
        tenant: str,
        actor: str,
        recorded_at: datetime,
        events: Sequence[NewEvent],
        idem: IdemRow | None = None,
    ) -> set[uuid.UUID]:
        """Insert the events and move the projection forward; returns the ids of the events
        that became the current state."""
        if not events:
            return set()
        top = winners(events)
        if self.is_pg:
            return await self._append_pg(tenant, actor, recorded_at, events, top, idem)
        return await self._append_sqlite(tenant, actor, recorded_at, events, top, idem)

    async def _append_pg(
        self,
        tenant: str,
        actor: str,
        recorded_at: datetime,
        events: Sequence[NewEvent],
        top: Sequence[NewEvent],
        idem: IdemRow | None,
    ) -> set[uuid.UUID]:
        params: dict[str, Any] = {
            "tenant": tenant,
            "actor": actor,
            "recorded_at": recorded_at,
            "events": _json(
                [
                    {
                        "id": e.id_text,
                        "policy_key": e.policy_key,
                        "policy_version": e.policy_version,
                        "subject_id": e.subject_id,
                        "purpose": e.purpose,
                        "action": e.action,
                        "occurred_at": e.occurred_text,
                        "expires_at": e.expires_text,
                        "source": e.source,
                        "proof": e.proof,
                        "gpc": e.gpc,
                    }
                    for e in events
                ]
            ),
            "states": _json(
                [
                    {
                        "subject_id": e.subject_id,
                        "policy_key": e.policy_key,
                        "purpose": e.purpose,
                        "state": e.action,
                        "since": e.occurred_text,
                        "event_id": e.id_text,
                        "expires_at": e.expires_text,
                    }
                    for e in top
                ]
            ),
            "audit": _json([{"id": e.id_text, "data": audit_data(e)} for e in events]),
            "outbox": _json([{"event_id": e.id_text, "data": changed_data(e)} for e in top]),
        }
        stmt = _PG_APPEND
        if idem is not None:
            stmt = _PG_APPEND_IDEM
            params.update(
                idem.idem.cte_params(idem.status_code, _json(idem.body), idem.location),
                i_event=idem.current_flag_for,
            )
        # the whole write: alone on the bare pool unless the unit holds the key's lock
        return {r[0] for r in await self.uow.execute_alone(stmt, params)}

    async def _append_sqlite(
        self,
        tenant: str,
        actor: str,
        recorded_at: datetime,
        events: Sequence[NewEvent],
        top: Sequence[NewEvent],
        idem: IdemRow | None,
    ) -> set[uuid.UUID]:
        await self.session.execute(
            insert(ConsentEvent).values(
                [
                    {
                        "id": e.id,
                        "tenant": tenant,
                        "policy_key": e.policy_key,
                        "policy_version": e.policy_version,
                        "subject_id": e.subject_id,
                        "purpose": e.purpose,
                        "action": e.action,
                        "occurred_at": e.occurred_at,
                        "expires_at": e.expires_at,
                        "recorded_at": recorded_at,
                        "source": e.source,
                        "proof": e.proof,
                        "gpc": e.gpc,
                        "erased": False,
                        "actor": actor,
                    }
                    for e in events
                ]
            )
        )
        stmt = sqlite_insert(ConsentState).values(
            [
                {
                    "tenant": tenant,
                    "subject_id": e.subject_id,
                    "policy_key": e.policy_key,
                    "purpose": e.purpose,
                    "state": e.action,
                    "since": e.occurred_at,
                    "event_id": e.id,
                    "expires_at": e.expires_at,
                }
                for e in top
            ]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant", "subject_id", "policy_key", "purpose"],
            set_={
                "state": stmt.excluded.state,
                "since": stmt.excluded.since,
                "event_id": stmt.excluded.event_id,
                "expires_at": stmt.excluded.expires_at,
            },
            where=tuple_(ConsentState.since, ConsentState.event_id)
            < tuple_(stmt.excluded.since, stmt.excluded.event_id),
        )
        rows = await self.session.execute(stmt.returning(ConsentState.event_id))
        current = {r[0] for r in rows}
        await trail.record_many(
            self.session,
            [
                trail.entry(
                    tenant=tenant,
                    actor=actor,
                    action="consent.recorded",
                    object_type="consent_event",
                    object_id=e.id,
                    data=audit_data(e),
                    at=recorded_at,
                )
                for e in events
            ],
        )
        await outbox.emit_many(
            self.session,
            [
                outbox.row(tenant, "consent.changed", changed_data(e), recorded_at)
                for e in top
                if e.id in current
            ],
        )
        if idem is not None:
            body = dict(idem.body)
            body["became_current"] = idem.current_flag_for in current
            idem.idem.remember(idem.status_code, body, idem.location, recorded_at)
            await self.session.flush()
        return current

    # ---- reads ----------------------------------------------------------------------------

    async def get(self, tenant: str, event_id: uuid.UUID) -> ConsentEvent | None:
        return await self.session.scalar(
            select(ConsentEvent).where(ConsentEvent.tenant == tenant, ConsentEvent.id == event_id)
        )

    async def states(
        self, tenant: str, subject_id: str, policy_key: str | None = None
    ) -> Sequence[ConsentState]:
        stmt = select(ConsentState).where(
            ConsentState.tenant == tenant, ConsentState.subject_id == subject_id
        )
        if policy_key is not None:
            stmt = stmt.where(ConsentState.policy_key == policy_key)
        return (await self.session.scalars(stmt)).all()

    async def purposes_and_states(
        self, tenant: str, subject_id: str, policy_key: str | None
    ) -> tuple[list[PurposeRow], Sequence[Any]]:
        """`policy_purposes` and `states` together; on PostgreSQL in one statement on the bare
        pool, or only the subject's rows when the tenant's purposes are cached
        (policies.cache.PURPOSES). States come as rows with policy_key, purpose, state, since,
        expires_at and event_id."""
        cached = PURPOSES.get(tenant) if policy_key is None else None
        stamp = PURPOSES.stamp()
        records = None
        if self.is_pg and cached is not None:
            # the subject's rows only: the same query as a bare endpoint's
            records = await self.uow.read(
                _PG_STATES_OF_SUBJECT, {"tenant": tenant, "subject_id": subject_id}
            )
            if records is not None:
                return list(cached), [StateRow(*r) for r in records]
        elif self.is_pg:
            records = await self.uow.read(
                _PG_PURPOSES_AND_STATES,
                {"tenant": tenant, "subject_id": subject_id, "policy_key": policy_key},
            )
        if records is None:  # through the session
            if cached is not None:
                rows = list(cached)
            else:
                rows = list(await self.policy_purposes(tenant, policy_key))
                if policy_key is None:
                    PURPOSES.put(tenant, rows, stamp)
            return rows, await self.states(tenant, subject_id, policy_key)
        versions: list[PurposeRow] = []
        states: list[StateRow] = []
        for r in records:
            if r["kind"] == "v":
                purposes = json.loads(r["purposes"]) if r["purposes"] is not None else None
                versions.append((r["policy_key"], r["version"], r["effective_at"], purposes))
            else:
                states.append(
                    StateRow(
                        r["policy_key"],
                        r["purpose"],
                        r["state"],
                        r["since"],
                        r["expires_at"],
                        r["event_id"],
                    )
                )
        if policy_key is None:
            PURPOSES.put(tenant, versions, stamp)
        return versions, states

    async def state(
        self, tenant: str, subject_id: str, policy_key: str, purpose: str
    ) -> ConsentState | None:
        return await self.session.get(ConsentState, (tenant, subject_id, policy_key, purpose))

    async def policy_purposes(
        self, tenant: str, policy_key: str | None
    ) -> list[tuple[str, int, datetime, Any]]:
        """Every version of the tenant's policies (or one policy), with its consent purposes
        only: (policy_key, version, effective_at, consent_purposes). Versions are few."""
        stmt = select(
            PolicyVersion.policy_key,
            PolicyVersion.version,
            PolicyVersion.effective_at,
            PolicyVersion.resolved["consent_purposes"],
        ).where(PolicyVersion.tenant == tenant)
        if policy_key is not None:
            stmt = stmt.where(PolicyVersion.policy_key == policy_key)
        return [(r[0], r[1], r[2], r[3]) for r in await self.session.execute(stmt)]

    async def history(
        self,
        tenant: str,
        *,
        subject_id: str | None,
        purpose: str | None,
        policy_key: str | None,
        since: datetime | None,
        before: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[ConsentEvent]:
        stmt = select(ConsentEvent).where(ConsentEvent.tenant == tenant)
        if subject_id is not None:
            stmt = stmt.where(ConsentEvent.subject_id == subject_id)
        if purpose is not None:
            stmt = stmt.where(ConsentEvent.purpose == purpose)
        if policy_key is not None:
            stmt = stmt.where(ConsentEvent.policy_key == policy_key)
        if since is not None:
            stmt = stmt.where(ConsentEvent.occurred_at >= since)
        stmt = seek(stmt, ConsentEvent.occurred_at, ConsentEvent.id, before, limit, descending=True)
        return (await self.session.scalars(stmt)).all()

    async def events_until(
        self, tenant: str, subject_id: str, until: datetime, policy_key: str | None
    ) -> Sequence[ConsentEvent]:
        stmt = select(ConsentEvent).where(
            ConsentEvent.tenant == tenant,
            ConsentEvent.subject_id == subject_id,
            ConsentEvent.occurred_at <= until,
        )
        if policy_key is not None:
            stmt = stmt.where(ConsentEvent.policy_key == policy_key)
        stmt = stmt.order_by(ConsentEvent.occurred_at, ConsentEvent.id)
        return (await self.session.scalars(stmt)).all()

    async def events_of_subject(self, tenant: str, subject_id: str) -> Sequence[ConsentEvent]:
        stmt = (
            select(ConsentEvent)
            .where(ConsentEvent.tenant == tenant, ConsentEvent.subject_id == subject_id)
            .order_by(ConsentEvent.occurred_at, ConsentEvent.id)
        )
        return (await self.session.scalars(stmt)).all()

    async def subject_known(self, tenant: str, subject_id: str) -> bool:
        found = await self.session.scalar(
            select(
                exists().where(ConsentEvent.tenant == tenant, ConsentEvent.subject_id == subject_id)
            )
        )
        return bool(found)

    # ---- erasure --------------------------------------------------------------------------

    async def pseudonymise(self, tenant: str, subject_id: str, pseudonym: str) -> tuple[int, int]:
        """Rewrite the subject's identifier in the ledger and the projection; (events, states)."""
        events = await self.session.execute(
            update(ConsentEvent)
            .where(ConsentEvent.tenant == tenant, ConsentEvent.subject_id == subject_id)
            .values(subject_id=pseudonym, erased=True)
            .execution_options(synchronize_session=False)
        )
        states = await self.session.execute(
            update(ConsentState)
            .where(ConsentState.tenant == tenant, ConsentState.subject_id == subject_id)
            .values(subject_id=pseudonym)
            .execution_options(synchronize_session=False)
        )
        # `consent.changed` payloads name the subject: the outbox rows (kept after delivery,
        # and those still to be sent) carry the pseudonym from now on.
        await self.session.execute(
            _PG_OUTBOX_PSEUDONYMISE if self.is_pg else _SQLITE_OUTBOX_PSEUDONYMISE,
            {"tenant": tenant, "subject_id": subject_id, "pseudonym": pseudonym},
        )
        return int(events.rowcount), int(states.rowcount)  # type: ignore[attr-defined]

    async def forget_idempotent_responses(self, tenant: str, subject_id: str) -> int:
        """Stored responses of consent writes that carry the subject's identifier (single
        events and batches): a replay after erasure would otherwise give it back."""
        body = IdempotencyRecord.response_body
        single = and_(
            IdempotencyRecord.operation == "recordConsentEvent",
            body["subject_id"].as_string() == subject_id,
        )
        if self.is_pg:
            batch = and_(
                IdempotencyRecord.operation == "recordConsentEventsBatch",
                type_coerce(body, JSONB).contains({"results": [{"subject_id": subject_id}]}),
            )
        else:
            each = func.json_each(IdempotencyRecord.response_body, "$.results").table_valued(
                "value"
            )
            batch = and_(
                IdempotencyRecord.operation == "recordConsentEventsBatch",
                exists(
                    select(1)
                    .select_from(each)
                    .where(func.json_extract(each.c.value, "$.subject_id") == subject_id)
                ),
            )
        return await idempotency.forget_where(self.session, tenant, single, batch)
