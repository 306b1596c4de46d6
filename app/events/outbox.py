"""The transactional outbox: an event is a row added in the caller's transaction, so it
exists exactly when the change that caused it was committed. Nothing is sent from a request;
the worker fans events out to the subscriptions and delivers them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy.ext.asyncio import AsyncSession

from app.events.models import OutboxEvent

EventType = Literal[
    "dsar.created",
    "dsar.status_changed",
    "dsar.due_soon",
    "dsar.overdue",
    "consent.changed",
    "breach.created",
    "breach.deadline_approaching",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
# Sent only by POST /v1/webhooks/{id}/ping, to that one subscription.
PING = "webhook.ping"


def emit(
    session: AsyncSession, tenant: str, type: EventType, data: dict[str, Any], at: datetime
) -> None:
    """Add the event to the caller's transaction. `data` carries ids, dates and states: never a
    subject identifier, an e-mail or free text (receivers fetch details with their token)."""
    session.add(OutboxEvent(tenant=tenant, type=type, data=data, created_at=at))


def iso(value: Any) -> Any:
    """JSON-ready dates for event and audit data."""
    return value.isoformat() if hasattr(value, "isoformat") else value
