"""The worker's pruning phases (DESIGN §14: the service keeps its own promises).

What goes, and when:

- `idempotency_record`: `IDEMPOTENCY_TTL_HOURS` after the first response (the read side
  already ignores an expired record, app/core/idempotency.py);
- `webhook_delivery` (with its `webhook_attempt` rows): `OUTBOX_KEEP_DAYS` after its last
  attempt, once finished (succeeded, or failed after the last attempt; a push system's jobs
  are deliveries too). A pending delivery is never touched;
- `outbox_event`: `OUTBOX_KEEP_DAYS` after it was dispatched, once no delivery refers to it
  (an event not yet fanned out, or with a delivery still kept, stays);
- task `data`: at the task's `purge_after` (closure + `fulfilment.keep_results_for`); the
  task keeps its status, counts and digest;
- `dsar_ticket`, with its timeline, tasks and reminders: `records.dsar_kept_for` after it
  closed (the worker first gives each closed ticket its `delete_after`, whichever path
  closed it, and notes the instant in the ticket's explanation);
- `breach_incident`, with its notifications and history: once closed and past `keep_until`
  (awareness + `breach.records_kept_for`; no period → kept).

Each call is one batch (`PRUNE_BATCH_SIZE` rows at most) in its own short transaction; it
reads the rows through the partial index made for it (never a scan of a hot table) and takes
them `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several workers share the work without
waiting on each other or deleting a row twice (SQLite: the write lock, one writer at a time).
Each batch appends one audit entry per tenant it touched: `data.pruned`, with the table, the
kind, how many rows and the cutoff — ids of tickets, incidents and tasks, never a subject
identifier. Audit entries themselves are never pruned, so the chain still verifies.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, exists, select, text, tuple_, update
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
from app.core.db import begin_batch
from app.core.idempotency import IdempotencyRecord, forget_where
from app.dsar.models import UNSCHEDULED_SQL, DsarEvent, DsarTicket
from app.events.models import OutboxEvent, ReminderSent
from app.events.outbox import iso
from app.fulfilment.models import FulfilmentTask, TaskStatus
from app.policies.models import PolicyVersion
from app.rules.records import dsar_delete_after
from app.webhooks.models import FINISHED_SQL, WebhookAttempt, WebhookDelivery

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
    d = WebhookDelivery
    finished = select(d.id).where(text(FINISHED_SQL), d.last_attempt_at <= cutoff)
    if not await begin_batch(session, finished.order_by(d.last_attempt_at), d.__tablename__):
        return 0
    ids = (
        await session.scalars(
            finished.order_by(d.last_attempt_at).limit(batch).with_for_update(skip_locked=True)
        )
    ).all()
    if not ids:
        await session.rollback()
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
    if not await begin_batch(session, done.order_by(e.dispatched_at), e.__tablename__):
        return 0
    ids = (
        await session.scalars(
            done.order_by(e.dispatched_at).limit(batch).with_for_update(skip_locked=True)
        )
    ).all()
    if not ids:
        await session.rollback()
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


async def schedule_tickets(session: AsyncSession, now: datetime, batch: int) -> int:
    """Closed tickets get their deletion instant from their policy version's
    `records.dsar_kept_for` (and the step that says so in their explanation)."""
    t = DsarTicket
    unscheduled = select(t.id).where(text(UNSCHEDULED_SQL))
    if not await begin_batch(session, unscheduled.order_by(t.closed_at), t.__tablename__):
        return 0
    rows = (
        await session.execute(
            select(t.id, t.tenant, t.policy_key, t.policy_version, t.closed_at, t.explanation)
            .where(text(UNSCHEDULED_SQL))
            .order_by(t.closed_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        await session.rollback()
        return 0
    pv = PolicyVersion
    wanted = sorted({(r.tenant, r.policy_key, r.policy_version) for r in rows})
    resolved = {
        (v.tenant, v.policy_key, v.version): v.resolved
        for v in await session.scalars(
            select(pv).where(tuple_(pv.tenant, pv.policy_key, pv.version).in_(wanted))
        )
    }
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
    due = select(t.id).where(t.delete_after.is_not(None), t.delete_after <= now, not_held)
    if not await begin_batch(session, due.order_by(t.delete_after), t.__tablename__):
        return 0
    rows = (
        await session.execute(
            select(t.id, t.tenant, t.created_at)
            .where(t.delete_after.is_not(None), t.delete_after <= now, not_held)
            .order_by(t.delete_after)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        await session.rollback()
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
    due = select(b.id).where(text(PRUNABLE_SQL), b.keep_until <= now)
    if not await begin_batch(session, due.order_by(b.keep_until), b.__tablename__):
        return 0
    rows = (
        await session.execute(
            select(b.id, b.tenant, b.created_at)
            .where(text(PRUNABLE_SQL), b.keep_until <= now)
            .order_by(b.keep_until)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        await session.rollback()
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

    return [
        Pruner("prune_idempotency", idem),
        Pruner("prune_deliveries", outbox_deliveries),
        Pruner("prune_outbox", events),
        Pruner("prune_task_data", data),
        Pruner("schedule_dsar_deletion", schedule),
        Pruner("prune_dsars", dsars),
        Pruner("prune_breaches", breaches),
    ]
