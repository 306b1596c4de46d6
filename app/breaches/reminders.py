"""The breach reminders: `breach.deadline_approaching` for each notice (authority, subjects,
controller) still owed within the reminder window, once per incident, audience and deadline
(app/events/reminders.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.breaches.models import BreachIncident
from app.events.outbox import iso
from app.events.reminders import BATCH, Reminder, ReminderSource, rule_of

AUDIENCES = ("authority", "subjects", "controller")
# how the incident's explanation opens each audience's step (the rule is read from it)
_AUDIENCE_LABELS = {
    "authority": "Tell the supervisory authority",
    "subjects": "Tell the people affected",
    "controller": "Tell the controller",
}


def source(window: timedelta) -> ReminderSource:
    async def due(session: AsyncSession, now: datetime) -> list[Reminder]:
        # Incidents with a notice still owed soon (next_due_at is NULL once closed or all sent).
        incidents = await session.scalars(
            select(BreachIncident)
            .where(
                BreachIncident.next_due_at.is_not(None),
                BreachIncident.next_due_at <= now + window,
            )
            .order_by(BreachIncident.next_due_at)
            .limit(BATCH)
        )
        found: list[Reminder] = []
        for i in incidents:
            for audience in AUDIENCES:
                due_at: datetime | None = getattr(i, f"{audience}_due_at")
                if (
                    due_at is None
                    or not getattr(i, f"{audience}_notification_required")
                    or getattr(i, f"{audience}_notified_at") is not None
                    or due_at > now + window
                ):
                    continue
                data = {
                    "id": str(i.id),
                    "policy_key": i.policy_key,
                    "audience": audience,
                    "due_at": iso(due_at),
                    "overdue": due_at < now,
                    "rule": rule_of(i.explanation, _AUDIENCE_LABELS[audience]),
                }
                kind = f"breach.deadline_approaching:{audience}"
                found.append(
                    Reminder(i.tenant, kind, i.id, due_at, "breach.deadline_approaching", data)
                )
        return found

    return due
