"""Fulfilment use cases (DESIGN §13): each is one transaction, committed here.

Systems are registered by the tenant; tasks come from the DSAR lifecycle (app.fulfilment.
fanout, called inside the ticket's transaction) and are answered by the systems' tokens.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError

from app.audit import trail
from app.core.clock import Clock
from app.core.db import is_postgres, take_write_lock
from app.core.errors import Conflict, NotFound, PayloadTooLarge, Unprocessable
from app.core.idempotency import as_sent, idempotent
from app.core.ids import new_id
from app.core.pagination import (
    decode_key_cursor,
    decode_keyset_cursor,
    encode_cursor,
    keyset,
    page_of,
)
from app.core.secretbox import Keyring
from app.core.security import Principal
from app.core.uow import UnitOfWork
from app.dsar.models import DsarEvent, DsarStatus, DsarTicket
from app.dsar.repository import DsarRepository
from app.dsar.service import event_values, ticket_facts
from app.events.outbox import emit, iso
from app.fulfilment import fanout
from app.fulfilment.fanout import task_facts, task_read
from app.fulfilment.models import (
    DONE_TASK_STATUSES,
    DeliveryMode,
    FulfilmentSystem,
    FulfilmentTask,
    TaskStatus,
)
from app.fulfilment.package import LinkClaims, link_digest, sign_link
from app.fulfilment.repository import FulfilmentRepository, late_filter
from app.fulfilment.schemas import (
    DsarPackage,
    PackageDsar,
    PackageLinkRead,
    PackagePolicy,
    PackageSystem,
    PushDelivery,
    SystemCreate,
    SystemCreated,
    SystemDeliveryRead,
    SystemRead,
    SystemSecretRotated,
    SystemUpdate,
    TaskClaimIn,
    TaskRead,
    TaskResultIn,
    TaskSubject,
    TaskWaiveIn,
)
from app.policies.models import PolicyVersion
from app.rules import fulfilment as rules
from app.webhooks import signing
from app.webhooks.delivery import backoff
from app.webhooks.models import WebhookSubscription
from app.webhooks.ssrf import UnsafeUrl, host_of, resolve_check

DATA_TYPES = frozenset({"access", "portability"})
# The stored idempotent response of a creation that shows a secret once keeps it sealed.
# The audit actor of a package link's opening: the link is the credential, there is no token.
LINK_ACTOR = "package-link"


class SystemNotFound(NotFound):
    code = "system_not_found"


class SystemKeyTaken(Conflict):
    code = "system_key_taken"


class SystemInvalid(Unprocessable):
    code = "validation_error"


class SystemUrlRefused(Unprocessable):
    code = "system_url_refused"


class SystemNotPush(Conflict):
    code = "system_not_push"


class TaskNotFound(NotFound):
    code = "task_not_found"


class TaskAlreadyReported(Conflict):
    code = "task_already_reported"


class TaskReasonRequired(Unprocessable):
    code = "task_reason_required"


class TaskDataNotAllowed(Unprocessable):
    code = "task_data_not_allowed"


class TaskDataTooLarge(PayloadTooLarge):
    code = "task_data_too_large"


class TaskNotWaivable(Conflict):
    code = "task_not_waivable"


class TaskNotRetryable(Conflict):
    code = "task_not_retryable"


class TaskHeld(Conflict):
    code = "task_held"


class TaskDsarClosed(Conflict):
    code = "dsar_closed"


class DsarNotFoundForTasks(NotFound):
    code = "dsar_not_found"


@dataclass(frozen=True, slots=True)
class FulfilmentConfig:
    allow_hosts: frozenset[str]
    data_max_bytes: int
    backoff_base_seconds: float
    backoff_max_seconds: float
    keyring: Keyring
    # WEBHOOK_SECRET_OVERLAP_HOURS: a rotated secret keeps signing this long
    secret_overlap: timedelta = timedelta(hours=24)


def system_read(
    system: FulfilmentSystem, url: str | None, disabled_at: datetime | None = None
) -> SystemRead:
    return SystemRead(
        key=system.key,
        name=system.name,
        categories=list(system.categories),
        handles=list(system.handles),
        delivery=SystemDeliveryRead(mode=system.mode, url=url, disabled_at=disabled_at),
        task_within=system.task_within,
        contact_email=system.contact_email,
        active=system.active,
        created_at=system.created_at,
        updated_at=system.updated_at,
        version=system.version,
    )


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def task_read_row(row: dict[str, Any], now: datetime) -> TaskRead:
    """A claimed task from the bare pool's row (JSON columns arrive as text)."""
    due_at = row["due_at"]
    return TaskRead(
        id=row["id"],
        dsar_id=row["dsar_id"],
        system=row["system_key"],
        type=row["type"],
        subject=TaskSubject.model_validate(_json(row["subject"])),
        status=TaskStatus(row["status"]),
        due_at=due_at,
        explanation=_json(row["explanation"]),
        attempts=row["attempts"],
        lease_until=row["lease_until"],
        records_affected=row["records_affected"],
        reason=row["reason"],
        proof=_json(row["proof"]),
        result_digest=row["result_digest"],
        has_data=bool(row["has_data"]),
        reported_at=row["reported_at"],
        overdue=due_at is not None and due_at < now,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        **fanout.retention_fields(row["category"], _json(row["retention"]), _json(row["held_by"])),
    )


def result_digest(body: TaskResultIn) -> str:
    """SHA-256 of the report's canonical JSON: the proof kept in the audit log (never the
    data itself) and what makes a replay recognisable."""
    canonical = json.dumps(
        body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class FulfilmentService:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        config: FulfilmentConfig,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.uow = uow
        self.session = uow.session
        self.repo = FulfilmentRepository(uow.session)
        self.clock = clock
        self.config = config
        self.rng = rng

    # ---- systems -----------------------------------------------------------------------

    async def _known_categories(self, tenant: str) -> set[str]:
        """The data categories the tenant's policies name in their retention rules (any
        version: a category may leave the current version while a system still holds it)."""
        rows = await self.session.scalars(
            select(PolicyVersion.resolved).where(PolicyVersion.tenant == tenant)
        )
        return {str(r["category"]) for resolved in rows for r in resolved.get("retention", [])}

    async def _check_categories(self, tenant: str, categories: Sequence[str]) -> None:
        if not categories:
            return
        known = await self._known_categories(tenant)
        for i, name in enumerate(categories):
            if name not in known:
                raise SystemInvalid.at(
                    ["body", "categories", i],
                    "not a data category of this tenant's policies' retention rules",
                )

    async def _check_url(self, url: str) -> None:
        try:
            await resolve_check(url, self.config.allow_hosts, strict=False)
        except UnsafeUrl as exc:
            raise SystemUrlRefused(
                f"body.delivery.url: {exc}",
                errors=[
                    {"loc": ["body", "delivery", "url"], "msg": str(exc), "type": "value_error"}
                ],
            ) from None

    async def _endpoint_of(self, system: FulfilmentSystem) -> WebhookSubscription | None:
        if system.subscription_id is None or system.mode != DeliveryMode.push:
            return None
        return await self.session.get(WebhookSubscription, system.subscription_id)

    async def _url_of(self, system: FulfilmentSystem) -> str | None:
        sub = await self._endpoint_of(system)
        return sub.url if sub is not None else None

    async def _read(self, system: FulfilmentSystem) -> SystemRead:
        sub = await self._endpoint_of(system)
        return system_read(system, sub.url if sub else None, sub.disabled_at if sub else None)

    def _endpoint(
        self, who: Principal, key: str, url: str, now: datetime
    ) -> tuple[WebhookSubscription, str]:
        """A push system's job endpoint and its new secret (shown once)."""
        sub = WebhookSubscription(
            id=new_id(),
            tenant=who.tenant,
            url=url,
            events=[],
            description=f"push system {key}",
            created_at=now,
            created_by=who.sub,
            system_key=key,
        )
        secret = signing.issue(sub, self.config.keyring)
        self.session.add(sub)
        return sub, secret

    async def create_system(
        self, who: Principal, body: SystemCreate, idempotency_key: str | None
    ) -> JSONResponse | SystemCreated:
        await self._check_categories(who.tenant, body.categories)
        if isinstance(body.delivery, PushDelivery):
            await self._check_url(body.delivery.url)
        async with idempotent(
            self.session,
            who.tenant,
            "createSystem",
            idempotency_key,
            lambda: as_sent(body),
            keyring=self.config.keyring,
        ) as idem:
            if idem.replay is not None:
                return idem.replay
            now = self.clock()
            if await self.repo.system(who.tenant, body.key) is not None:
                raise SystemKeyTaken(f"A system '{body.key}' exists in this tenant")
            secret: str | None = None
            subscription_id: uuid.UUID | None = None
            url: str | None = None
            if isinstance(body.delivery, PushDelivery):
                sub, secret = self._endpoint(who, body.key, body.delivery.url, now)
                subscription_id, url = sub.id, sub.url
                await self.session.flush()  # before the system row that references it
            system = FulfilmentSystem(
                id=new_id(),
                tenant=who.tenant,
                key=body.key,
                name=body.name,
                categories=list(body.categories),
                handles=list(body.handles),
                mode=DeliveryMode(body.delivery.mode),
                subscription_id=subscription_id,
                task_within=body.task_within.model_dump() if body.task_within else None,
                contact_email=body.contact_email,
                active=body.active,
                created_at=now,
                updated_at=now,
                version=1,
            )
            self.session.add(system)
            try:
                await self.session.flush()
            except IntegrityError:
                await self.session.rollback()
                raise SystemKeyTaken(f"A system '{body.key}' exists in this tenant") from None
            self._audit(
                who,
                "system.created",
                "fulfilment_system",
                system.id,
                self._system_facts(system, url),
                now,
            )
            created = SystemCreated(**system_read(system, url).model_dump(), secret=secret)
            idem.remember(201, created.model_dump(mode="json"), f"/v1/systems/{system.key}", at=now)
            await self.uow.commit()
            return created

    @staticmethod
    def _system_facts(system: FulfilmentSystem, url: str | None) -> dict[str, Any]:
        # The host only: a URL's path or query may carry a receiver's token.
        return {
            "key": system.key,
            "mode": DeliveryMode(system.mode).value,
            "host": host_of(url) if url else None,
            "handles": list(system.handles),
            "categories": list(system.categories),
            "active": system.active,
        }

    async def _system(self, who: Principal, key: str, lock: bool = False) -> FulfilmentSystem:
        system = await self.repo.system(who.tenant, key, lock=lock)
        if system is None:
            raise SystemNotFound(f"No system '{key}' in this tenant")
        return system

    async def get_system(self, who: Principal, key: str) -> SystemRead:
        system = await self._system(who, key)
        return await self._read(system)

    async def list_systems(
        self, who: Principal, limit: int, cursor: str | None
    ) -> tuple[list[SystemRead], str | None]:
        rows = await self.repo.systems_page(who.tenant, decode_key_cursor(cursor), limit + 1)
        page = list(rows[:limit])
        nxt = encode_cursor([page[-1].key]) if len(rows) > limit and page else None
        return [await self._read(s) for s in page], nxt

    async def update_system(
        self, who: Principal, key: str, body: SystemUpdate
    ) -> tuple[SystemRead, str | None]:
        """The system after the change, and a new secret when it became a push system."""
        sent = body.model_fields_set
        for name in ("name", "handles", "delivery", "active"):
            if name in sent and getattr(body, name) is None:
                raise SystemInvalid.at(["body", name], "cannot be null")
        if body.categories is not None:
            await self._check_categories(who.tenant, body.categories)
        if isinstance(body.delivery, PushDelivery):
            await self._check_url(body.delivery.url)
        now = self.clock()
        system = await self._system(who, key, lock=True)
        secret: str | None = None
        if body.name is not None:
            system.name = body.name
        if body.categories is not None:
            system.categories = list(body.categories)
        if body.handles is not None:
            system.handles = list(body.handles)
        if "task_within" in sent:
            system.task_within = body.task_within.model_dump() if body.task_within else None
        if "contact_email" in sent:
            system.contact_email = body.contact_email
        if body.active is not None:
            system.active = body.active
        if body.delivery is not None:
            if isinstance(body.delivery, PushDelivery):
                current = (
                    await self.session.get(WebhookSubscription, system.subscription_id)
                    if system.subscription_id is not None
                    else None
                )
                if current is not None:
                    current.url = body.delivery.url
                    if current.disabled_at is not None:
                        # Its receiver had answered 410 Gone; a URL given again re-enables it
                        # and the system's open tasks get their jobs again (flushed first:
                        # `emit_addressed` leaves out what it reads as disabled).
                        current.disabled_at = None
                        system.mode = DeliveryMode.push
                        await self.session.flush()
                        await self._resend_jobs(system, now)
                else:
                    sub, secret = self._endpoint(who, system.key, body.delivery.url, now)
                    await self.session.flush()
                    system.subscription_id = sub.id
                system.mode = DeliveryMode.push
            else:
                system.mode = DeliveryMode.pull
        system.updated_at = now
        await self.session.flush()
        url = await self._url_of(system)
        self._audit(
            who,
            "system.updated",
            "fulfilment_system",
            system.id,
            self._system_facts(system, url),
            now,
        )
        read = await self._read(system)
        await self.uow.commit()
        return read, secret

    async def _resend_jobs(self, system: FulfilmentSystem, now: datetime) -> None:
        """A job again for each of the system's tasks still waiting for one (pending or
        leased): those sent while its endpoint was disabled were stopped."""
        tasks = (
            await self.session.scalars(
                select(FulfilmentTask).where(
                    FulfilmentTask.tenant == system.tenant,
                    FulfilmentTask.system_id == system.id,
                    FulfilmentTask.status.in_([TaskStatus.pending, TaskStatus.in_progress]),
                )
            )
        ).all()
        await fanout.send_jobs_again(self.session, tasks, now)

    async def rotate_secret(self, who: Principal, key: str) -> SystemSecretRotated:
        now = self.clock()
        await take_write_lock(self.session, "webhook_subscription")  # SQLite: before the read
        system = await self._system(who, key, lock=True)
        sub = await self._endpoint_of(system)
        if sub is None:
            raise SystemNotPush(f"System '{key}' is a pull system: it has no signing secret")
        secret = signing.rotate(sub, self.config.keyring, now, self.config.secret_overlap)
        system.updated_at = now
        self._audit(
            who,
            "system.secret_rotated",
            "fulfilment_system",
            system.id,
            {"key": system.key, "previous_valid_until": iso(sub.previous_secret_until)},
            now,
        )
        rotated = SystemSecretRotated(
            key=system.key, secret=secret, previous_secret_valid_until=sub.previous_secret_until
        )
        await self.uow.commit()
        return rotated

    # ---- tasks: reads ------------------------------------------------------------------

    async def _task(self, who: Principal, task_id: uuid.UUID, lock: bool = False) -> FulfilmentTask:
        task = await self.repo.task(who.tenant, task_id, system=who.system, lock=lock)
        if task is None:
            raise TaskNotFound(f"No task {task_id} here")
        return task

    async def get_task(self, who: Principal, task_id: uuid.UUID) -> TaskRead:
        return task_read(await self._task(who, task_id), self.clock())

    async def list_tasks(
        self,
        who: Principal,
        *,
        status: TaskStatus | None,
        system: str | None,
        dsar_id: uuid.UUID | None,
        overdue: bool | None,
        limit: int,
        cursor: str | None,
        type: str | None = None,
    ) -> tuple[list[TaskRead], str | None]:
        now = self.clock()
        filters: list[ColumnElement[bool]] = []
        if type is not None:
            filters.append(FulfilmentTask.type == type)
        if who.system is not None:  # a system's token sees its own tasks only
            filters.append(FulfilmentTask.system_key == who.system)
        if system is not None:
            filters.append(FulfilmentTask.system_key == system)
        if status is not None:
            filters.append(FulfilmentTask.status == status)
        if dsar_id is not None:
            filters.append(FulfilmentTask.dsar_id == dsar_id)
        if overdue is not None:
            filters.append(late_filter(now) if overdue else ~late_filter(now))
        rows = await self.repo.tasks_page(
            who.tenant, filters, decode_keyset_cursor(cursor), limit + 1
        )
        page, nxt = page_of(rows, limit, lambda t: keyset(t.created_at, t.id))
        return [task_read(t, now) for t in page], nxt

    async def dsar_tasks(
        self, who: Principal, dsar_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[TaskRead], str | None]:
        if await DsarRepository(self.uow).get(who.tenant, dsar_id) is None:
            raise DsarNotFoundForTasks(f"No DSAR {dsar_id} in this tenant")
        return await self.list_tasks(
            who,
            status=None,
            system=None,
            dsar_id=dsar_id,
            overdue=None,
            limit=limit,
            cursor=cursor,
        )

    # ---- tasks: the systems' side ------------------------------------------------------

    async def claim(self, who: Principal, body: TaskClaimIn) -> list[TaskRead]:
        assert who.system is not None
        now = self.clock()
        lease = timedelta(seconds=body.lease_seconds)
        reads: list[TaskRead]
        if is_postgres(self.session):  # one statement, alone on the bare pool when it can be
            rows = await self.repo.claim_pg(
                self.uow, who.tenant, who.system, now, lease, body.limit
            )
            reads = [task_read_row(r, now) for r in rows]
        else:
            tasks = await self.repo.claim(who.tenant, who.system, now, lease, body.limit)
            reads = [task_read(t, now) for t in tasks]
        if not reads and await self.repo.system(who.tenant, who.system) is None:
            raise SystemNotFound(f"No system '{who.system}' in this tenant")
        await self.uow.commit()
        return reads

    async def _locked_task_and_ticket(
        self, who: Principal, task_id: uuid.UUID
    ) -> tuple[FulfilmentTask, DsarTicket | None]:
        """The task and its ticket (none for a retention task), locked ticket first (the
        order the DSAR transitions take), so a report and a transition never deadlock."""
        if not is_postgres(self.session):
            await take_write_lock(self.session, "fulfilment_task")
        found = await self._task(who, task_id)
        ticket: DsarTicket | None = None
        if found.dsar_id is not None:
            ticket = await DsarRepository(self.uow).get(who.tenant, found.dsar_id, lock=True)
            assert ticket is not None, "a request's task always belongs to an existing ticket"
        task = await self.repo.task(who.tenant, task_id, system=who.system, lock=True)
        assert task is not None
        await self.session.refresh(task)
        if ticket is not None:
            await self.session.refresh(ticket)
        return task, ticket

    async def _conf(
        self, task: FulfilmentTask, ticket: DsarTicket | None
    ) -> tuple[dict[str, Any], PolicyVersion | None]:
        """The fulfilment settings governing a task: its ticket's policy version, or for a
        retention task the version whose rule it applies."""
        if ticket is not None:
            pv = await self._policy_version(ticket)
            return rules.settings(pv.resolved), pv
        ref = task.retention or {}
        found = await self.session.scalar(
            select(PolicyVersion).where(
                PolicyVersion.tenant == task.tenant,
                PolicyVersion.policy_key == ref.get("policy_key"),
                PolicyVersion.version == ref.get("policy_version"),
            )
        )
        return rules.settings(found.resolved if found is not None else {}), None

    async def report(self, who: Principal, task_id: uuid.UUID, body: TaskResultIn) -> TaskRead:
        status = TaskStatus(body.status)
        if status in (TaskStatus.failed, TaskStatus.refused) and not body.reason:
            raise TaskReasonRequired(
                f"A '{status.value}' report needs a reason",
                errors=[{"loc": ["body", "reason"], "msg": "required", "type": "missing"}],
            )
        now = self.clock()
        task, ticket = await self._locked_task_and_ticket(who, task_id)
        if body.data is not None:
            if task.type not in DATA_TYPES:
                raise TaskDataNotAllowed.at(
                    ["body", "data"],
                    f"a '{task.type}' task reports no data (access and portability only)",
                )
            if status != TaskStatus.completed:
                raise TaskDataNotAllowed.at(["body", "data"], "data comes with 'completed' only")
            size = len(json.dumps(body.data, separators=(",", ":"), ensure_ascii=False).encode())
            if size > self.config.data_max_bytes:
                raise TaskDataTooLarge(
                    f"data is {size} bytes; at most {self.config.data_max_bytes} "
                    "(TASK_DATA_MAX_BYTES)",
                    max_bytes=self.config.data_max_bytes,
                )
        digest = result_digest(body)
        if task.result_digest == digest and task.reported_at is not None:
            read = task_read(task, now)  # the same report again: the same answer
            await self.session.rollback()
            return read
        current = TaskStatus(task.status)
        final = (
            current in DONE_TASK_STATUSES
            or current == TaskStatus.refused
            or (current == TaskStatus.failed and task.retry_exhausted)
        )
        if final:
            raise TaskAlreadyReported(
                f"The task was already reported ({current.value}); a different report is refused",
                task_status=current.value,
            )
        if task.status == TaskStatus.held:
            raise TaskHeld(
                "A legal hold postpones this task: it is reported once the hold ends",
                held_by=list(task.held_by or []),
            )
        # A task a legal hold postponed runs after its hold ends, even if its request has
        # closed meanwhile (the request was completed with what the hold kept named).
        if ticket is not None and not ticket.is_open and not task.held_by:
            raise TaskDsarClosed(f"The request is {ticket.status}: reports are closed")
        conf, pv = await self._conf(task, ticket)
        task.attempts += 1
        task.status = status
        task.records_affected = body.records_affected
        task.reason = body.reason
        task.data = body.data
        task.proof = body.proof
        task.result_digest = digest
        task.reported_at = now
        task.lease_until = None
        task.updated_at = now
        if status == TaskStatus.failed:
            if task.attempts >= int(conf["max_attempts"]):
                task.retry_exhausted = True
            else:
                task.available_at = now + backoff(
                    task.attempts,
                    self.config.backoff_base_seconds,
                    self.config.backoff_max_seconds,
                    self.rng,
                )
        await self.session.flush()
        facts = {
            **task_facts(task),
            "records_affected": task.records_affected,
            "digest": digest,
            "has_data": task.data is not None,
        }
        self._audit(who, "task.reported", "fulfilment_task", task.id, facts, now)
        await emit(self.session, task.tenant, "task.reported", facts, now)
        if ticket is not None and pv is not None:
            await self._after_task_change(who, ticket, conf, pv, now)
        read = task_read(task, now)
        await self.uow.commit()
        return read

    async def _policy_version(self, ticket: DsarTicket) -> PolicyVersion:
        pv = await self.session.scalar(
            select(PolicyVersion).where(
                PolicyVersion.tenant == ticket.tenant,
                PolicyVersion.policy_key == ticket.policy_key,
                PolicyVersion.version == ticket.policy_version,
            )
        )
        assert pv is not None, "a ticket always references an existing policy version"
        return pv

    async def _after_task_change(
        self,
        who: Principal,
        ticket: DsarTicket,
        conf: dict[str, Any],
        pv: PolicyVersion,
        now: datetime,
    ) -> None:
        """Every task done → `dsar.fulfilled` (once: a done task never reopens), and with
        `fulfilment.auto_complete` the ticket completes itself."""
        tasks = await self.repo.tasks_of(ticket.tenant, ticket.id)
        if not tasks or any(TaskStatus(t.status) not in DONE_TASK_STATUSES for t in tasks):
            return
        await emit(
            self.session,
            ticket.tenant,
            "dsar.fulfilled",
            {**ticket_facts(ticket), "tasks": len(tasks)},
            now,
        )
        if conf["auto_complete"] and ticket.status == DsarStatus.in_progress:
            current = DsarStatus(ticket.status)
            ticket.status = DsarStatus.completed
            ticket.is_open = False
            ticket.closed_at = now
            ticket.updated_at = now
            reason = "every system answered (fulfilment.auto_complete)"
            ticket.status_reason = reason
            self.session.add(
                DsarEvent(
                    **event_values(
                        ticket,
                        who,
                        now,
                        "status_changed",
                        current,
                        DsarStatus.completed,
                        reason,
                        {"auto_complete": True},
                    )
                )
            )
            await fanout.on_closed(self.session, ticket, pv.resolved, who.sub, now)
            await self.session.flush()
            changed = {**ticket_facts(ticket), "from": current.value, "to": "completed"}
            await emit(self.session, ticket.tenant, "dsar.status_changed", changed, now)
            self._audit(who, "dsar.status_changed", "dsar_ticket", ticket.id, changed, now)

    # ---- tasks: the operator's levers --------------------------------------------------

    async def waive(self, who: Principal, task_id: uuid.UUID, body: TaskWaiveIn) -> TaskRead:
        now = self.clock()
        task, ticket = await self._locked_task_and_ticket(who, task_id)
        if ticket is not None and not ticket.is_open and not task.held_by:
            raise TaskDsarClosed(f"The request is {ticket.status}: its tasks are settled")
        if TaskStatus(task.status) in DONE_TASK_STATUSES:
            raise TaskNotWaivable(f"The task is already {TaskStatus(task.status).value}")
        task.status = TaskStatus.waived
        task.reason = body.reason
        task.lease_until = None
        task.updated_at = now
        await self.session.flush()
        facts = task_facts(task)
        self._audit(who, "task.waived", "fulfilment_task", task.id, facts, now)
        await emit(self.session, task.tenant, "task.reported", facts, now)
        if ticket is not None:
            pv = await self._policy_version(ticket)
            await self._after_task_change(who, ticket, rules.settings(pv.resolved), pv, now)
        read = task_read(task, now)
        await self.uow.commit()
        return read

    async def retry(self, who: Principal, task_id: uuid.UUID) -> TaskRead:
        """A failed or refused task goes back to pending with a fresh round of attempts; a
        push system is sent the job again."""
        now = self.clock()
        task, ticket = await self._locked_task_and_ticket(who, task_id)
        if ticket is not None and not ticket.is_open and not task.held_by:
            raise TaskDsarClosed(f"The request is {ticket.status}: its tasks are settled")
        if TaskStatus(task.status) not in (TaskStatus.failed, TaskStatus.refused):
            raise TaskNotRetryable(
                f"Only a failed or refused task is retried; this one is "
                f"{TaskStatus(task.status).value}"
            )
        reopen(task, now)
        task.attempts = 0
        await self.session.flush()
        await fanout.send_jobs_again(self.session, [task], now)
        facts = task_facts(task)
        self._audit(who, "task.retried", "fulfilment_task", task.id, facts, now)
        read = task_read(task, now)
        await self.uow.commit()
        return read

    # ---- the access package ------------------------------------------------------------

    async def package(self, tenant: str, dsar_id: uuid.UUID) -> DsarPackage:
        ticket = await DsarRepository(self.uow).get(tenant, dsar_id)
        if ticket is None:
            raise DsarNotFoundForTasks(f"No DSAR {dsar_id} in this tenant")
        pv = await self._policy_version(ticket)
        tasks = await self.repo.tasks_of(tenant, dsar_id)
        names = {
            s.id: s.name
            for s in await self.session.scalars(
                select(FulfilmentSystem).where(
                    FulfilmentSystem.id.in_([t.system_id for t in tasks])
                )
            )
        }
        return DsarPackage(
            dsar=PackageDsar(
                id=ticket.id,
                type=ticket.type,
                status=DsarStatus(ticket.status).value,
                received_at=ticket.received_at,
                due_at=ticket.due_at,
                closed_at=ticket.closed_at,
            ),
            subject=TaskSubject(
                id=ticket.subject_id, email=ticket.subject_email, name=ticket.subject_name
            ),
            generated_at=self.clock(),
            policy=PackagePolicy(
                key=ticket.policy_key,
                version=ticket.policy_version,
                title=str(pv.resolved["title"]),
                controller=str(pv.resolved["controller"]["name"]),
            ),
            systems=[
                PackageSystem(
                    system=t.system_key,
                    name=names.get(t.system_id, t.system_key),
                    status=t.status,
                    records_affected=t.records_affected,
                    reported_at=t.reported_at,
                    data=t.data,
                )
                for t in tasks
            ],
        )

    async def open_link(self, claims: LinkClaims, token: str) -> DsarPackage:
        """The package behind a valid link, and an audit entry saying it was opened: the
        ticket, the link's expiry and digest (never the token), by no one in particular
        (the link is the credential)."""
        package = await self.package(claims.tenant, claims.dsar_id)
        trail.record(
            self.session,
            tenant=claims.tenant,
            actor=LINK_ACTOR,
            action="dsar.package_link_opened",
            object_type="dsar_ticket",
            object_id=claims.dsar_id,
            data={
                "id": str(claims.dsar_id),
                "expires_at": iso(claims.expires_at),
                "link": link_digest(token),
            },
            at=package.generated_at,
        )
        await self.uow.commit()
        return package

    async def create_link(
        self, who: Principal, dsar_id: uuid.UUID, span: timedelta, key: str, base_url: str
    ) -> PackageLinkRead:
        """An unauthenticated link to the package; who made it, for which ticket and until
        when goes in the audit log (never the token)."""
        if await DsarRepository(self.uow).get(who.tenant, dsar_id) is None:
            raise DsarNotFoundForTasks(f"No DSAR {dsar_id} in this tenant")
        now = self.clock()
        expires_at = (now + span).replace(microsecond=0)
        token = sign_link(key, who.tenant, dsar_id, expires_at)
        self._audit(
            who,
            "dsar.package_link_created",
            "dsar_ticket",
            dsar_id,
            {"id": str(dsar_id), "expires_at": iso(expires_at), "link": link_digest(token)},
            now,
        )
        link = PackageLinkRead(url=f"{base_url}/v1/package-links/{token}", expires_at=expires_at)
        await self.uow.commit()
        return link

    def _audit(
        self,
        who: Principal,
        action: str,
        object_type: str,
        object_id: Any,
        data: dict[str, Any],
        at: datetime,
    ) -> None:
        trail.record(
            self.session,
            tenant=who.tenant,
            actor=who.sub,
            action=action,
            object_type=object_type,
            object_id=object_id,
            data=data,
            at=at,
        )


def reopen(task: FulfilmentTask, now: datetime) -> None:
    """Back to pending, claimable now; the previous report is cleared (its digest stays in
    the audit log), and so is a finished retention task's deletion instant (it is set again
    once the task has finished anew, app/pruning)."""
    task.status = TaskStatus.pending
    task.delete_after = None
    task.retry_exhausted = False
    task.available_at = now
    task.lease_until = None
    task.reason = None
    task.result_digest = None
    task.reported_at = None
    task.records_affected = None
    task.data = None
    task.proof = None
    task.updated_at = now
