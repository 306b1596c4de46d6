"""Retention's work (DESIGN §14), shared by the worker and `POST /v1/retention/sweeps/run`.
Each function is one short transaction and commits.

- `create_sweeps`: today's sweep per (system, category held, rule triggered by `collected` or
  `last_activity`), one per (system, category, local day) by the unique constraint: the
  round's rows go in with one INSERT … ON CONFLICT DO NOTHING (in one order, so that
  concurrent rounds never deadlock), so any number of workers create each one once. A
  category under a hold of everyone's records gets no sweep while the hold lasts (the next
  round after it ends creates the day's sweep); held subjects are listed in `holds`.
- `create_erasures`: a subject expiry that has passed becomes one `retention_erasure` task per
  system holding the category, once (rows locked SKIP LOCKED, `tasks_created_at`, and the
  tasks' unique (retention_ref, system_id)); a task a hold covers is created `held`.
- `end_holds`: holds whose `until` has passed are released (each audited), and the held tasks
  of their tenants are looked at again (one batch across tenants).
- `release_held`: a held task no active hold covers any more goes to pending (a push system
  gets its job); one still covered waits for the end of its holds.

Tasks are written as `fanout.task_row` rows (the one shape of a task, with the DSAR fan-out),
and a hold's explanation step is `holds.step`. Deleting retention's finished records is a
pruning phase (app/pruning/jobs.py), with the service's other deletions.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import trail
from app.core.db import is_postgres, take_batch, take_write_lock
from app.core.ids import new_id
from app.events import outbox
from app.events.outbox import iso
from app.fulfilment import fanout
from app.fulfilment.models import (
    RETENTION_ERASURE,
    RETENTION_SWEEP,
    FulfilmentSystem,
    FulfilmentTask,
    TaskStatus,
)
from app.policies.models import Policy, PolicyVersion
from app.policies.repository import PolicyRepository
from app.retention import holds as legal_holds
from app.retention.models import LegalHold, RetentionExpiry, RetentionSweep
from app.rules.retention import SweepCutoff, sweep_cutoff, sweepable
from app.webhooks.repository import emit_addressed

BATCH = 200
NO_SUBJECT = {"id": None, "email": None, "name": None}


_SWEEP = cast(Table, RetentionSweep.__table__)


async def _create(
    session: AsyncSession,
    created: Sequence[tuple[FulfilmentSystem, dict[str, Any]]],
    audit: Sequence[dict[str, Any]],
    now: datetime,
) -> None:
    """The new tasks (`fanout.task_row`) in one INSERT, their audit entries in another, then
    `task.created` for each and a push system's job for each runnable one (the events and
    jobs in one INSERT, the jobs' deliveries in another: `emit_addressed`)."""
    await fanout.insert_tasks(session, [task for _, task in created])
    await trail.record_many(session, audit)
    events = [
        outbox.row(task["tenant"], "task.created", fanout.task_facts(task), now)
        for _, task in created
    ]
    jobs: list[tuple[dict[str, Any], uuid.UUID]] = []
    for system, task in created:
        if task["status"] == TaskStatus.pending:
            job = fanout.job_row(system, task["tenant"], task["id"], now)
            if job is not None:
                assert system.subscription_id is not None
                jobs.append((job, system.subscription_id))
    await emit_addressed(session, events, jobs, now)


# ---- sweeps ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    tenant: str
    policy_key: str
    policy_version: int
    system: FulfilmentSystem
    rule: Mapping[str, Any]
    cut: SweepCutoff


@dataclass(frozen=True, slots=True)
class Postponed:
    policy_key: str
    system: str
    category: str
    day: date
    held_by: list[str]


@dataclass(slots=True)
class SweepOutcome:
    created: list[uuid.UUID]
    today: list[tuple[uuid.UUID, str, date]]  # (system id, category, day) of the policies run
    postponed: list[Postponed]


async def _plans(
    session: AsyncSession, now: datetime, tenant: str | None, policy_key: str | None
) -> list[Plan]:
    stmt = select(Policy.id)
    if tenant is not None:
        stmt = stmt.where(Policy.tenant == tenant)
    if policy_key is not None:
        stmt = stmt.where(Policy.key == policy_key)
    ids = list(await session.scalars(stmt))
    versions: list[PolicyVersion] = list(
        (await PolicyRepository(session).versions_in_force(ids, now)).values()
    )
    wanted = [v for v in versions if any(sweepable(r) for r in v.resolved.get("retention") or [])]
    if not wanted:
        return []
    systems: dict[str, list[FulfilmentSystem]] = defaultdict(list)
    for system in await session.scalars(
        select(FulfilmentSystem)
        .where(
            FulfilmentSystem.tenant.in_({v.tenant for v in wanted}),
            FulfilmentSystem.active.is_(True),
        )
        .order_by(FulfilmentSystem.key)
    ):
        systems[system.tenant].append(system)
    # per (system, category): the rule with the latest cutoff (the shortest keeping) wins when
    # several of the tenant's policies name the category; ties go to the first policy key
    best: dict[tuple[uuid.UUID, str], Plan] = {}
    for pv in sorted(wanted, key=lambda v: (v.tenant, v.policy_key)):
        for rule in pv.resolved.get("retention") or []:
            if not sweepable(rule):
                continue
            holders = [s for s in systems.get(pv.tenant, []) if rule["category"] in s.categories]
            if not holders:
                continue
            cut = sweep_cutoff(pv.resolved, rule, now)
            for system in holders:
                key = (system.id, str(rule["category"]))
                seen = best.get(key)
                if seen is None or cut.cutoff > seen.cut.cutoff:
                    best[key] = Plan(pv.tenant, pv.policy_key, pv.version, system, rule, cut)
    return list(best.values())


async def create_sweeps(
    session: AsyncSession,
    now: datetime,
    *,
    tenant: str | None = None,
    policy_key: str | None = None,
    actor: str = "worker",
) -> SweepOutcome:
    """Commits. Today's sweeps (every tenant, or one tenant and optionally one policy)."""
    plans = await _plans(session, now, tenant, policy_key)
    outcome = SweepOutcome([], [], [])
    if not plans:
        await session.rollback()
        return outcome
    outcome.today = [(p.system.id, str(p.rule["category"]), p.cut.day) for p in plans]
    existing = set(
        (
            await session.execute(
                select(RetentionSweep.system_id, RetentionSweep.category, RetentionSweep.day).where(
                    RetentionSweep.system_id.in_({p.system.id for p in plans}),
                    RetentionSweep.day.in_({p.cut.day for p in plans}),
                )
            )
        ).all()
    )
    todo = [p for p in plans if (p.system.id, str(p.rule["category"]), p.cut.day) not in existing]
    if not todo:
        await session.rollback()
        return outcome
    await take_write_lock(session, "retention_sweep")
    holds_by_tenant = await legal_holds.active_holds(session, {p.tenant for p in todo}, now)
    # One order for every round (the unique key's), so that two rounds inserting the same
    # sweeps at once wait for each other row by row instead of deadlocking.
    todo.sort(key=lambda p: (str(p.system.id), str(p.rule["category"]), p.cut.day))
    rows: dict[uuid.UUID, tuple[Plan, dict[str, Any]]] = {}
    for plan in todo:
        category = str(plan.rule["category"])
        holds = holds_by_tenant.get(plan.tenant, [])
        blocking = legal_holds.category_holds(holds, category)
        if blocking:
            outcome.postponed.append(
                Postponed(
                    plan.policy_key,
                    plan.system.key,
                    category,
                    plan.cut.day,
                    [str(h.id) for h in blocking],
                )
            )
            continue
        sweep_id = new_id()
        rows[sweep_id] = (
            plan,
            {
                "id": sweep_id,
                "tenant": plan.tenant,
                "policy_key": plan.policy_key,
                "policy_version": plan.policy_version,
                "system_id": plan.system.id,
                "system_key": plan.system.key,
                "category": category,
                "day": plan.cut.day,
                "cutoff": plan.cut.cutoff,
                "then": str(plan.rule["then"]),
                "holds": legal_holds.held_subjects(holds, category),
                "explanation": plan.cut.explanation,
                "created_at": now,
            },
        )
    if not rows:
        await session.rollback()
        return outcome
    make = pg_insert if is_postgres(session) else sqlite_insert
    # Every sweep of the round in one INSERT; a row another worker inserted first is skipped
    # (the unique constraint) and not returned.
    inserted = set(
        (
            await session.execute(
                make(_SWEEP)
                .on_conflict_do_nothing(index_elements=["system_id", "category", "day"])
                .returning(_SWEEP.c.id),
                [row for _, row in rows.values()],
            )
        ).scalars()
    )
    created: list[tuple[FulfilmentSystem, dict[str, Any]]] = []
    audit: list[dict[str, Any]] = []
    for sweep_id, (plan, row) in rows.items():
        if sweep_id not in inserted:
            continue  # another worker created it first
        task = fanout.task_row(
            plan.system,
            type=RETENTION_SWEEP,
            subject=NO_SUBJECT,
            explanation=plan.cut.explanation,
            now=now,
            retention_ref=sweep_id,
            category=row["category"],
            retention={
                "policy_key": plan.policy_key,
                "policy_version": plan.policy_version,
                "cutoff": iso(plan.cut.cutoff),
                "then": row["then"],
                "holds": row["holds"],
                "day": plan.cut.day.isoformat(),
            },
        )
        created.append((plan.system, task))
        outcome.created.append(sweep_id)
        audit.append(
            trail.entry(
                tenant=plan.tenant,
                actor=actor,
                action="retention.sweep_created",
                object_type="retention_sweep",
                object_id=sweep_id,
                data={
                    "policy_key": plan.policy_key,
                    "system": plan.system.key,
                    "category": row["category"],
                    "day": plan.cut.day.isoformat(),
                    "cutoff": iso(plan.cut.cutoff),
                    "held_subjects": len(row["holds"]),
                    "task_id": str(task["id"]),
                },
                at=now,
            )
        )
    await _create(session, created, audit, now)
    await session.commit()
    return outcome


# ---- subject expiries --------------------------------------------------------------------


async def create_erasures(session: AsyncSession, now: datetime, batch: int = BATCH) -> int:
    """Commits. Returns how many expiries were acted on."""
    due = (
        RetentionExpiry.tasks_created_at.is_(None),
        RetentionExpiry.superseded_at.is_(None),
        RetentionExpiry.expires_at <= now,
    )
    pending = select(RetentionExpiry).where(*due).order_by(RetentionExpiry.expires_at)
    expiries: Sequence[RetentionExpiry] = await take_batch(
        session, pending, RetentionExpiry.__tablename__, batch, scalars=True
    )
    if not expiries:
        return 0
    tenants = {e.tenant for e in expiries}
    systems: dict[str, list[FulfilmentSystem]] = defaultdict(list)
    for system in await session.scalars(
        select(FulfilmentSystem)
        .where(FulfilmentSystem.tenant.in_(tenants), FulfilmentSystem.active.is_(True))
        .order_by(FulfilmentSystem.key)
    ):
        systems[system.tenant].append(system)
    holds_by_tenant = await legal_holds.active_holds(session, tenants, now)
    created: list[tuple[FulfilmentSystem, dict[str, Any]]] = []
    audit: list[dict[str, Any]] = []
    for expiry in expiries:
        expiry.tasks_created_at = now
        made: list[str] = []
        for system in systems.get(expiry.tenant, []):
            if expiry.category not in system.categories:
                continue
            task = fanout.task_row(
                system,
                type=RETENTION_ERASURE,
                subject={"id": expiry.subject_id, "email": None, "name": None},
                explanation=list(expiry.explanation),
                now=now,
                retention_ref=expiry.id,
                category=expiry.category,
                retention={
                    "policy_key": expiry.policy_key,
                    "policy_version": expiry.policy_version,
                    "then": expiry.then,
                    "subject_id": expiry.subject_id,
                    "expires_at": iso(expiry.expires_at),
                },
            )
            held = legal_holds.covering(
                holds_by_tenant.get(expiry.tenant, []), expiry.subject_id, expiry.category
            )
            if held:
                fanout.postpone(task, held, legal_holds.step(held, "postponed while "))
            created.append((system, task))
            made.append(str(task["id"]))
        audit.append(
            trail.entry(
                tenant=expiry.tenant,
                actor="worker",
                action="retention.expired",
                object_type="retention_expiry",
                object_id=expiry.id,
                data={
                    "policy_key": expiry.policy_key,
                    "category": expiry.category,
                    "expires_at": iso(expiry.expires_at),
                    "tasks": made,
                },
                at=now,
            )
        )
    await session.flush()
    await _create(session, created, audit, now)
    await session.commit()
    return len(expiries)


# ---- holds ---------------------------------------------------------------------------------


async def wake_held(session: AsyncSession, tenants: Iterable[str], now: datetime) -> None:
    """Holds of these tenants ended: their held tasks are looked at again on the next round
    (one UPDATE, however many tenants)."""
    wanted = sorted(set(tenants))
    if not wanted:
        return
    await session.execute(
        update(FulfilmentTask)
        .where(FulfilmentTask.tenant.in_(wanted), FulfilmentTask.status == TaskStatus.held)
        .values(available_at=now)
        .execution_options(synchronize_session=False)
    )


async def end_holds(session: AsyncSession, now: datetime, batch: int = BATCH) -> int:
    """Commits. Holds whose `until` has passed are released by time, each audited; the held
    tasks of every tenant in the batch are woken together."""
    ended = (
        LegalHold.released_at.is_(None),
        LegalHold.until.is_not(None),
        LegalHold.until <= now,
    )
    pending = select(LegalHold).where(*ended).order_by(LegalHold.until)
    rows: Sequence[LegalHold] = await take_batch(
        session, pending, LegalHold.__tablename__, batch, scalars=True
    )
    if not rows:
        return 0
    audit: list[dict[str, Any]] = []
    for h in rows:
        h.released_at = h.until
        h.released_by = "until"
        audit.append(
            trail.entry(
                tenant=h.tenant,
                actor="worker",
                action="hold.released",
                object_type="legal_hold",
                object_id=h.id,
                data={"id": str(h.id), "by": "until", "until": iso(h.until)},
                at=now,
            )
        )
    await session.flush()
    await trail.record_many(session, audit)
    await wake_held(session, {h.tenant for h in rows}, now)
    await session.commit()
    return len(rows)


async def release_held(session: AsyncSession, now: datetime, batch: int = BATCH) -> int:
    """Commits. Returns how many held tasks went back to pending."""
    waiting = (FulfilmentTask.status == TaskStatus.held, FulfilmentTask.available_at <= now)
    pending = select(FulfilmentTask).where(*waiting).order_by(FulfilmentTask.available_at)
    tasks: Sequence[FulfilmentTask] = await take_batch(
        session, pending, FulfilmentTask.__tablename__, batch, scalars=True
    )
    if not tasks:
        return 0
    holds_by_tenant = await legal_holds.active_holds(session, {t.tenant for t in tasks}, now)
    system_ids = {t.system_id for t in tasks}
    systems = {
        s.id: s
        for s in await session.scalars(
            select(FulfilmentSystem).where(FulfilmentSystem.id.in_(system_ids))
        )
    }
    released: list[FulfilmentTask] = []
    for task in tasks:
        holds = holds_by_tenant.get(task.tenant, [])
        subject_id = (task.subject or {}).get("id")
        if task.category is not None:
            still = legal_holds.covering(holds, subject_id, task.category)
        else:
            system = systems.get(task.system_id)
            still = legal_holds.covering_system(
                holds, subject_id, system.categories if system is not None else []
            )
        if still:
            task.available_at = legal_holds.recheck_at(still)
            task.held_by = sorted({*(task.held_by or []), *(str(h.id) for h in still)})
            continue
        task.status = TaskStatus.pending
        task.available_at = now
        task.updated_at = now
        task.explanation = [*task.explanation, legal_holds.ended_step().to_dict()]
        released.append(task)
        trail.record(
            session,
            tenant=task.tenant,
            actor="worker",
            action="task.released",
            object_type="fulfilment_task",
            object_id=task.id,
            data={**fanout.task_facts(task), "held_by": list(task.held_by or [])},
            at=now,
        )
    await fanout.send_jobs_again(session, released, now, systems)  # push: its job again
    await session.commit()
    return len(released)
