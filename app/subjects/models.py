"""The record of a subject's erasure (the subjects service writes it)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime


class SubjectErasure(Base):
    """That a subject was erased, when and by whom: the pseudonym and counts, never the
    identifier."""

    __tablename__ = "subject_erasure"
    __table_args__ = (Index(None, "tenant", "at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str] = mapped_column(String(64))
    pseudonym: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    consent_events: Mapped[int] = mapped_column(Integer)
    consent_states: Mapped[int] = mapped_column(Integer)
    dsar_tickets: Mapped[int] = mapped_column(Integer)
