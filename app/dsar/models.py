from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, JSONType, UTCDateTime, str_enum


class DsarStatus(enum.StrEnum):
    received = "received"
    awaiting_verification = "awaiting_verification"
    in_progress = "in_progress"
    completed = "completed"
    rejected = "rejected"
    withdrawn = "withdrawn"


class RejectionReason(enum.StrEnum):
    """Why a request was refused (DESIGN §15): the CCPA regulations §7102(a) report counts
    denials by these codes."""

    identity_not_verified = "identity_not_verified"
    manifestly_unfounded = "manifestly_unfounded"
    excessive = "excessive"
    exemption = "exemption"
    no_data = "no_data"
    other = "other"


OPEN_STATUSES = frozenset(
    {DsarStatus.received, DsarStatus.awaiting_verification, DsarStatus.in_progress}
)

# Where each state may go. `rejected` (with a reason) and `withdrawn` from any open state;
# `completed` only from in_progress; closed states are final.
TRANSITIONS: dict[DsarStatus, tuple[DsarStatus, ...]] = {
    DsarStatus.received: (
        DsarStatus.awaiting_verification,
        DsarStatus.in_progress,
        DsarStatus.rejected,
        DsarStatus.withdrawn,
    ),
    DsarStatus.awaiting_verification: (
        DsarStatus.in_progress,
        DsarStatus.rejected,
        DsarStatus.withdrawn,
    ),
    DsarStatus.in_progress: (DsarStatus.completed, DsarStatus.rejected, DsarStatus.withdrawn),
    DsarStatus.completed: (),
    DsarStatus.rejected: (),
    DsarStatus.withdrawn: (),
}

# What the reports read of a ticket beside (tenant, received_at): the covering index's payload.
REPORT_COLUMNS = [
    "policy_key",
    "policy_version",
    "type",
    "status",
    "is_open",
    "due_at",
    "due_sort",
    "closed_at",
    "status_reason_code",
]

# Closed tickets the worker has not yet given their deletion instant (app/pruning).
UNSCHEDULED_SQL = "closed_at IS NOT NULL AND delete_after IS NULL"

# Tickets with no fixed due date sort after every dated one.
NO_DUE_SORT = datetime.fromisoformat("9999-12-31T00:00:00+00:00")


class DsarTicket(Base):
    __tablename__ = "dsar_ticket"
    __table_args__ = (
        Index(None, "tenant", "due_sort", "id"),
        Index(None, "tenant", "is_open", "due_sort", "id"),
        Index(None, "tenant", "subject_id"),
        Index(None, "is_open", "due_sort"),  # the reminder scan, across tenants
        # The reports (app/reports) read a tenant's tickets received in a range: on PostgreSQL
        # the index carries every column they read, so they never visit the (wide) rows.
        Index(None, "tenant", "received_at", postgresql_include=REPORT_COLUMNS),
        # The worker's pruning (app/pruning, DESIGN §14): closed tickets not yet given their
        # deletion instant, and the ones whose instant has come. Both stay small.
        Index(
            "ix_dsar_ticket_unscheduled",
            "closed_at",
            postgresql_where=text(UNSCHEDULED_SQL),
            sqlite_where=text(UNSCHEDULED_SQL),
        ),
        Index(
            "ix_dsar_ticket_delete_after",
            "delete_after",
            postgresql_where=text("delete_after IS NOT NULL"),
            sqlite_where=text("delete_after IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str] = mapped_column(String(64))
    policy_key: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    requester: Mapped[str] = mapped_column(String(32))
    status: Mapped[DsarStatus] = mapped_column(str_enum(DsarStatus, "dsar_status"))
    is_open: Mapped[bool] = mapped_column(Boolean)
    subject_id: Mapped[str | None] = mapped_column(String(200))
    subject_email: Mapped[str | None] = mapped_column(String(254))
    subject_name: Mapped[str | None] = mapped_column(String(200))
    channel: Mapped[str | None] = mapped_column(String(50))
    description: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    clock_started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # when the ticket entered awaiting_verification: the controller asked for information to
    # confirm identity, which (GDPR/UK GDPR presets) moves the clock start to its receipt
    identity_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledge_by: Mapped[date | None] = mapped_column(Date)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    due_date: Mapped[date | None] = mapped_column(Date)
    due_sort: Mapped[datetime] = mapped_column(UTCDateTime())
    first_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    provisional: Mapped[bool] = mapped_column(Boolean)
    extension_allowed: Mapped[bool] = mapped_column(Boolean)
    extended: Mapped[bool] = mapped_column(Boolean)
    extension_reason: Mapped[str | None] = mapped_column(String(1000))
    extension_notice_by: Mapped[date | None] = mapped_column(Date)
    explanation: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    status_reason: Mapped[str | None] = mapped_column(String(1000))
    status_reason_code: Mapped[RejectionReason | None] = mapped_column(
        str_enum(RejectionReason, "dsar_reason_code")
    )
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the closed ticket (and its timeline and tasks) is deleted: closure + the policy's
    # `records.dsar_kept_for`. Set by the worker after the ticket closes, whichever path
    # closed it (app/pruning).
    delete_after: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class DsarEvent(Base):
    """The ticket's timeline: who changed what, when, from/to, why."""

    __tablename__ = "dsar_event"
    __table_args__ = (Index(None, "ticket_id", "at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dsar_ticket.id", ondelete="CASCADE"))
    tenant: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(1000))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Declared so the unit of work inserts a new ticket before its first event (without a
    # relationship SQLAlchemy does not order INSERTs across classes); never loaded.
    ticket: Mapped[DsarTicket] = relationship(lazy="raise", viewonly=False)
