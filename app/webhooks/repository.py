"""Webhook persistence, always scoped by tenant on the API side. Flushes, never commits."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ids import new_id
from app.core.pagination import seek
from app.events import outbox
from app.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)

_DELIVERY = cast(Table, WebhookDelivery.__table__)


async def emit_addressed(
    session: AsyncSession,
    events: Sequence[dict[str, Any]],
    addressed: Sequence[tuple[dict[str, Any], uuid.UUID]],
    now: datetime,
) -> list[dict[str, Any]]:
    """Outbox rows (`events`, which the worker fans out to the subscriptions), and events
    addressed to one subscription each (`addressed`: an `outbox.row` with `dispatched_at`,
    and the subscription it goes to — a push system's job, a ping) with their pending
    deliveries. The events in one INSERT (`outbox.emit_many`), the deliveries in a second
    (they reference the events' ids). In the caller's transaction.

    An addressed event whose subscription is disabled (its receiver answered 410 Gone) is
    left out, event and delivery: nothing would send it. Re-enabling a push system's
    endpoint gives its open tasks their jobs (app/fulfilment/service.py `_resend_jobs`).
    Those disabled subscriptions are read FOR SHARE: a re-enabling committed meanwhile is
    waited for and seen, and one still running waits for this transaction, then finds its
    tasks. Returns the deliveries' column values, in the order of `addressed` (those left
    out missing)."""
    disabled: set[uuid.UUID] = set()
    if addressed:
        disabled = set(
            await session.scalars(
                select(WebhookSubscription.id)
                .where(
                    WebhookSubscription.id.in_(sorted({sub for _, sub in addressed})),
                    WebhookSubscription.disabled_at.is_not(None),
                )
                .order_by(WebhookSubscription.id)
                .with_for_update(read=True)
            )
        )
        addressed = [(event, sub) for event, sub in addressed if sub not in disabled]
    ids = await outbox.emit_many(session, [*events, *(event for event, _ in addressed)])
    deliveries = [
        {
            "id": new_id(),
            "tenant": event["tenant"],
            "subscription_id": subscription_id,
            "event_id": event_id,
            "event_type": event["type"],
            "status": DeliveryStatus.pending,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for (event, subscription_id), event_id in zip(addressed, ids[len(events) :], strict=True)
    ]
    if deliveries:
        await session.execute(insert(_DELIVERY), deliveries)
    return deliveries


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(
        self, tenant: str, webhook_id: uuid.UUID, lock: bool = False
    ) -> WebhookSubscription | None:
        stmt = select(WebhookSubscription).where(
            WebhookSubscription.tenant == tenant,
            WebhookSubscription.id == webhook_id,
            WebhookSubscription.system_key.is_(None),
        )
        if lock:
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt)

    async def page(
        self, tenant: str, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[WebhookSubscription]:
        stmt = select(WebhookSubscription).where(
            WebhookSubscription.tenant == tenant, WebhookSubscription.system_key.is_(None)
        )
        stmt = seek(stmt, WebhookSubscription.created_at, WebhookSubscription.id, after, limit)
        return (await self.session.scalars(stmt)).all()

    async def delete(self, tenant: str, webhook_id: uuid.UUID) -> bool:
        """Deliveries and attempts go with it (ON DELETE CASCADE)."""
        result = await self.session.execute(
            delete(WebhookSubscription)
            .where(
                WebhookSubscription.tenant == tenant,
                WebhookSubscription.id == webhook_id,
                WebhookSubscription.system_key.is_(None),
            )
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def deliveries(
        self,
        webhook_id: uuid.UUID,
        status: DeliveryStatus | None,
        before: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[WebhookDelivery]:
        """Newest first."""
        stmt = select(WebhookDelivery).where(WebhookDelivery.subscription_id == webhook_id)
        if status is not None:
            stmt = stmt.where(WebhookDelivery.status == status)
        stmt = seek(
            stmt, WebhookDelivery.created_at, WebhookDelivery.id, before, limit, descending=True
        )
        return (await self.session.scalars(stmt)).all()

    async def attempts(
        self, delivery_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[WebhookAttempt]]:
        out: dict[uuid.UUID, list[WebhookAttempt]] = defaultdict(list)
        if not delivery_ids:
            return out
        stmt = (
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.attempt)
        )
        for attempt in await self.session.scalars(stmt):
            out[attempt.delivery_id].append(attempt)
        return out
