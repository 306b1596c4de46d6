"""Reminders, run by the worker, each exactly once per object, kind and deadline. The domains
say what is due (`dsar.reminders`, `breaches.reminders`: each a `ReminderSource`); this module
owns the exactly-once claim and the outbox rows.

Exactly once, with any number of workers: a reminder is an INSERT … ON CONFLICT DO NOTHING
into `reminder_sent` (primary key tenant, kind, object, deadline) and only the rows it
RETURNs (the ones this worker inserted) become outbox events, in the same transaction. A
second worker inserting the same key waits for the first to commit and then inserts nothing.
A new deadline (an extension) is a new key, so its reminders come again.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.db import is_postgres, take_write_lock
from app.events import outbox
from app.events.models import ReminderSent
from app.events.outbox import EventType

BATCH = 500


@dataclass(frozen=True, slots=True)
class Reminder:
    """One reminder a domain finds due: its key (tenant, kind, object, deadline) and the
    outbox event it becomes (`kind` may refine `type`, e.g. per audience)."""

    tenant: str
    kind: str
    object_id: uuid.UUID
    due_at: datetime
    type: EventType
    data: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, uuid.UUID, datetime]:
        return (self.tenant, self.kind, self.object_id, self.due_at)


# A reminder names the rule behind the deadline it is about, as the ticket's or incident's
# explanation names it: the regime's law ("GDPR Art. 12(3)", "PIPEDA s.8(3)-(4)"), "policy
# promise", or the service's own rule.
SERVICE_OWN = "the service's own rule"


def rule_of(explanation: list[dict[str, Any]] | None, *starts: str) -> str:
    """The rule of the last explanation step whose detail starts with one of `starts`."""
    rule: str | None = None
    for step in explanation or []:
        if str(step.get("detail") or "").startswith(starts):
            rule = str(step.get("rule") or "") or None
    return rule or SERVICE_OWN


# A domain's reminders due at `now` (at most BATCH of each kind), given the worker's session.
ReminderSource = Callable[[AsyncSession, datetime], Awaitable[list[Reminder]]]


def not_reminded(
    kind: str,
    tenant: InstrumentedAttribute[str],
    object_id: InstrumentedAttribute[uuid.UUID],
    due_at: InstrumentedAttribute[Any],
) -> ColumnElement[bool]:
    """A source's filter: no `kind` reminder sent yet for this object and deadline."""
    return ~exists().where(
        ReminderSent.tenant == tenant,
        ReminderSent.kind == kind,
        ReminderSent.object_id == object_id,
        ReminderSent.due_at == due_at,
    )


async def _claim(
    session: AsyncSession, now: datetime, wanted: list[tuple[str, str, uuid.UUID, datetime]]
) -> set[tuple[str, str, uuid.UUID, datetime]]:
    """Insert the reminder keys; the ones returned are this worker's to emit."""
    if not wanted:
        return set()
    insert_ = pg_insert if is_postgres(session) else sqlite_insert
    stmt = (
        insert_(ReminderSent)
        .values(
            [
                {"tenant": t, "kind": k, "object_id": o, "due_at": d, "sent_at": now}
                for t, k, o, d in wanted
            ]
        )
        .on_conflict_do_nothing()
        .returning(
            ReminderSent.tenant, ReminderSent.kind, ReminderSent.object_id, ReminderSent.due_at
        )
    )
    return {(r[0], r[1], r[2], r[3]) for r in await session.execute(stmt)}


async def remind(session: AsyncSession, now: datetime, sources: Sequence[ReminderSource]) -> int:
    """One round of reminders from every source; returns how many events it emitted. Commits."""
    await take_write_lock(session, "reminder_sent")
    candidates: list[Reminder] = []
    for source in sources:
        candidates.extend(await source(session, now))
    if not candidates:
        await session.rollback()
        return 0
    keys = [c.key for c in candidates]
    # Skip the keys already sent (a breach scan sees them again until it is notified).
    columns = (ReminderSent.tenant, ReminderSent.kind, ReminderSent.object_id, ReminderSent.due_at)
    sent = {
        (r[0], r[1], r[2], r[3])
        for r in await session.execute(select(*columns).where(tuple_(*columns).in_(keys)))
    }
    fresh = [c for c in candidates if c.key not in sent]
    mine = await _claim(session, now, [c.key for c in fresh])
    rows = [outbox.row(c.tenant, c.type, c.data, now) for c in fresh if c.key in mine]
    await outbox.emit_many(session, rows)
    await session.commit()
    return len(rows)


__all__ = [
    "BATCH",
    "SERVICE_OWN",
    "Reminder",
    "ReminderSource",
    "not_reminded",
    "remind",
    "rule_of",
]
