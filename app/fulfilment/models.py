"""The tenant's systems and the tasks each request fans out to (DESIGN §13)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType, UTCDateTime, str_enum


class DeliveryMode(enum.StrEnum):
    push = "push"
    pull = "pull"


class TaskStatus(enum.StrEnum):
    pending = "pending"
    in_progress = "in_progress"
    completed = "completed"
    not_found = "not_found"
    failed = "failed"
    refused = "refused"
    waived = "waived"
    # Postponed by a legal hold (DESIGN §14): neither claimable nor delivered, neither open
    # nor done; the worker puts it back to pending once no active hold covers it.
    held = "held"


# A ticket cannot complete while a task is in one of these.
OPEN_TASK_STATUSES = frozenset({TaskStatus.pending, TaskStatus.in_progress, TaskStatus.failed})
# Done: the system acted (or had nothing), or the operator waived it.
DONE_TASK_STATUSES = frozenset({TaskStatus.completed, TaskStatus.not_found, TaskStatus.waived})
# What a system may report.
REPORTABLE = frozenset(
    {TaskStatus.completed, TaskStatus.not_found, TaskStatus.failed, TaskStatus.refused}
)
# Claimable when due (`available_at`): pending, or leased with the lease run out.
CLAIMABLE_SQL = "status IN ('pending', 'in_progress')"
_OPEN_NOT_OVERDUE = "overdue_at IS NULL AND status IN ('pending', 'in_progress', 'failed')"
# Finished: the system's last word is in (done, refused, or failed after its last attempt);
# only an operator's retry reopens it.
TASK_FINISHED_SQL = (
    "(status IN ('completed', 'not_found', 'waived', 'refused') "
    "OR (status = 'failed' AND retry_exhausted))"
)
# A finished task without a ticket (retention) whose deletion instant is not yet set; a
# ticket's tasks go with their ticket.
TASK_UNSCHEDULED_SQL = f"dsar_id IS NULL AND delete_after IS NULL AND {TASK_FINISHED_SQL}"
# Task types of retention (DESIGN §14), beside the DSAR request types.
RETENTION_SWEEP = "retention_sweep"
RETENTION_ERASURE = "retention_erasure"


class FulfilmentSystem(Base):
    __tablename__ = "fulfilment_system"
    __table_args__ = (UniqueConstraint("tenant", "key"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    categories: Mapped[list[str]] = mapped_column(JSONType)
    handles: Mapped[list[str]] = mapped_column(JSONType)
    mode: Mapped[DeliveryMode] = mapped_column(str_enum(DeliveryMode, "system_delivery_mode"))
    # A push system's job endpoint: a webhook_subscription (URL and signing secret) that
    # the outbox worker delivers to, with the webhooks' retries and signatures.
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("webhook_subscription.id", ondelete="SET NULL")
    )
    task_within: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    contact_email: Mapped[str | None] = mapped_column(String(254))
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class FulfilmentTask(Base):
    """One system's share of one request."""

    __tablename__ = "fulfilment_task"
    __table_args__ = (
        UniqueConstraint("dsar_id", "system_id"),
        # A retention task: one per system per sweep or per subject's expiry (DESIGN §14).
        UniqueConstraint("retention_ref", "system_id"),
        Index(None, "tenant", "created_at", "id"),
        Index(None, "tenant", "system_key", "created_at", "id"),
        # The claim: one range per system, only the claimable rows.
        Index(
            "ix_fulfilment_task_claimable",
            "system_id",
            "available_at",
            postgresql_where=text(CLAIMABLE_SQL),
            sqlite_where=text(CLAIMABLE_SQL),
        ),
        # The worker's scans: overdue, retries due, results to delete.
        Index(
            "ix_fulfilment_task_open_due",
            "due_at",
            postgresql_where=text(_OPEN_NOT_OVERDUE),
            sqlite_where=text(_OPEN_NOT_OVERDUE),
        ),
        Index(
            "ix_fulfilment_task_retry",
            "available_at",
            postgresql_where=text("status = 'failed' AND retry_exhausted = false"),
            sqlite_where=text("status = 'failed' AND retry_exhausted = 0"),
        ),
        # The worker's look at held tasks whose holds may have ended.
        Index(
            "ix_fulfilment_task_held",
            "available_at",
            postgresql_where=text("status = 'held'"),
            sqlite_where=text("status = 'held'"),
        ),
        # The pruning of retention's tasks (app/pruning): finished ones to schedule, and
        # those whose deletion instant is set, by kind.
        Index(
            "ix_fulfilment_task_unscheduled",
            "updated_at",
            postgresql_where=text(TASK_UNSCHEDULED_SQL),
            sqlite_where=text(TASK_UNSCHEDULED_SQL),
        ),
        Index(
            "ix_fulfilment_task_delete_after",
            "type",
            "delete_after",
            postgresql_where=text("delete_after IS NOT NULL"),
            sqlite_where=text("delete_after IS NOT NULL"),
        ),
        Index(
            "ix_fulfilment_task_purge",
            "purge_after",
            postgresql_where=text("data_purged_at IS NULL"),
            sqlite_where=text("data_purged_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    # null for a retention task (a sweep or a subject's expiry: no request behind it)
    dsar_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("dsar_ticket.id", ondelete="CASCADE")
    )
    system_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("fulfilment_system.id"))
    system_key: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    # The ticket's identifiers: the system needs them to find the person.
    subject: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[TaskStatus] = mapped_column(str_enum(TaskStatus, "task_status"))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    explanation: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    # Pending: when it may be claimed; in_progress: when its lease runs out; failed: when
    # it goes back to pending (backoff).
    available_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer)
    retry_exhausted: Mapped[bool] = mapped_column(Boolean)
    records_affected: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(1000))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    proof: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    result_digest: Mapped[str | None] = mapped_column(String(64))
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purge_after: Mapped[datetime | None] = mapped_column(UTCDateTime())
    data_purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Retention tasks (DESIGN §14): the sweep or subject expiry the task acts for, the data
    # category, and the rest of the instruction ({"policy_key", "policy_version", "cutoff",
    # "then", "holds", "subject_id"}).
    retention_ref: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    category: Mapped[str | None] = mapped_column(String(64))
    retention: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # A task without a ticket (retention): when its record is deleted, set by the worker once
    # it finished (its policy's `records.dsar_kept_for` later); a retry clears it. A
    # ticket's tasks have none: they go with their ticket.
    delete_after: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The legal holds that postponed the task (kept after their release: the task was held).
    held_by: Mapped[list[str] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012
