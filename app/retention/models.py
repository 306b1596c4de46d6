"""Retention that acts (DESIGN §14): daily sweeps, per-subject trigger events and their
expiries, legal holds. The work itself is done by fulfilment tasks at the tenant's systems."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType, UTCDateTime

# Settled: acted on (its tasks were created) or superseded (a later occurrence of its event
# replaced it, or its subject was erased), and its deletion instant not yet set.
EXPIRY_UNSCHEDULED_SQL = (
    "delete_after IS NULL AND (tasks_created_at IS NOT NULL OR superseded_at IS NOT NULL)"
)


class RetentionSweep(Base):
    """One system's sweep of one category on one local day of the policy's timezone: exactly
    one by the unique constraint, however many workers create them at once."""

    __tablename__ = "retention_sweep"
    __table_args__ = (
        UniqueConstraint("system_id", "category", "day"),
        Index(None, "tenant", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    policy_key: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[int] = mapped_column(Integer)
    system_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("fulfilment_system.id"))
    system_key: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    cutoff: Mapped[datetime] = mapped_column(UTCDateTime())
    then: Mapped[str] = mapped_column(String(32))
    # the held subjects' ids: the sweep leaves their records alone
    holds: Mapped[list[str]] = mapped_column(JSONType)
    explanation: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RetentionEvent(Base):
    """A per-subject trigger (`account_closed`, `contract_ended`, a custom event): append-only;
    the latest recorded occurrence of an event governs the subject's clocks."""

    __tablename__ = "retention_event"
    __table_args__ = (Index(None, "tenant", "subject_id", "policy_key", "recorded_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str] = mapped_column(String(200))
    policy_key: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by: Mapped[str] = mapped_column(String(200))


class RetentionExpiry(Base):
    """When one subject's records of one category expire (from one event): the worker turns a
    passed expiry into one `retention_erasure` task per system holding the category, once
    (`tasks_created_at`, and the tasks' unique (retention_ref, system_id))."""

    __tablename__ = "retention_expiry"
    __table_args__ = (
        UniqueConstraint("event_id", "category"),
        Index(None, "tenant", "subject_id", "policy_key"),
        # the worker's scan: passed and not yet acted on
        Index(
            "ix_retention_expiry_due",
            "expires_at",
            postgresql_where=text("tasks_created_at IS NULL AND superseded_at IS NULL"),
            sqlite_where=text("tasks_created_at IS NULL AND superseded_at IS NULL"),
        ),
        # the pruning (app/pruning): settled expiries to schedule, then those past their
        # deletion instant
        Index(
            "ix_retention_expiry_unscheduled",
            "created_at",
            postgresql_where=text(EXPIRY_UNSCHEDULED_SQL),
            sqlite_where=text(EXPIRY_UNSCHEDULED_SQL),
        ),
        Index(
            "ix_retention_expiry_delete_after",
            "delete_after",
            postgresql_where=text("delete_after IS NOT NULL"),
            sqlite_where=text("delete_after IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("retention_event.id"))
    subject_id: Mapped[str] = mapped_column(String(200))
    policy_key: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    then: Mapped[str] = mapped_column(String(32))
    explanation: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    tasks_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # a later occurrence of the same event replaced this one before it was acted on, or the
    # subject was erased
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # when the expiry's record is deleted (with its tasks, and its event with the last of its
    # expiries), set by the worker once it is settled: its policy's `records.dsar_kept_for`
    # after it was acted on or superseded
    delete_after: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LegalHold(Base):
    """A legal hold (GDPR Art. 17(3)(e)): a subject (all their categories, or those listed),
    categories (everyone's), or both. Active while not released and before `until`."""

    __tablename__ = "legal_hold"
    __table_args__ = (
        Index(None, "tenant", "created_at", "id"),
        Index(
            "ix_legal_hold_active",
            "tenant",
            "subject_id",
            postgresql_where=text("released_at IS NULL"),
            sqlite_where=text("released_at IS NULL"),
        ),
        # the worker's look for holds whose `until` has passed
        Index(
            "ix_legal_hold_until",
            "until",
            postgresql_where=text("released_at IS NULL AND until IS NOT NULL"),
            sqlite_where=text("released_at IS NULL AND until IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str | None] = mapped_column(String(200))
    # null: every category (a subject hold only)
    categories: Mapped[list[str] | None] = mapped_column(JSONType)
    reason: Mapped[str] = mapped_column(String(1000))
    until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    released_by: Mapped[str | None] = mapped_column(String(200))
