"""The per-tenant hash-chained audit log.

A write appends its entry with a sequence number (`id`) and, on PostgreSQL, the writing
transaction's id (`xid`, a server default). The sealer (worker) later gives each entry its
place in the tenant's chain (`chain_seq`) and its `digest`; nothing on the request path
reads or locks a chain head.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, FetchedValue, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType, UTCDateTime
from app.events.models import SequenceId


class AuditEntry(Base):
    __tablename__ = "audit_entry"
    __table_args__ = (
        UniqueConstraint("tenant", "chain_seq"),
        Index(None, "tenant", "id"),
        Index(
            "ix_audit_entry_unsealed",
            "id",
            postgresql_where=text("digest IS NULL"),
            sqlite_where=text("digest IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(SequenceId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64))
    # Ids, versions and states only, never a subject identifier: erasing a subject must not
    # have to touch (and so break) the chain.
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # PostgreSQL: pg_current_xact_id() of the writing transaction (server default, see
    # migration 0005); NULL on SQLite, where one writer at a time makes it unnecessary.
    xid: Mapped[int | None] = mapped_column(BigInteger, server_default=FetchedValue())
    chain_seq: Mapped[int | None] = mapped_column(BigInteger)
    prev_digest: Mapped[str | None] = mapped_column(String(64))
    digest: Mapped[str | None] = mapped_column(String(64))
    sealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
