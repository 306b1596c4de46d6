"""Breach incidents, the notifications sent for them, and their history.

Incidents are never deleted through the API (a regulator may ask for the record): there is
no DELETE route and no cascade from anything an API call can remove. The worker deletes a
closed incident once its `keep_until` (awareness + the policy's `breach.records_kept_for`)
has passed (app/pruning); with no period set it is kept.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType, UTCDateTime, str_enum


class BreachStatus(enum.StrEnum):
    open = "open"
    contained = "contained"
    closed = "closed"


class BreachRisk(enum.StrEnum):
    unlikely = "unlikely"
    risk = "risk"
    high_risk = "high_risk"


class BreachRole(enum.StrEnum):
    controller = "controller"
    processor = "processor"


class Audience(enum.StrEnum):
    authority = "authority"
    subjects = "subjects"
    controller = "controller"


# open → contained → closed, or open → closed; closed is final.
TRANSITIONS: dict[BreachStatus, tuple[BreachStatus, ...]] = {
    BreachStatus.open: (BreachStatus.contained, BreachStatus.closed),
    BreachStatus.contained: (BreachStatus.closed,),
    BreachStatus.closed: (),
}


# Closed incidents with a record period: the worker deletes them once `keep_until` passes.
PRUNABLE_SQL = "status = 'closed' AND keep_until IS NOT NULL"


class BreachIncident(Base):
    __tablename__ = "breach_incident"
    __table_args__ = (
        # The register: newest awareness first, per tenant (keyset pagination).
        Index(None, "tenant", "aware_at", "id"),
        Index(None, "tenant", "status", "aware_at", "id"),
        # `overdue` is `next_due_at < now`: one range scan.
        Index(None, "tenant", "next_due_at"),
        Index(None, "next_due_at"),  # the reminder scan, across tenants
        # The worker's pruning: closed incidents whose record period has run out.
        Index(
            "ix_breach_incident_prunable",
            "keep_until",
            postgresql_where=text(PRUNABLE_SQL),
            sqlite_where=text(PRUNABLE_SQL),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str] = mapped_column(String(64))
    policy_key: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    aware_at: Mapped[datetime] = mapped_column(UTCDateTime())
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    data_categories: Mapped[list[str]] = mapped_column(JSONType)
    subjects_affected: Mapped[int | None] = mapped_column(BigInteger)
    risk: Mapped[BreachRisk] = mapped_column(str_enum(BreachRisk, "breach_risk"))
    role: Mapped[BreachRole] = mapped_column(str_enum(BreachRole, "breach_role"))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[BreachStatus] = mapped_column(str_enum(BreachStatus, "breach_status"))
    authority_notification_required: Mapped[bool] = mapped_column(Boolean)
    authority_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    authority_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    subjects_notification_required: Mapped[bool] = mapped_column(Boolean)
    subjects_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    subjects_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    controller_notification_required: Mapped[bool] = mapped_column(Boolean)
    controller_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    controller_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Denormalised: the earliest due instant of a required notice not yet sent, while the
    # incident is not closed (None otherwise). Kept by the service on every write.
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    explanation: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    keep_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closing_reason: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class BreachNotification(Base):
    """One notice sent (to the authority, the people affected, or the controller)."""

    __tablename__ = "breach_notification"
    __table_args__ = (Index(None, "incident_id", "sent_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    incident_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("breach_incident.id", ondelete="RESTRICT")
    )
    tenant: Mapped[str] = mapped_column(String(64))
    audience: Mapped[Audience] = mapped_column(str_enum(Audience, "breach_audience"))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reference: Mapped[str | None] = mapped_column(String(200))
    late: Mapped[bool] = mapped_column(Boolean)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    late_reason: Mapped[str | None] = mapped_column(String(2000))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by: Mapped[str] = mapped_column(String(200))


class BreachEvent(Base):
    """The incident's history: who changed what, when, from/to, why (one row per write)."""

    __tablename__ = "breach_event"
    __table_args__ = (Index(None, "incident_id", "version", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    incident_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("breach_incident.id", ondelete="RESTRICT")
    )
    tenant: Mapped[str] = mapped_column(String(64))
    # One event per write: the incident version that write produced (orders the history).
    version: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    changes: Mapped[dict[str, Any]] = mapped_column(JSONType)
    reason: Mapped[str | None] = mapped_column(String(1000))
