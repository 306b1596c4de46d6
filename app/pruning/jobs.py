"""The worker's pruning phases (DESIGN §14: the service keeps its own promises).

What goes, and when:

- `idempotency_record`: `IDEMPOTENCY_TTL_HOURS` after the first response (the read side
  already ignores an expired record, app/core/idempotency.py);
- `webhook_delivery` (with its `webhook_attempt` rows): `OUTBOX_KEEP_DAYS` after its last
  attempt, once finished (succeeded, or failed after the last attempt; a push system's jobs
  are deliveries too); one that finished without any attempt (stopped unsent when its
  receiver answered 410 Gone) after it was queued (`KEPT_FROM`, app/webhooks/models.py).
  A pending delivery is never touched;
- `outbox_event`: `OUTBOX_KEEP_DAYS` after it was dispatched, once no delivery refers to it
  (an event not yet fanned out, or with a delivery still kept, stays);
- task `data`: at the task's `purge_after` (closure + `fulfilment.keep_results_for`); the
  task keeps its status, counts and digest;
- `dsar_ticket`, with its timeline, tasks and reminders: `records.dsar_kept_for` after it
  closed (the worker first gives each closed ticket its `delete_after`, whichever path
  closed it, and notes the instant in the ticket's explanation);
- `breach_incident`, with its notifications and history: once closed and past `keep_until`
  (awareness + `breach.records_kept_for`; no period → kept);
- retention's own records (DESIGN §14): a finished sweep or retention erasure is the evidence
  that the service kept the policy's retention promise, kept as long as the records of
  requests: `records.dsar_kept_for` after it finished (`rules.records.retention_delete_after`).
  The worker first gives each finished task without a ticket its `delete_after` (and the step
  in its explanation; a retry clears it), and each settled subject expiry (acted on, or
  superseded) its own. Then `retention_sweep` goes with its task once past the task's
  `delete_after`; `retention_expiry` with its erasure tasks once past its own and all of
  theirs; `retention_event` with the last of its expiries. Never: a held, pending, in-progress
  or retrying task, an expiry not yet acted on, an event with an expiry still kept (nor one
  with no expiry at all: its rules keep the data indefinitely).

Each call is one batch (`PRUNE_BATCH_SIZE` rows at most) in its own short transaction; it
reads the rows through the partial index made for it (never a scan of a hot table) and takes
them `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several workers share the work without
waiting on each other or deleting a row twice (SQLite: the write lock, one writer at a time).
Each batch appends one audit entry per tenant it touched: `data.pruned`, with the table, the
kind, how many rows and the cutoff — ids of tickets, incidents, tasks, sweeps, expiries and
events, never a subject identifier. Audit entries themselves are never pruned, so the chain
still verifies.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, exists, or_, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import trail
from app.breaches.models import (
    PRUNABLE_SQL,
    Audience,
    BreachEvent,
    BreachIncident,
    BreachNotification,
)
from app.core.config import Settings
from app.core.db import begin_batch, take_batch
from app.core.idempotency import IdempotencyRecord, forget_where
from app.dsar.models import UNSCHEDULED_SQL, DsarEvent, DsarTicket
from app.events.models import OutboxEvent, ReminderSent
from app.events.outbox import iso
from app.fulfilment.models import (
    RETENTION_SWEEP,
    TASK_UNSCHEDULED_SQL,
    FulfilmentTask,
    TaskStatus,
)
from app.policies.models import PolicyVersion
from app.retention.models import (
    EXPIRY_UNSCHEDULED_SQL,
    RetentionEvent,
    RetentionExpiry,
    RetentionSweep,
)
from app.rules.records import dsar_delete_after, retention_delete_after
from app.webhooks.models import FINISHED_SQL, KEPT_FROM, WebhookAttempt, WebhookDelivery

ACTION = "data.pruned"
ACTOR = "worker"
DSAR_REMINDERS = ("dsar.due_soon", "dsar.overdue")
BREACH_REMINDERS = tuple(f"breach.deadline_approaching:{a.value}" for a in Audience)

# One pruning phase: (session, now) → rows handled. Commits.
Phase = Callable[[AsyncSession, datetime], Awaitable[int]]


def _audit(
    session: AsyncSession,
    counts: Counter[str],
    *,
    kind: str,
    table: str,
    cutoff: datetime,
    now: datetime,
    rule: str,
    ids: dict[str, list[str]] | None = None,
    more: dict[str, Counter[str]] | None = None,
) -> None:
    """One entry per tenant in the batch (the audit log is chained per tenant)."""
    for tenant, count in sorted(counts.items()):
        data: dict[str, Any] = {
            "kind": kind,
            "table": table,
            "count": count,
            "cutoff": iso(cutoff),
            "rule": rule,
        }
        for name, per_tenant in (more or {}).items():
            data[name] = per_tenant.get(tenant, 0)
        if ids is not None:
            data["ids"] = ids.get(tenant, [])
        trail.record(
            session,
            tenant=tenant,
            actor=ACTOR,
            action=ACTION,
            object_type="table",
            object_id=table,
            data=data,
            at=now,
        )


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


async def _deleted(session: AsyncSession, model: Any, *where: Any) -> Counter[str]:
    """Delete the rows of `model` matching `where`; how many went, per tenant."""
    return Counter(
        (
            await session.scalars(
                delete(model)
                .where(*where)
                .returning(model.tenant)
                .execution_options(synchronize_session=False)
            )
        ).all()
    )


def _by_tenant(rows: Sequence[Any]) -> dict[str, list[str]]:
    """The ids of `rows` (each with `.tenant` and `.id`), per tenant."""
    ids: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        ids[r.tenant].append(str(r.id))
    return ids


# ---- idempotency records ------------------------------------------------------------------


async def idempotency_records(
    session: AsyncSession, now: datetime, ttl: timedelta, batch: int
) -> int:
    cutoff = now - ttl
    r = IdempotencyRecord
    expired = select(r.tenant).where(r.created_at <= cutoff)
    if not await begin_batch(session, expired.order_by(r.created_at), r.__tablename__):
        return 0
    key = (r.tenant, r.operation, r.key)
    due = (
        select(*key)
        .where(r.created_at <= cutoff)
        .order_by(r.created_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    tenants = (
        await session.scalars(
            delete(r)
            .where(tuple_(*key).in_(due), r.created_at <= cutoff)
            .returning(r.tenant)
            .execution_options(synchronize_session=False)
        )
    ).all()
    counts = Counter(tenants)
    _audit(
        session,
        counts,
        kind="idempotency_record",
        table=r.__tablename__,
        cutoff=cutoff,
        now=now,
        rule=f"IDEMPOTENCY_TTL_HOURS={int(ttl.total_seconds() // 3600)}",
    )
    await session.commit()
    return len(tenants)


# ---- the outbox: finished deliveries, then events nothing refers to -----------------------


async def deliveries(session: AsyncSession, now: datetime, keep: timedelta, batch: int) -> int:
    cutoff = now - keep
    d, kept_from = WebhookDelivery, KEPT_FROM  # its last attempt, or when it was queued
    finished = select(d.id).where(text(FINISHED_SQL), kept_from <= cutoff).order_by(kept_from)
    ids = await take_batch(session, finished, d.__tablename__, batch, scalars=True)
    if not ids:
        return 0
    attempts = await _deleted(session, WebhookAttempt, WebhookAttempt.delivery_id.in_(ids))
    counts = await _deleted(session, d, d.id.in_(ids))
    _audit(
        session,
        counts,
        kind="webhook_delivery",
        table=d.__tablename__,
        cutoff=cutoff,
        now=now,
        rule=f"OUTBOX_KEEP_DAYS={keep.days}",
        more={"attempts": attempts},
    )
    await session.commit()
    return counts.total()


async def outbox_events(session: AsyncSession, now: datetime, keep: timedelta, batch: int) -> int:
    cutoff = now - keep
    e = OutboxEvent
    done = select(e.id).where(
        e.dispatched_at.is_not(None),
        e.dispatched_at <= cutoff,
        ~exists().where(WebhookDelivery.event_id == e.id),
    )
    ids = await take_batch(
        session, done.order_by(e.dispatched_at), e.__tablename__, batch, scalars=True
    )
    if not ids:
        return 0
    counts = await _deleted(session, e, e.id.in_(ids))
    _audit(
        session,
        counts,
        kind="outbox_event",
        table=e.__tablename__,
        cutoff=cutoff,
        now=now,
        rule=f"OUTBOX_KEEP_DAYS={keep.days}",
    )
    await session.commit()
    return counts.total()


# ---- task data ------------------------------------------------------------------------------


async def task_data(session: AsyncSession, now: datetime, batch: int) -> int:
    """A closed ticket's task `data` at the task's `purge_after`; status, counts and the
    result's digest stay."""
    t = FulfilmentTask
    kept = select(t.id).where(t.data_purged_at.is_(None), t.purge_after <= now)
    if not await begin_batch(session, kept.order_by(t.purge_after), t.__tablename__):
        return 0
    due = kept.order_by(t.purge_after).limit(batch).with_for_update(skip_locked=True)
    rows = (
        await session.execute(
            update(t)
            .where(t.id.in_(due.scalar_subquery()))
            .values(data=None, data_purged_at=now)
            .returning(t.tenant, t.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    ids = _by_tenant(rows)
    _audit(
        session,
        Counter({k: len(v) for k, v in ids.items()}),
        kind="task_data",
        table=t.__tablename__,
        cutoff=now,
        now=now,
        rule="fulfilment.keep_results_for",
        ids=ids,
    )
    await session.commit()
    return len(rows)


# ---- DSAR tickets ---------------------------------------------------------------------------

_TICKETS = cast(Table, DsarTicket.__table__)
_SCHEDULE = (
    update(_TICKETS)
    .where(_TICKETS.c.id == bindparam("b_id"))
    .values(
        delete_after=bindparam("b_at"),
        explanation=bindparam("b_explanation"),
        version=_TICKETS.c.version + 1,
    )
)


PolicyRef = tuple[str, str, int]  # (tenant, policy key, version)


async def _policies(
    session: AsyncSession, refs: Iterable[PolicyRef]
) -> dict[PolicyRef, Mapping[str, Any]]:
    """The resolved rules of these policy versions, in one query (versions are never
    deleted: a record always finds its own)."""
    wanted = sorted(set(refs))
    if not wanted:
        return {}
    pv = PolicyVersion
    return {
        (v.tenant, v.policy_key, v.version): v.resolved
        for v in await session.scalars(
            select(pv).where(tuple_(pv.tenant, pv.policy_key, pv.version).in_(wanted))
        )
    }


async def schedule_tickets(session: AsyncSession, now: datetime, batch: int) -> int:
    """Closed tickets get their deletion instant from their policy version's
    `records.dsar_kept_for` (and the step that says so in their explanation)."""
    t = DsarTicket
    unscheduled = (
        select(t.id, t.tenant, t.policy_key, t.policy_version, t.closed_at, t.explanation)
        .where(text(UNSCHEDULED_SQL))
        .order_by(t.closed_at)
    )
    rows = await take_batch(session, unscheduled, t.__tablename__, batch)
    if not rows:
        return 0
    resolved = await _policies(session, [(r.tenant, r.policy_key, r.policy_version) for r in rows])
    changes: list[dict[str, Any]] = []
    for r in rows:
        policy = resolved.get((r.tenant, r.policy_key, r.policy_version))
        if policy is None or r.closed_at is None:  # a ticket always has its version
            continue
        at, step = dsar_delete_after(policy, r.closed_at)
        changes.append(
            {"b_id": r.id, "b_at": at, "b_explanation": [*r.explanation, step.to_dict()]}
        )
    if changes:
        await session.execute(_SCHEDULE, changes)
    await session.commit()
    return len(changes)


async def _forget_recent(
    session: AsyncSession,
    rows: Sequence[Any],
    now: datetime,
    ttl: timedelta,
    path: str,
) -> None:
    """A stored response naming a deleted object must not replay it: only an object created
    within the idempotency window can still have one (rare: a records period that short)."""
    recent: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r.created_at > now - ttl:
            recent[r.tenant].append(f"{path}/{r.id}")
    for tenant, locations in recent.items():
        await forget_where(session, tenant, IdempotencyRecord.location.in_(locations))


async def _forget_reminders(
    session: AsyncSession, rows: Sequence[Any], kinds: Sequence[str]
) -> None:
    by_tenant: dict[str, list[uuid.UUID]] = defaultdict(list)
    for r in rows:
        by_tenant[r.tenant].append(r.id)
    for tenant, ids in by_tenant.items():
        # (tenant, kind, object_id) is the primary key's prefix: an index range per kind
        await session.execute(
            delete(ReminderSent)
            .where(
                ReminderSent.tenant == tenant,
                ReminderSent.kind.in_(list(kinds)),
                ReminderSent.object_id.in_(ids),
            )
            .execution_options(synchronize_session=False)
        )


async def _delete_records(
    session: AsyncSession,
    rows: Sequence[Any],
    model: Any,
    *,
    dependants: dict[str, tuple[Any, Any]],
    reminders: Sequence[str],
    path: str,
    rule: str,
    now: datetime,
    idempotency_ttl: timedelta,
) -> None:
    """Delete the locked `rows` of `model` (tickets, incidents) with what hangs on them: the
    `dependants` (name → (table, its column naming the record)), their reminders and a stored
    response that would replay them; one audit entry per tenant; commit."""
    ids = [r.id for r in rows]
    gone = {
        name: await _deleted(session, dep, col.in_(ids)) for name, (dep, col) in dependants.items()
    }
    await _forget_reminders(session, rows, reminders)
    await _forget_recent(session, rows, now, idempotency_ttl, path)
    await session.execute(
        delete(model).where(model.id.in_(ids)).execution_options(synchronize_session=False)
    )
    by_tenant = _by_tenant(rows)
    _audit(
        session,
        Counter({k: len(v) for k, v in by_tenant.items()}),
        kind=model.__tablename__,
        table=model.__tablename__,
        cutoff=now,
        now=now,
        rule=rule,
        ids=by_tenant,
        more=gone,
    )
    await session.commit()


async def tickets(
    session: AsyncSession, now: datetime, batch: int, idempotency_ttl: timedelta
) -> int:
    """Closed tickets past their `delete_after`, with everything that hangs on them; a
    ticket whose task a legal hold postpones stays until the hold ends and the task runs
    (DESIGN §14: deleting it would drop the postponed erasure)."""
    t = DsarTicket
    not_held = ~exists().where(
        FulfilmentTask.dsar_id == t.id, FulfilmentTask.status == TaskStatus.held
    )
    due = (
        select(t.id, t.tenant, t.created_at)
        .where(t.delete_after.is_not(None), t.delete_after <= now, not_held)
        .order_by(t.delete_after)
    )
    rows = await take_batch(session, due, t.__tablename__, batch)
    if not rows:
        return 0
    await _delete_records(
        session,
        rows,
        t,
        dependants={
            "events": (DsarEvent, DsarEvent.ticket_id),
            "tasks": (FulfilmentTask, FulfilmentTask.dsar_id),
        },
        reminders=DSAR_REMINDERS,
        path="/v1/dsars",
        rule="records.dsar_kept_for",
        now=now,
        idempotency_ttl=idempotency_ttl,
    )
    return len(rows)


# ---- breach incidents -----------------------------------------------------------------------


async def incidents(
    session: AsyncSession, now: datetime, batch: int, idempotency_ttl: timedelta
) -> int:
    """Closed incidents past `keep_until`, with their notifications and history."""
    b = BreachIncident
    due = (
        select(b.id, b.tenant, b.created_at)
        .where(text(PRUNABLE_SQL), b.keep_until <= now)
        .order_by(b.keep_until)
    )
    rows = await take_batch(session, due, b.__tablename__, batch)
    if not rows:
        return 0
    await _delete_records(
        session,
        rows,
        b,
        dependants={
            "notifications": (BreachNotification, BreachNotification.incident_id),
            "events": (BreachEvent, BreachEvent.incident_id),
        },
        reminders=BREACH_REMINDERS,
        path="/v1/breaches",
        rule="breach.records_kept_for",
        now=now,
        idempotency_ttl=idempotency_ttl,
    )
    return len(rows)


# ---- retention's own records -------------------------------------------------------------------

RULE_RETENTION = "records.dsar_kept_for"
_TASKS = cast(Table, FulfilmentTask.__table__)
_SCHEDULE_TASK = (
    update(_TASKS)
    .where(_TASKS.c.id == bindparam("b_id"))
    .values(
        delete_after=bindparam("b_at"),
        explanation=bindparam("b_explanation"),
        version=_TASKS.c.version + 1,
    )
)
_EXPIRIES = cast(Table, RetentionExpiry.__table__)
_SCHEDULE_EXPIRY = (
    update(_EXPIRIES)
    .where(_EXPIRIES.c.id == bindparam("b_id"))
    .values(delete_after=bindparam("b_at"))
)


def _task_policy(tenant: str, retention: Mapping[str, Any] | None) -> PolicyRef:
    """The policy version a retention task acts for (its sweep's, or its expiry's)."""
    ref = retention or {}
    return (tenant, str(ref.get("policy_key")), int(ref.get("policy_version") or 0))


async def schedule_retention_tasks(session: AsyncSession, now: datetime, batch: int) -> int:
    """Finished tasks without a ticket (sweeps and retention erasures) get their deletion
    instant: their policy version's `records.dsar_kept_for` after they finished, and the step
    that says so in their explanation. When they finished is their last change: a finished
    task changes no more (a subject's erasure renaming it can only move it later), until an
    operator's retry reopens it and clears the instant."""
    t = FulfilmentTask
    unscheduled = (
        select(t.id, t.tenant, t.retention, t.updated_at, t.explanation)
        .where(text(TASK_UNSCHEDULED_SQL))
        .order_by(t.updated_at)
    )
    rows = await take_batch(session, unscheduled, t.__tablename__, batch)
    if not rows:
        return 0
    resolved = await _policies(session, [_task_policy(r.tenant, r.retention) for r in rows])
    changes: list[dict[str, Any]] = []
    for r in rows:
        policy = resolved.get(_task_policy(r.tenant, r.retention))
        if policy is None:  # a retention task always names its policy version
            continue
        at, step = retention_delete_after(policy, r.updated_at)
        changes.append(
            {"b_id": r.id, "b_at": at, "b_explanation": [*r.explanation, step.to_dict()]}
        )
    if changes:
        await session.execute(_SCHEDULE_TASK, changes)
    await session.commit()
    return len(changes)


async def schedule_retention_expiries(session: AsyncSession, now: datetime, batch: int) -> int:
    """Settled subject expiries (acted on, or superseded) get their deletion instant: their
    policy version's `records.dsar_kept_for` after they settled. Their erasure tasks keep
    them longer if they finished later (`retention_expiries` waits for every one)."""
    e = RetentionExpiry
    unscheduled = (
        select(e.id, e.tenant, e.policy_key, e.policy_version, e.tasks_created_at, e.superseded_at)
        .where(text(EXPIRY_UNSCHEDULED_SQL))
        .order_by(e.created_at)
    )
    rows = await take_batch(session, unscheduled, e.__tablename__, batch)
    if not rows:
        return 0
    resolved = await _policies(session, [(r.tenant, r.policy_key, r.policy_version) for r in rows])
    changes: list[dict[str, Any]] = []
    for r in rows:
        policy = resolved.get((r.tenant, r.policy_key, r.policy_version))
        settled = r.superseded_at or r.tasks_created_at
        if policy is None or settled is None:  # (the index holds settled expiries only)
            continue
        at, _ = retention_delete_after(policy, settled)
        changes.append({"b_id": r.id, "b_at": at})
    if changes:
        await session.execute(_SCHEDULE_EXPIRY, changes)
    await session.commit()
    return len(changes)


async def retention_sweeps(session: AsyncSession, now: datetime, batch: int) -> int:
    """Sweeps whose task is past its `delete_after`, with the task (a sweep has exactly one:
    it is created for one system, with its task, in one transaction)."""
    t = FulfilmentTask
    due = (t.type == RETENTION_SWEEP, t.delete_after.is_not(None), t.delete_after <= now)
    pending = select(t.id, t.tenant, t.retention_ref).where(*due).order_by(t.delete_after)
    rows = await take_batch(session, pending, t.__tablename__, batch)
    if not rows:
        return 0
    tasks = await _deleted(session, t, t.id.in_([r.id for r in rows]))
    sweeps = (
        await session.execute(
            delete(RetentionSweep)
            .where(RetentionSweep.id.in_([r.retention_ref for r in rows]))
            .returning(RetentionSweep.tenant, RetentionSweep.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    ids = _by_tenant(sweeps)
    _audit(
        session,
        Counter({k: len(v) for k, v in ids.items()}),
        kind="retention_sweep",
        table=RetentionSweep.__tablename__,
        cutoff=now,
        now=now,
        rule=RULE_RETENTION,
        ids=ids,
        more={"tasks": tasks},
    )
    await session.commit()
    return len(rows)


async def retention_expiries(session: AsyncSession, now: datetime, batch: int) -> int:
    """Subject expiries past their `delete_after` whose erasure tasks are all past theirs,
    with those tasks; an event goes with the last of its expiries (one whose other expiry is
    still kept stays, so that its record of the trigger outlives every consequence)."""
    e, t = RetentionExpiry, FulfilmentTask
    task_kept = exists().where(
        t.retention_ref == e.id, or_(t.delete_after.is_(None), t.delete_after > now)
    )
    due = (e.delete_after.is_not(None), e.delete_after <= now, ~task_kept)
    pending = select(e.id, e.tenant, e.event_id).where(*due).order_by(e.delete_after)
    rows: Sequence[Any] = await take_batch(session, pending, e.__tablename__, batch)
    if not rows:
        return 0
    # Their tasks, locked: an operator's retry now waits for this batch, and one that
    # reopened a task before the lock leaves its expiry to a later round.
    reopened = {
        ref
        for ref, at in (
            await session.execute(
                select(t.retention_ref, t.delete_after)
                .where(t.retention_ref.in_([r.id for r in rows]))
                .order_by(t.id)
                .with_for_update()
            )
        ).all()
        if at is None or at > now
    }
    # Their events, locked without waiting: an event another batch holds (a sibling
    # expiry's, or its subject's erasure) leaves these expiries to a later round, so that the
    # last of an event's expiries always sees the others gone.
    events = set(
        (
            await session.scalars(
                select(RetentionEvent.id)
                .where(RetentionEvent.id.in_({r.event_id for r in rows if r.id not in reopened}))
                .order_by(RetentionEvent.id)
                .with_for_update(skip_locked=True)
            )
        ).all()
    )
    rows = [r for r in rows if r.id not in reopened and r.event_id in events]
    if not rows:
        await session.rollback()
        return 0
    ids = [r.id for r in rows]
    tasks = await _deleted(session, t, t.retention_ref.in_(ids))
    await session.execute(
        delete(e).where(e.id.in_(ids)).execution_options(synchronize_session=False)
    )
    ev = RetentionEvent
    orphaned = (
        await session.execute(
            delete(ev)
            .where(
                ev.id.in_({r.event_id for r in rows}),
                ~exists().where(RetentionExpiry.event_id == ev.id),
            )
            .returning(ev.tenant, ev.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    expiries = _by_tenant(rows)
    events_by_tenant = _by_tenant(orphaned)
    _audit(
        session,
        Counter({k: len(v) for k, v in expiries.items()}),
        kind="retention_expiry",
        table=e.__tablename__,
        cutoff=now,
        now=now,
        rule=RULE_RETENTION,
        ids=expiries,
        more={"tasks": tasks, "events": Counter(r.tenant for r in orphaned)},
    )
    _audit(
        session,
        Counter({k: len(v) for k, v in events_by_tenant.items()}),
        kind="retention_event",
        table=ev.__tablename__,
        cutoff=now,
        now=now,
        rule=RULE_RETENTION,
        ids=events_by_tenant,
    )
    await session.commit()
    return len(rows)


# ---- the worker's list ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pruner:
    name: str
    run: Phase


def phases(settings: Settings) -> list[Pruner]:
    """The pruning phases in the order a worker round runs them, one batch each."""
    n = settings.prune_batch_size
    ttl, keep = settings.idempotency_ttl, settings.outbox_keep

    def idem(s: AsyncSession, now: datetime) -> Awaitable[int]:
        return idempotency_records(s, now, ttl, n)

    def outbox_deliveries(s: AsyncSession, now: datetime) -> Awaitable[int]:
        return deliveries(s, now, keep, n)

    def events(s: AsyncSession, now: datetime) -> Awaitable[int]:
        return outbox_events(s, now, keep, n)

    def data(s: AsyncSession, now: datetime) -> Awaitable[int]:
        return task_data(s, now, n)

    def schedule(s: AsyncSession, now: datetime) -> Awaitable[int]:
        return schedule_tickets(s, now, n)

    def dsars(s: AsyncSession, now: datetime) -> Awaitable[int]:
        return tickets(s, now, n, ttl)

    def breaches(s: AsyncSession, now: datetime) -> Awaitable[int]:
        return incidents(s, now, n, ttl)

    def schedule_tasks(s: AsyncSession, now: datetime) -> Awaitable[int]:
        return schedule_retention_tasks(s, now, n)

    def schedule_expiries(s: AsyncSession, now: datetime) -> Awaitable[int]:
        return schedule_retention_expiries(s, now, n)

    def sweeps(s: AsyncSession, now: datetime) -> Awaitable[int]:
        return retention_sweeps(s, now, n)

    def expiries(s: AsyncSession, now: datetime) -> Awaitable[int]:
        return retention_expiries(s, now, n)

    return [
        Pruner("prune_idempotency", idem),
        Pruner("prune_deliveries", outbox_deliveries),
        Pruner("prune_outbox", events),
        Pruner("prune_task_data", data),
        Pruner("schedule_dsar_deletion", schedule),
        Pruner("prune_dsars", dsars),
        Pruner("prune_breaches", breaches),
        Pruner("schedule_retention_task_deletion", schedule_tasks),
        Pruner("schedule_retention_expiry_deletion", schedule_expiries),
        Pruner("prune_retention_sweeps", sweeps),
        Pruner("prune_retention_expiries", expiries),
    ]
