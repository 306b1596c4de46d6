"""Gauges read from the database when /metrics is scraped."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.breaches.models import BreachIncident
from app.core.middleware import Metrics
from app.dsar.models import DsarTicket
from app.events.models import OutboxEvent
from app.webhooks.delivery import UNREADABLE_ERROR
from app.webhooks.models import DeliveryStatus, WebhookDelivery


async def refresh(session: AsyncSession, metrics: Metrics, now: datetime) -> None:
    count = func.count()
    backlog = await session.scalar(
        select(count).select_from(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None))
    )
    metrics.outbox_backlog.set(backlog or 0)
    # held back: whichever process runs the worker, every replica's /metrics shows them
    held = (WebhookDelivery.last_error == UNREADABLE_ERROR).label("held")
    rows = await session.execute(
        select(WebhookDelivery.status, held, count)
        .where(WebhookDelivery.status != DeliveryStatus.succeeded)
        .group_by(WebhookDelivery.status, held)
    )
    pending = held_back = failed = 0
    for status, is_held, n in rows:  # is_held: NULL where last_error is
        if status == DeliveryStatus.pending:
            pending += n
            held_back += n if is_held else 0
        elif status == DeliveryStatus.failed:
            failed += n
    metrics.webhook_pending.set(pending)
    metrics.webhook_held_back.set(held_back)
    metrics.webhook_failures.set(failed)
    overdue = await session.scalar(
        select(count)
        .select_from(DsarTicket)
        .where(DsarTicket.is_open.is_(True), DsarTicket.due_sort < now)
    )
    metrics.dsar_overdue.set(overdue or 0)
    breaches = await session.scalar(
        select(count).select_from(BreachIncident).where(BreachIncident.next_due_at < now)
    )
    metrics.breach_overdue.set(breaches or 0)
