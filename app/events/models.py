"""The transactional outbox and the reminders' exactly-once record."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType, UTCDateTime

# A BIGINT sequence on PostgreSQL; SQLite only auto-numbers an INTEGER PRIMARY KEY.
SequenceId = BigInteger().with_variant(Integer(), "sqlite")


class OutboxEvent(Base):
    """An event, written in the transaction of the change that caused it. The worker fans it
    out to the matching subscriptions (one webhook_delivery each) and sets `dispatched_at`."""

    __tablename__ = "outbox_event"
    __table_args__ = (
        Index(
            "ix_outbox_event_pending",
            "id",
            postgresql_where=text("dispatched_at IS NULL"),
            sqlite_where=text("dispatched_at IS NULL"),
        ),
        # Pruning (app/pruning): dispatched events, oldest first.
        Index(
            "ix_outbox_event_dispatched",
            "dispatched_at",
            postgresql_where=text("dispatched_at IS NOT NULL"),
            sqlite_where=text("dispatched_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(SequenceId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(64))
    # Ids, dates and states; `consent.changed` also names the subject (rewritten to the
    # pseudonym when the subject is erased). Never an e-mail or free text.
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ReminderSent(Base):
    """One row per reminder emitted: the primary key makes it exactly once per object,
    kind and deadline (an extension moves the deadline, so its reminders come again)."""

    __tablename__ = "reminder_sent"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    object_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
