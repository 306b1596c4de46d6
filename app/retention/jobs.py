"""Retention's work (DESIGN §14), shared by the worker and `POST /v1/retention/sweeps/run`.
Each function is one short transaction and commits.

- `create_sweeps`: today's sweep per (system, category held, rule triggered by `collected` or
  `last_activity`), one per (system, category, local day) by the unique constraint: the row
  is inserted with ON CONFLICT DO NOTHING, so any number of workers create each one once. A
  category under a hold of everyone's records gets no sweep while the hold lasts (the next
  round after it ends creates the day's sweep); held subjects are listed in `holds`.
- `create_erasures`: a subject expiry that has passed becomes one `retention_erasure` task per
  system holding the category, once (rows locked SKIP LOCKED, `tasks_created_at`, and the
  tasks' unique (retention_ref, system_id)); a task a hold covers is created `held`.
- `end_holds`: a hold whose `until` has passed is released (audited), and the tenant's held
  tasks are looked at again.
- `release_held`: a held task no active hold covers any more goes to pending (a push system
  gets its job); one still covered waits for the end of its holds.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import trail
from app.core.db import is_postgres, take_write_lock
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
from app.rules.explain import Step
from app.rules.retention import SweepCutoff, sweep_cutoff, sweepable

BATCH = 200
NO_SUBJECT = {"id": None, "email": None, "name": None}


def new_task(
    system: FulfilmentSystem,
    *,
    type: str,
    ref: uuid.UUID,
    category: str,
    retention: dict[str, Any],
    subject: dict[str, Any],
    explanation: list[dict[str, Any]],
    now: datetime,
) -> FulfilmentTask:
    return FulfilmentTask(
        id=new_id(),
        tenant=system.tenant,
        dsar_id=None,
        system_id=system.id,
        system_key=system.key,
        type=type,
        subject=subject,
        status=TaskStatus.pending,
        due_at=None,
        explanation=explanation,
        available_at=now,
        lease_until=None,
        attempts=0,
        retry_exhausted=False,
        records_affected=None,
        reason=None,
        data=None,
        proof=None,
        result_digest=None,
        reported_at=None,
        overdue_at=None,
        purge_after=None,
        data_purged_at=None,
        created_at=now,
        updated_at=now,
        version=1,
        retention_ref=ref,
        category=category,
        retention=retention,
        held_by=None,
    )


def hold(task: FulfilmentTask, held: Sequence[LegalHold]) -> None:
    """Postpone a new task: `held`, re-checked when its holds may have ended."""
    task.status = TaskStatus.held
    task.held_by = [str(h.id) for h in held]
    task.available_at = legal_holds.recheck_at(held)
    step = Step(
        "legal hold",
        "GDPR Art. 17(3)(e)",
        "postponed while " + "; ".join(legal_holds.describe(h) for h in held),
    )
    task.explanation = [*task.explanation, step.to_dict()]


async def _send(
    session: AsyncSession,
    created: Sequence[tuple[FulfilmentSystem, FulfilmentTask]],
    now: datetime,
) -> None:
    """`task.created` for each new task, and a push system's job for each runnable one (the
    events and jobs in one INSERT, the jobs' deliveries in another: `fanout.send_jobs`)."""
    events = [
        outbox.row(task.tenant, "task.created", fanout.task_facts(task), now)
        for _, task in created
    ]
    jobs: list[tuple[dict[str, Any], uuid.UUID]] = []
    for system, task in created:
        if task.status == TaskStatus.pending:
            job = fanout.job_row(system, task.tenant, task.id, now)
            if job is not None:
                assert system.subscription_id is not None
                jobs.append((job, system.subscription_id))
    await fanout.send_jobs(session, events, jobs, now)


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
    if not is_postgres(session):
        await take_write_lock(session, "retention_sweep")
    holds_by_tenant = await legal_holds.active_holds(session, {p.tenant for p in todo}, now)
    make = pg_insert if is_postgres(session) else sqlite_insert
    created: list[tuple[FulfilmentSystem, FulfilmentTask]] = []
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
        held = legal_holds.held_subjects(holds, category)
        sweep_id = new_id()
        stmt = (
            make(RetentionSweep)
            .values(
                id=sweep_id,
                tenant=plan.tenant,
                policy_key=plan.policy_key,
                policy_version=plan.policy_version,
                system_id=plan.system.id,
                system_key=plan.system.key,
                category=category,
                day=plan.cut.day,
                cutoff=plan.cut.cutoff,
                then=str(plan.rule["then"]),
                holds=held,
                explanation=plan.cut.explanation,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["system_id", "category", "day"])
            .returning(RetentionSweep.id)
        )
        if await session.scalar(stmt) is None:
            continue  # another worker created it first
        task = new_task(
            plan.system,
            type=RETENTION_SWEEP,
            ref=sweep_id,
            category=category,
            retention={
                "policy_key": plan.policy_key,
                "policy_version": plan.policy_version,
                "cutoff": iso(plan.cut.cutoff),
                "then": str(plan.rule["then"]),
                "holds": held,
                "day": plan.cut.day.isoformat(),
            },
            subject=dict(NO_SUBJECT),
            explanation=plan.cut.explanation,
            now=now,
        )
        session.add(task)
        created.append((plan.system, task))
        outcome.created.append(sweep_id)
        trail.record(
            session,
            tenant=plan.tenant,
            actor=actor,
            action="retention.sweep_created",
            object_type="retention_sweep",
            object_id=sweep_id,
            data={
                "policy_key": plan.policy_key,
                "system": plan.system.key,
                "category": category,
                "day": plan.cut.day.isoformat(),
                "cutoff": iso(plan.cut.cutoff),
                "held_subjects": len(held),
                "task_id": str(task.id),
            },
            at=now,
        )
    await session.flush()
    await _send(session, created, now)
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
    found = await session.scalar(select(select(RetentionExpiry.id).where(*due).exists()))
    await session.rollback()
    if found is not True:
        return 0
    if not is_postgres(session):
        await take_write_lock(session, "retention_expiry")
    expiries = (
        await session.scalars(
            select(RetentionExpiry)
            .where(*due)
            .order_by(RetentionExpiry.expires_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not expiries:
        await session.rollback()
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
    created: list[tuple[FulfilmentSystem, FulfilmentTask]] = []
    for expiry in expiries:
        expiry.tasks_created_at = now
        made: list[str] = []
        for system in systems.get(expiry.tenant, []):
            if expiry.category not in system.categories:
                continue
            task = new_task(
                system,
                type=RETENTION_ERASURE,
                ref=expiry.id,
                category=expiry.category,
                retention={
                    "policy_key": expiry.policy_key,
                    "policy_version": expiry.policy_version,
                    "then": expiry.then,
                    "subject_id": expiry.subject_id,
                    "expires_at": iso(expiry.expires_at),
                },
                subject={"id": expiry.subject_id, "email": None, "name": None},
                explanation=list(expiry.explanation),
                now=now,
            )
            held = legal_holds.covering(
                holds_by_tenant.get(expiry.tenant, []), expiry.subject_id, expiry.category
            )
            if held:
                hold(task, held)
            session.add(task)
            created.append((system, task))
            made.append(str(task.id))
        trail.record(
            session,
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
    await session.flush()
    await _send(session, created, now)
    await session.commit()
    return len(expiries)


# ---- holds ---------------------------------------------------------------------------------


async def wake_held(session: AsyncSession, tenant: str, now: datetime) -> None:
    """A hold of the tenant ended: its held tasks are looked at again on the next round."""
    await session.execute(
        update(FulfilmentTask)
        .where(FulfilmentTask.tenant == tenant, FulfilmentTask.status == TaskStatus.held)
        .values(available_at=now)
        .execution_options(synchronize_session=False)
    )


async def end_holds(session: AsyncSession, now: datetime, batch: int = BATCH) -> int:
    """Commits. Holds whose `until` has passed are released by time, each audited."""
    ended = (
        LegalHold.released_at.is_(None),
        LegalHold.until.is_not(None),
        LegalHold.until <= now,
    )
    found = await session.scalar(select(select(LegalHold.id).where(*ended).exists()))
    await session.rollback()
    if found is not True:
        return 0
    if not is_postgres(session):
        await take_write_lock(session, "legal_hold")
    rows = (
        await session.scalars(
            select(LegalHold).where(*ended).limit(batch).with_for_update(skip_locked=True)
        )
    ).all()
    for h in rows:
        h.released_at = h.until
        h.released_by = "until"
        trail.record(
            session,
            tenant=h.tenant,
            actor="worker",
            action="hold.released",
            object_type="legal_hold",
            object_id=h.id,
            data={"id": str(h.id), "by": "until", "until": iso(h.until)},
            at=now,
        )
    for tenant in {h.tenant for h in rows}:
        await wake_held(session, tenant, now)
    await session.commit()
    return len(rows)


async def release_held(session: AsyncSession, now: datetime, batch: int = BATCH) -> int:
    """Commits. Returns how many held tasks went back to pending."""
    waiting = (FulfilmentTask.status == TaskStatus.held, FulfilmentTask.available_at <= now)
    found = await session.scalar(select(select(FulfilmentTask.id).where(*waiting).exists()))
    await session.rollback()
    if found is not True:
        return 0
    if not is_postgres(session):
        await take_write_lock(session, "fulfilment_task")
    tasks = (
        await session.scalars(
            select(FulfilmentTask)
            .where(*waiting)
            .order_by(FulfilmentTask.available_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not tasks:
        await session.rollback()
        return 0
    holds_by_tenant = await legal_holds.active_holds(session, {t.tenant for t in tasks}, now)
    system_ids = {t.system_id for t in tasks}
    systems = {
        s.id: s
        for s in await session.scalars(
            select(FulfilmentSystem).where(FulfilmentSystem.id.in_(system_ids))
        )
    }
    released = 0
    jobs: list[tuple[dict[str, Any], uuid.UUID]] = []
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
        step = Step("legal hold", None, "the legal hold ended: the task runs")
        task.explanation = [*task.explanation, step.to_dict()]
        released += 1
        system = systems.get(task.system_id)
        job = fanout.job_row(system, task.tenant, task.id, now) if system is not None else None
        if job is not None and system is not None and system.subscription_id is not None:
            jobs.append((job, system.subscription_id))  # a push system gets its job again
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
    await fanout.send_jobs(session, [], jobs, now)
    await session.commit()
    return released
