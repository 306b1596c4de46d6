"""Reminders, run by the worker: `dsar.due_soon`, `dsar.overdue` and
`breach.deadline_approaching`, each exactly once per object, kind and deadline.

Exactly once, with any number of workers: a reminder is an INSERT … ON CONFLICT DO NOTHING
into `reminder_sent` (primary key tenant, kind, object, deadline) and only the rows it
RETURNs (the ones this worker inserted) become outbox events, in the same transaction. A
second worker inserting the same key waits for the first to commit and then inserts nothing.
A new deadline (an extension) is a new key, so its reminders come again.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, insert, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.breaches.models import BreachIncident
from app.core.db import is_postgres, take_write_lock
from app.dsar.models import DsarTicket
from app.events.models import OutboxEvent, ReminderSent
from app.events.outbox import iso

BATCH = 500
AUDIENCES = ("authority", "subjects", "controller")


def _not_reminded(kind: str) -> Any:
    return ~exists().where(
        ReminderSent.tenant == DsarTicket.tenant,
        ReminderSent.kind == kind,
        ReminderSent.object_id == DsarTicket.id,
        ReminderSent.due_at == DsarTicket.due_at,
    )


SERVICE_OWN = "the service's own rule"
# A reminder names the rule behind the deadline it is about, as the ticket's or incident's
# explanation names it: the regime's law ("GDPR Art. 12(3)", "PIPEDA s.8(3)-(4)"), "policy
# promise", or the service's own rule.
_AUDIENCE_LABELS = {
    "authority": "Tell the supervisory authority",
    "subjects": "Tell the people affected",
    "controller": "Tell the controller",
}


def _rule_of(explanation: list[dict[str, Any]] | None, *starts: str) -> str:
    rule: str | None = None
    for step in explanation or []:
        if str(step.get("detail") or "").startswith(starts):
            rule = str(step.get("rule") or "") or None
    return rule or SERVICE_OWN


def _dsar_data(t: DsarTicket) -> dict[str, Any]:
    return {
        "id": str(t.id),
        "policy_key": t.policy_key,
        "type": t.type,
        "status": str(t.status),
        "due_at": iso(t.due_at),
        "due_date": iso(t.due_date),
        # the period that set the due date, or its extension once extended
        "rule": _rule_of(t.explanation, "Answer", "Extended:"),
    }


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


async def remind(
    session: AsyncSession, now: datetime, due_soon: timedelta, breach_window: timedelta
) -> int:
    """One round of reminders; returns how many events it emitted. Commits."""
    await take_write_lock(session, "reminder_sent")
    candidates: list[tuple[str, str, uuid.UUID, datetime, dict[str, Any]]] = []

    overdue = await session.scalars(
        select(DsarTicket)
        .where(
            DsarTicket.is_open.is_(True),
            DsarTicket.due_sort < now,
            DsarTicket.due_at.is_not(None),
            _not_reminded("dsar.overdue"),
        )
        .order_by(DsarTicket.due_sort)
        .limit(BATCH)
    )
    for t in overdue:
        assert t.due_at is not None
        candidates.append((t.tenant, "dsar.overdue", t.id, t.due_at, _dsar_data(t)))
    soon = await session.scalars(
        select(DsarTicket)
        .where(
            DsarTicket.is_open.is_(True),
            DsarTicket.due_sort >= now,
            DsarTicket.due_sort <= now + due_soon,
            _not_reminded("dsar.due_soon"),
        )
        .order_by(DsarTicket.due_sort)
        .limit(BATCH)
    )
    for t in soon:
        assert t.due_at is not None
        candidates.append((t.tenant, "dsar.due_soon", t.id, t.due_at, _dsar_data(t)))

    # Incidents with a notice still owed soon (next_due_at is NULL once closed or all sent).
    incidents = await session.scalars(
        select(BreachIncident)
        .where(
            BreachIncident.next_due_at.is_not(None),
            BreachIncident.next_due_at <= now + breach_window,
        )
        .order_by(BreachIncident.next_due_at)
        .limit(BATCH)
    )
    for i in incidents:
        for audience in AUDIENCES:
            due: datetime | None = getattr(i, f"{audience}_due_at")
            if (
                due is None
                or not getattr(i, f"{audience}_notification_required")
                or getattr(i, f"{audience}_notified_at") is not None
                or due > now + breach_window
            ):
                continue
            data = {
                "id": str(i.id),
                "policy_key": i.policy_key,
                "audience": audience,
                "due_at": iso(due),
                "overdue": due < now,
                "rule": _rule_of(i.explanation, _AUDIENCE_LABELS[audience]),
            }
            kind = f"breach.deadline_approaching:{audience}"
            candidates.append((i.tenant, kind, i.id, due, data))

    if candidates:
        keys = [(t, k, o, d) for t, k, o, d, _ in candidates]
        # Skip the keys already sent (a breach scan sees them again until it is notified).
        sent = {
            (r[0], r[1], r[2], r[3])
            for r in await session.execute(
                select(
                    ReminderSent.tenant,
                    ReminderSent.kind,
                    ReminderSent.object_id,
                    ReminderSent.due_at,
                ).where(
                    tuple_(
                        ReminderSent.tenant,
                        ReminderSent.kind,
                        ReminderSent.object_id,
                        ReminderSent.due_at,
                    ).in_(keys)
                )
            )
        }
        fresh = [c for c in candidates if (c[0], c[1], c[2], c[3]) not in sent]
        mine = await _claim(session, now, [(t, k, o, d) for t, k, o, d, _ in fresh])
        rows = [
            {
                "tenant": t,
                "type": k.split(":", 1)[0],
                "data": data,
                "created_at": now,
            }
            for t, k, o, d, data in fresh
            if (t, k, o, d) in mine
        ]
        if rows:
            await session.execute(insert(OutboxEvent).values(rows))
        await session.commit()
        return len(rows)
    await session.rollback()
    return 0


__all__ = ["remind"]
