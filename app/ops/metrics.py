"""Gauges read from the database when /metrics is scraped."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.breaches.models import BreachIncident
from app.core.middleware import Metrics
from app.dsar.models import DsarTicket
from app.events.models import OutboxEvent
from app.webhooks.models import DeliveryStatus, WebhookDelivery


async def refresh(session: AsyncSession, metrics: Metrics, now: datetime) -> None:
    count = func.count()
    backlog = await session.scalar(
        select(count).select_from(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None))
    )
    metrics.outbox_backlog.set(backlog or 0)
    rows = await session.execute(
        select(WebhookDelivery.status, count)
        .where(WebhookDelivery.status != DeliveryStatus.succeeded)
        .group_by(WebhookDelivery.status)
    )
    by_status = {status: n for status, n in rows}
    metrics.webhook_pending.set(by_status.get(DeliveryStatus.pending, 0))
    metrics.webhook_failures.set(by_status.get(DeliveryStatus.failed, 0))
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
