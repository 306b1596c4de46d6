"""What the DSAR lifecycle asks of fulfilment, inside the ticket's own transaction.

- entering `in_progress`: one task per active system handling the type (`create_tasks`),
  with its due instant from the rules module, a `task.created` event, and for a push
  system its signed job through the outbox delivery machinery (`job_row`, sent with
  app/webhooks/repository.py `emit_addressed`);
- completing: refused while a task is open (`check_completion`);
- closing: the results' deletion date, and open tasks of a rejected or withdrawn request
  waived (`on_closed`).

Imports only models and the rules, so that app.dsar.service can call it without a cycle.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import trail
from app.core.errors import Conflict, Unprocessable
from app.core.ids import new_id
from app.dsar.models import DsarStatus, DsarTicket
from app.events import outbox
from app.events.outbox import TASK_JOB, iso
from app.fulfilment.models import (
    DONE_TASK_STATUSES,
    OPEN_TASK_STATUSES,
    DeliveryMode,
    FulfilmentSystem,
    FulfilmentTask,
    TaskStatus,
)
from app.fulfilment.repository import FulfilmentRepository
from app.fulfilment.schemas import TaskExport, TaskRead, TasksSummary, TaskSubject
from app.retention import holds as legal_holds
from app.retention.models import LegalHold
from app.rules.explain import Step
from app.rules.fulfilment import TaskDue, purge_after, task_due
from app.webhooks.repository import emit_addressed

# Rows written as column values (`task_row`, `insert_tasks`): the table's INSERT.
_TASK = cast(Table, FulfilmentTask.__table__)


class DsarTasksOpen(Conflict):
    code = "dsar_tasks_open"


class CompletionReasonRequired(Unprocessable):
    code = "dsar_reason_required"


def report_path(task_id: uuid.UUID) -> str:
    return f"/v1/tasks/{task_id}/result"


def task_read(task: FulfilmentTask, now: datetime) -> TaskRead:
    return TaskRead(
        id=task.id,
        dsar_id=task.dsar_id,
        system=task.system_key,
        type=task.type,
        subject=TaskSubject.model_validate(task.subject),
        status=task.status,
        due_at=task.due_at,
        explanation=list(task.explanation),
        attempts=task.attempts,
        lease_until=task.lease_until if task.status == TaskStatus.in_progress else None,
        records_affected=task.records_affected,
        reason=task.reason,
        proof=task.proof,
        result_digest=task.result_digest,
        has_data=task.data is not None,
        reported_at=task.reported_at,
        overdue=is_late(task, now),
        created_at=task.created_at,
        updated_at=task.updated_at,
        version=task.version,
        **retention_fields(task.category, task.retention, task.held_by),
    )


def retention_fields(
    category: str | None, retention: Mapping[str, Any] | None, held_by: list[str] | None
) -> dict[str, Any]:
    """A retention task's instruction, at the task's top level beside `type` (DESIGN §14)."""
    r = retention or {}
    return {
        "category": category,
        "cutoff": r.get("cutoff"),
        "then": r.get("then"),
        "holds": r.get("holds"),
        "subject_id": r.get("subject_id"),
        "policy_key": r.get("policy_key"),
        "held_by": held_by,
    }


def is_late(task: FulfilmentTask, now: datetime) -> bool:
    return (
        TaskStatus(task.status) in OPEN_TASK_STATUSES
        and task.due_at is not None
        and task.due_at < now
    )


def summary(counts: Mapping[str, int]) -> TasksSummary:
    """{"total", "open", "done", "failed", "refused"}: done = completed, not_found, waived;
    open = pending, in_progress (failed and refused are counted apart)."""
    return TasksSummary(
        total=sum(counts.values()),
        open=counts.get("pending", 0) + counts.get("in_progress", 0),
        done=sum(counts.get(s.value, 0) for s in DONE_TASK_STATUSES),
        failed=counts.get("failed", 0),
        refused=counts.get("refused", 0),
    )


async def task_overview(
    session: AsyncSession, tenant: str, dsar_ids: Sequence[uuid.UUID], now: datetime
) -> tuple[Mapping[uuid.UUID, Mapping[str, int]], set[uuid.UUID]]:
    """Per ticket: task counts by status, and which tickets have a late open task."""
    return await FulfilmentRepository(session).overview(tenant, dsar_ids, now)


def task_facts(task: FulfilmentTask | Mapping[str, Any]) -> dict[str, Any]:
    """What events and audit entries say about a task (the task, or the column values of one
    being inserted): ids, states, dates; never the subject, the data or free text."""
    get: Callable[[str], Any] = (
        task.__getitem__ if isinstance(task, Mapping) else functools.partial(getattr, task)
    )
    dsar_id = get("dsar_id")
    return {
        "id": str(get("id")),
        "dsar_id": str(dsar_id) if dsar_id is not None else None,
        "system": get("system_key"),
        "type": get("type"),
        "status": TaskStatus(get("status")).value,
        "due_at": iso(get("due_at")),
        "attempts": get("attempts"),
    }


def job_body(task: FulfilmentTask, now: datetime) -> dict[str, Any]:
    """What a push system receives as `data`: the task (with the subject's identifiers it
    needs to find the person) and where to report."""
    return {
        "task": task_read(task, now).model_dump(mode="json"),
        "report_url": report_path(task.id),
    }


def job_row(
    system: FulfilmentSystem, tenant: str, task_id: uuid.UUID, now: datetime
) -> dict[str, Any] | None:
    """A push system's `task.created` job, as an outbox row addressed to the system's
    endpoint only (dispatched already: never fanned out to webhooks); None for a pull
    system. The event holds ids only; the worker reads the task when it sends the job
    (`job_body`), so the body is current and no subject identifier is kept in the outbox.
    Sent, with its delivery, by `emit_addressed`, which leaves out the jobs of an endpoint
    disabled by a 410 Gone."""
    if system.mode != DeliveryMode.push or system.subscription_id is None:
        return None
    data = {"task_id": str(task_id), "report_url": report_path(task_id)}
    return outbox.row(tenant, TASK_JOB, data, now, dispatched_at=now)


async def send_jobs_again(
    session: AsyncSession,
    tasks: Sequence[FulfilmentTask],
    now: datetime,
    systems: Mapping[uuid.UUID, FulfilmentSystem] | None = None,
) -> None:
    """Tasks back to pending (a retry, a released hold, an endpoint given its URL again): a
    push system's task gets its job again (a new delivery; pull systems' tasks get none).
    Their systems in one query (or `systems`, when the caller has read them already), the
    jobs with their deliveries in one `emit_addressed`."""
    if not tasks:
        return
    if systems is None:
        wanted = {t.system_id for t in tasks}
        systems = {
            s.id: s
            for s in await session.scalars(
                select(FulfilmentSystem).where(FulfilmentSystem.id.in_(wanted))
            )
        }
    jobs: list[tuple[dict[str, Any], uuid.UUID]] = []
    for task in tasks:
        system = systems.get(task.system_id)
        job = job_row(system, task.tenant, task.id, now) if system is not None else None
        if job is not None and system is not None and system.subscription_id is not None:
            jobs.append((job, system.subscription_id))
    await emit_addressed(session, [], jobs, now)


def task_row(
    system: FulfilmentSystem,
    *,
    type: str,
    subject: Mapping[str, Any],
    explanation: list[dict[str, Any]],
    now: datetime,
    dsar_id: uuid.UUID | None = None,
    due_at: datetime | None = None,
    retention_ref: uuid.UUID | None = None,
    category: str | None = None,
    retention: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new task's column values, for the table's INSERT: pending and runnable now, at
    `system`. The one place the shape of a task row is written, whoever creates tasks: a
    ticket's fan-out (`dsar_id`, `due_at`) and retention's sweeps and subject expiries (no
    ticket: `retention_ref`, `category`, `retention`, DESIGN §14)."""
    return {
        "id": new_id(),
        "tenant": system.tenant,
        "dsar_id": dsar_id,
        "system_id": system.id,
        "system_key": system.key,
        "type": type,
        "subject": dict(subject),
        "status": TaskStatus.pending,
        "due_at": due_at,
        "explanation": explanation,
        "available_at": now,
        "lease_until": None,
        "attempts": 0,
        "retry_exhausted": False,
        "records_affected": None,
        "reason": None,
        "data": None,
        "proof": None,
        "result_digest": None,
        "reported_at": None,
        "overdue_at": None,
        "purge_after": None,
        "data_purged_at": None,
        "delete_after": None,
        "retention_ref": retention_ref,
        "category": category,
        "retention": retention,
        "held_by": None,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }


def postpone(task: dict[str, Any], held: Sequence[LegalHold], step: Step) -> None:
    """A new task (its `task_row`) that legal holds cover: `held` (neither claimable nor sent
    nor reportable), re-checked when its holds may have ended, and `step` (the hold's
    explanation, `legal_holds.step`) appended to its explanation."""
    task["status"] = TaskStatus.held
    task["held_by"] = [str(h.id) for h in held]
    task["available_at"] = legal_holds.recheck_at(held)
    task["explanation"] = [*task["explanation"], step.to_dict()]


async def insert_tasks(session: AsyncSession, tasks: Sequence[dict[str, Any]]) -> None:
    """Rows built by `task_row`, in one INSERT."""
    if tasks:
        await session.execute(insert(_TASK), list(tasks))


async def create_tasks(
    session: AsyncSession,
    ticket: DsarTicket,
    resolved: Mapping[str, Any],
    actor: str,
    now: datetime,
) -> list[Step]:
    """The ticket's tasks, in the caller's transaction. Returns the explanation steps to
    append to the ticket's (which systems got a task, or that none handles the type).

    A ticket fans out to every system at once, so the tasks, their events and jobs are
    column values written with one INSERT per table (no ORM instance per row): with ten
    systems the transition costs a few statements more than one without."""
    repo = FulfilmentRepository(session)
    systems = [s for s in await repo.active_systems(ticket.tenant) if ticket.type in s.handles]
    if not systems:
        return [
            Step(
                "fulfilment",
                None,
                f"no active system handles '{ticket.type}': no task was created, the request "
                "is completed by hand",
            )
        ]
    subject = {"id": ticket.subject_id, "email": ticket.subject_email, "name": ticket.subject_name}
    tasks: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    jobs: list[tuple[dict[str, Any], uuid.UUID]] = []
    kept: list[Step] = []
    # A legal hold postpones the erasure at every system whose data it covers (DESIGN §14,
    # GDPR Art. 17(3)(e)): the task is created `held` and runs once the hold ends.
    active_holds = (
        (await legal_holds.active_holds(session, [ticket.tenant], now))[ticket.tenant]
        if ticket.type == "erasure"
        else []
    )
    dues: dict[str, TaskDue] = {}  # systems with the same service level share a due instant
    for system in systems:
        level = json.dumps(system.task_within, sort_keys=True)
        due = dues.get(level)
        if due is None:
            due = dues[level] = task_due(
                resolved,
                ticket_due_at=ticket.due_at,
                clock_started_at=ticket.clock_started_at,
                task_within=system.task_within,
            )
        task = task_row(
            system,
            type=ticket.type,
            subject=subject,
            explanation=due.explanation_dicts(),
            now=now,
            dsar_id=ticket.id,
            due_at=due.due_at,
        )
        held = legal_holds.covering_system(active_holds, ticket.subject_id, system.categories)
        if held:
            step = legal_holds.step(
                held,
                f"system '{system.key}' keeps this person's data while ",
                ": its erasure task is postponed until the hold ends",
            )
            postpone(task, held, step)
            kept.append(step)
        tasks.append(task)
        events.append(outbox.row(ticket.tenant, "task.created", task_facts(task), now))
        job = job_row(system, ticket.tenant, task["id"], now) if not held else None
        if job is not None:
            assert system.subscription_id is not None
            jobs.append((job, system.subscription_id))
    await insert_tasks(session, tasks)
    await emit_addressed(session, events, jobs, now)
    trail.record(
        session,
        tenant=ticket.tenant,
        actor=actor,
        action="dsar.tasks_created",
        object_type="dsar_ticket",
        object_id=ticket.id,
        data={"tasks": [{"id": str(t["id"]), "system": t["system_key"]} for t in tasks]},
        at=now,
    )
    names = ", ".join(s.key for s in systems)
    return [
        Step(
            "fulfilment",
            None,
            f"{len(tasks)} task(s) created for the systems that handle '{ticket.type}': {names}",
        ),
        *kept,
    ]


async def on_deadline_moved(
    session: AsyncSession, ticket: DsarTicket, resolved: Mapping[str, Any], now: datetime
) -> None:
    """An extension moved the ticket's due instant: its open tasks' due instants follow."""
    tasks = [
        t
        for t in await FulfilmentRepository(session).tasks_of(ticket.tenant, ticket.id, lock=True)
        if TaskStatus(t.status) in OPEN_TASK_STATUSES
    ]
    if not tasks:
        return
    systems = {
        s.id: s
        for s in await session.scalars(
            select(FulfilmentSystem).where(FulfilmentSystem.id.in_([t.system_id for t in tasks]))
        )
    }
    for task in tasks:
        system = systems.get(task.system_id)
        due = task_due(
            resolved,
            ticket_due_at=ticket.due_at,
            clock_started_at=ticket.clock_started_at,
            task_within=system.task_within if system is not None else None,
        )
        if due.due_at != task.due_at:
            task.due_at = due.due_at
            task.explanation = due.explanation_dicts()
            task.updated_at = now


async def export_subject(
    session: AsyncSession, tenant: str, dsar_ids: Sequence[uuid.UUID], now: datetime
) -> list[TaskExport]:
    """A subject's export: the tasks of their tickets, with the data systems returned."""
    tasks = await FulfilmentRepository(session).tasks_of_tickets(tenant, dsar_ids)
    return [TaskExport(**task_read(task, now).model_dump(), data=task.data) for task in tasks]


async def erase_subject(
    session: AsyncSession, tenant: str, dsar_ids: Sequence[uuid.UUID], pseudonym: str
) -> None:
    """A subject's erasure: the tasks of their tickets keep the pseudonym only, and lose the
    data systems returned (statuses, counts and digests stay)."""
    if not dsar_ids:
        return
    await session.execute(
        update(FulfilmentTask)
        .where(FulfilmentTask.tenant == tenant, FulfilmentTask.dsar_id.in_(list(dsar_ids)))
        .values(subject={"id": pseudonym, "email": None, "name": None}, data=None)
        .execution_options(synchronize_session=False)
    )


async def check_completion(session: AsyncSession, ticket: DsarTicket, reason: str | None) -> None:
    """Completion waits for the systems: 409 `dsar_tasks_open` while a task is pending, in
    progress or failed; a refused task needs the completion's reason."""
    tasks = await FulfilmentRepository(session).open_tasks_for_dsar(ticket.tenant, ticket.id)
    still_open = [t for t in tasks if TaskStatus(t.status) in OPEN_TASK_STATUSES]
    if still_open:
        raise DsarTasksOpen(
            f"{len(still_open)} task(s) are still open: the request completes when every "
            "system has answered (or an operator waives its task)",
            open_tasks=[
                {"id": str(t.id), "system": t.system_key, "status": TaskStatus(t.status).value}
                for t in still_open
            ],
        )
    refused = [t for t in tasks if t.status == TaskStatus.refused]
    if refused and not reason:
        raise CompletionReasonRequired(
            "A system refused its task: completing the request needs a reason",
            errors=[
                {
                    "loc": ["body", "reason"],
                    "msg": "required: a task was refused",
                    "type": "missing",
                }
            ],
            refused_tasks=[{"id": str(t.id), "system": t.system_key} for t in refused],
        )


async def on_closed(
    session: AsyncSession,
    ticket: DsarTicket,
    resolved: Mapping[str, Any],
    actor: str,
    now: datetime,
) -> None:
    """The ticket closed: a rejected or withdrawn request's open tasks are waived (nothing
    is left to do), and every task's data gets its deletion instant."""
    repo = FulfilmentRepository(session)
    tasks = await repo.tasks_of(ticket.tenant, ticket.id, lock=True)
    if not tasks:
        return
    status = DsarStatus(ticket.status)
    if status in (DsarStatus.rejected, DsarStatus.withdrawn):
        waived = []
        for task in tasks:
            if TaskStatus(task.status) in OPEN_TASK_STATUSES or task.status in (
                TaskStatus.refused,
                TaskStatus.held,
            ):
                task.status = TaskStatus.waived
                task.reason = f"the request was {status.value}"
                task.lease_until = None
                task.updated_at = now
                waived.append(outbox.row(ticket.tenant, "task.reported", task_facts(task), now))
        await outbox.emit_many(session, waived)
    at, _ = purge_after(resolved, ticket.closed_at or now)
    for task in tasks:
        task.purge_after = at
