"""The DSAR reminders: `dsar.overdue` once a ticket's due date has passed, `dsar.due_soon`
within the due-soon window, each once per ticket and due date (app/events/reminders.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.dsar.models import DsarTicket
from app.events.outbox import EventType, iso
from app.events.reminders import BATCH, Reminder, ReminderSource, not_reminded, rule_of


def _data(t: DsarTicket) -> dict[str, Any]:
    return {
        "id": str(t.id),
        "policy_key": t.policy_key,
        "type": t.type,
        "status": str(t.status),
        "due_at": iso(t.due_at),
        "due_date": iso(t.due_date),
        # the period that set the due date, or its extension once extended
        "rule": rule_of(t.explanation, "Answer", "Extended:"),
    }


def _unsent(kind: EventType) -> Any:
    return not_reminded(kind, DsarTicket.tenant, DsarTicket.id, DsarTicket.due_at)


def source(due_soon: timedelta) -> ReminderSource:
    async def due(session: AsyncSession, now: datetime) -> list[Reminder]:
        found: list[Reminder] = []
        overdue = await session.scalars(
            select(DsarTicket)
            .where(
                DsarTicket.is_open.is_(True),
                DsarTicket.due_sort < now,
                DsarTicket.due_at.is_not(None),
                _unsent("dsar.overdue"),
            )
            .order_by(DsarTicket.due_sort)
            .limit(BATCH)
        )
        soon = await session.scalars(
            select(DsarTicket)
            .where(
                DsarTicket.is_open.is_(True),
                DsarTicket.due_sort >= now,
                DsarTicket.due_sort <= now + due_soon,
                _unsent("dsar.due_soon"),
            )
            .order_by(DsarTicket.due_sort)
            .limit(BATCH)
        )
        kind: EventType
        for kind, tickets in (("dsar.overdue", overdue.all()), ("dsar.due_soon", soon.all())):
            for t in tickets:
                assert t.due_at is not None
                found.append(Reminder(t.tenant, kind, t.id, t.due_at, kind, _data(t)))
        return found

    return due
