"""The worker's fulfilment phases, each one short transaction over a small batch:

- `overdue`: a `task.overdue` event once per task (the `overdue_at` guard in the UPDATE
  makes it once even with several workers);
- `retries`: a failed task whose backoff has run out goes back to pending (a push system
  gets its job again);

Deleting a closed ticket's task `data` (`fulfilment.keep_results_for` after closure) is one
of the worker's pruning phases (app/pruning/jobs.py), with the service's other deletions.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import begin_batch, take_batch
from app.events import outbox
from app.events.outbox import TASK_JOB
from app.fulfilment.fanout import job_body, send_jobs_again, task_facts
from app.fulfilment.models import OPEN_TASK_STATUSES, FulfilmentTask, TaskStatus
from app.fulfilment.service import reopen
from app.webhooks import delivery

BATCH = 200


async def job_bodies(
    session: AsyncSession, claimed: list[delivery.Claimed]
) -> list[delivery.Claimed]:
    """The worker's claim hook: a `task.created` job gets its body from the task as it is
    now (its event holds ids only)."""
    wanted = {
        uuid.UUID(str(c.data["task_id"]))
        for c in claimed
        if c.event_type == TASK_JOB and "task_id" in c.data
    }
    if not wanted:
        return claimed
    tasks = {
        t.id: t
        for t in await session.scalars(
            select(FulfilmentTask).where(FulfilmentTask.id.in_(list(wanted)))
        )
    }
    out: list[delivery.Claimed] = []
    for c in claimed:
        task = (
            tasks.get(uuid.UUID(str(c.data["task_id"])))
            if c.event_type == TASK_JOB and "task_id" in c.data
            else None
        )
        out.append(
            dataclasses.replace(c, data=job_body(task, c.event_at)) if task is not None else c
        )
    return out


async def overdue(session: AsyncSession, now: datetime, batch: int = BATCH) -> int:
    """Commits."""
    late = select(FulfilmentTask.id).where(
        FulfilmentTask.overdue_at.is_(None),
        FulfilmentTask.status.in_(list(OPEN_TASK_STATUSES)),
        FulfilmentTask.due_at < now,
    )
    if not await begin_batch(session, late.order_by(FulfilmentTask.due_at), "fulfilment_task"):
        return 0
    due = late.order_by(FulfilmentTask.due_at).limit(batch).with_for_update(skip_locked=True)
    tasks = (
        await session.scalars(
            update(FulfilmentTask)
            .where(
                FulfilmentTask.id.in_(due.scalar_subquery()), FulfilmentTask.overdue_at.is_(None)
            )
            .values(overdue_at=now)
            .returning(FulfilmentTask)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
    ).all()
    await outbox.emit_many(
        session, [outbox.row(t.tenant, "task.overdue", task_facts(t), now) for t in tasks]
    )
    await session.commit()
    return len(tasks)


async def retries(session: AsyncSession, now: datetime, batch: int = BATCH) -> int:
    """Commits."""
    waiting = (
        select(FulfilmentTask)
        .where(
            FulfilmentTask.status == TaskStatus.failed,
            FulfilmentTask.retry_exhausted.is_(False),
            FulfilmentTask.available_at <= now,
        )
        .order_by(FulfilmentTask.available_at)
    )
    tasks: Sequence[FulfilmentTask] = await take_batch(
        session, waiting, "fulfilment_task", batch, scalars=True
    )
    for task in tasks:
        # The failed report's fields stay visible until the next report: only the status,
        # the lease and the availability move (the digest stays, so a replay of that same
        # failed report is still recognised).
        digest, reported_at, reason = task.result_digest, task.reported_at, task.reason
        records = task.records_affected
        reopen(task, now)
        task.result_digest, task.reported_at, task.reason = digest, reported_at, reason
        task.records_affected = records
    await session.flush()
    await send_jobs_again(session, tasks, now)
    await session.commit()
    return len(tasks)
