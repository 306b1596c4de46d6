"""Webhook persistence, always scoped by tenant on the API side. Flushes, never commits."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import seek
from app.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)


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
