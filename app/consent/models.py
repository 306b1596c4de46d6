from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType, UTCDateTime, str_enum


class ConsentAction(enum.StrEnum):
    granted = "granted"
    denied = "denied"
    withdrawn = "withdrawn"


class ConsentEvent(Base):
    """One grant, denial or withdrawal. Append-only: no route updates or deletes a row; only
    subject erasure rewrites `subject_id` to a pseudonym (and sets `erased`)."""

    __tablename__ = "consent_event"
    __table_args__ = (
        Index(None, "tenant", "subject_id", "occurred_at", "id"),
        Index(None, "tenant", "occurred_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    policy_key: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[int] = mapped_column(Integer)
    subject_id: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(64))
    action: Mapped[ConsentAction] = mapped_column(str_enum(ConsentAction, "consent_action"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    source: Mapped[str | None] = mapped_column(String(50))
    proof: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    gpc: Mapped[bool] = mapped_column(Boolean)
    erased: Mapped[bool] = mapped_column(Boolean)
    actor: Mapped[str] = mapped_column(String(200))


class ConsentState(Base):
    """The current state per (subject, policy, purpose): the newest event by `occurred_at`
    (tie: the greater event id), maintained in the transaction that appends the event."""

    __tablename__ = "consent_state"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    policy_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[ConsentAction] = mapped_column(str_enum(ConsentAction, "consent_state_value"))
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
