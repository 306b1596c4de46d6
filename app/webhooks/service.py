"""Webhook subscription use cases: each is one transaction, committed here."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import trail
from app.core.clock import Clock
from app.core.db import take_write_lock
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.idempotency import as_sent, idempotent
from app.core.idempotency import forget as forget_idempotent
from app.core.ids import new_id
from app.core.pagination import decode_keyset_cursor, keyset, page_of
from app.core.secretbox import Keyring
from app.core.security import Principal
from app.events.outbox import PING, iso
from app.events.outbox import row as outbox_row
from app.webhooks import signing
from app.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from app.webhooks.repository import WebhookRepository, emit_addressed
from app.webhooks.schemas import (
    AttemptRead,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryRead,
    WebhookRead,
    WebhookSecretRotated,
)
from app.webhooks.ssrf import UnsafeUrl, host_of, resolve_check


class WebhookNotFound(NotFound):
    code = "webhook_not_found"


class WebhookUrlRefused(Unprocessable):
    code = "webhook_url_refused"


class WebhookDisabled(Conflict):
    code = "webhook_disabled"


# The stored idempotent response of a creation that shows a secret once keeps it sealed.


def _location(webhook_id: uuid.UUID) -> str:
    return f"/v1/webhooks/{webhook_id}"


def message_id(delivery_id: uuid.UUID) -> str:
    """The `webhook-id` of a delivery: one per (event, subscription), the same on retries."""
    return f"msg_{delivery_id.hex}"


def to_read(sub: WebhookSubscription) -> WebhookRead:
    return WebhookRead(
        id=sub.id,
        url=sub.url,
        events=list(sub.events),
        description=sub.description,
        created_at=sub.created_at,
        disabled_at=sub.disabled_at,
    )


def delivery_read(
    d: WebhookDelivery | Mapping[str, Any], attempts: Sequence[WebhookAttempt]
) -> WebhookDeliveryRead:
    """A delivery (or the column values of one just inserted: a ping's) as the API shows it."""
    get: Callable[[str], Any] = (
        d.get if isinstance(d, Mapping) else functools.partial(getattr, d)
    )
    return WebhookDeliveryRead(
        id=get("id"),
        webhook_id=get("subscription_id"),
        message_id=message_id(get("id")),
        event_id=get("event_id"),
        event_type=get("event_type"),
        status=get("status"),
        attempt_count=get("attempts"),
        next_attempt_at=get("next_attempt_at"),
        last_status_code=get("last_status_code"),
        last_error=get("last_error"),
        delivered_at=get("delivered_at"),
        created_at=get("created_at"),
        attempts=[AttemptRead.model_validate(a, from_attributes=True) for a in attempts],
    )


class WebhookService:
    def __init__(
        self,
        session: AsyncSession,
        clock: Clock,
        allow_hosts: frozenset[str],
        keyring: Keyring,
        secret_overlap: timedelta,
    ) -> None:
        self.session = session
        self.repo = WebhookRepository(session)
        self.clock = clock
        self.allow_hosts = allow_hosts
        self.keyring = keyring
        self.secret_overlap = secret_overlap

    async def create(
        self, who: Principal, body: WebhookCreate, idempotency_key: str | None
    ) -> JSONResponse | WebhookCreated:
        try:
            await resolve_check(body.url, self.allow_hosts, strict=False)
        except UnsafeUrl as exc:
            raise WebhookUrlRefused(
                f"body.url: {exc}",
                errors=[{"loc": ["body", "url"], "msg": str(exc), "type": "value_error"}],
            ) from None
        async with idempotent(
            self.session,
            who.tenant,
            "createWebhook",
            idempotency_key,
            lambda: as_sent(body),
            keyring=self.keyring,
        ) as idem:
            if idem.replay is not None:
                return idem.replay
            now = self.clock()
            sub = WebhookSubscription(
                id=new_id(),
                tenant=who.tenant,
                url=body.url,
                events=list(body.events),
                description=body.description,
                created_at=now,
                created_by=who.sub,
            )
            secret = signing.issue(sub, self.keyring)
            self.session.add(sub)
            self._audit(who, sub, "webhook.created", now)
            created = WebhookCreated(**to_read(sub).model_dump(), secret=secret)
            idem.remember(201, created.model_dump(mode="json"), _location(sub.id), at=now)
            await self.session.commit()
            return created

    async def list_page(
        self, who: Principal, limit: int, cursor: str | None
    ) -> tuple[list[WebhookRead], str | None]:
        rows = await self.repo.page(who.tenant, decode_keyset_cursor(cursor), limit + 1)
        page, nxt = page_of(rows, limit, lambda s: keyset(s.created_at, s.id))
        return [to_read(s) for s in page], nxt

    async def _subscription(self, who: Principal, webhook_id: uuid.UUID) -> WebhookSubscription:
        sub = await self.repo.get(who.tenant, webhook_id)
        if sub is None:
            raise WebhookNotFound(f"No webhook {webhook_id} in this tenant")
        return sub

    async def delete(self, who: Principal, webhook_id: uuid.UUID) -> None:
        sub = await self._subscription(who, webhook_id)
        now = self.clock()
        self._audit(who, sub, "webhook.deleted", now)
        if not await self.repo.delete(who.tenant, webhook_id):
            raise WebhookNotFound(f"No webhook {webhook_id} in this tenant")
        await forget_idempotent(self.session, who.tenant, "createWebhook", _location(webhook_id))
        await self.session.commit()

    async def rotate_secret(self, who: Principal, webhook_id: uuid.UUID) -> WebhookSecretRotated:
        """A new secret, shown once; the previous one keeps signing beside it (both
        signatures on every delivery) for WEBHOOK_SECRET_OVERLAP_HOURS."""
        # two rotations at once: the second starts from the first's secret (PostgreSQL: the
        # row lock; SQLite: the write lock taken before the read)
        await take_write_lock(self.session, "webhook_subscription")
        sub = await self.repo.get(who.tenant, webhook_id, lock=True)
        if sub is None:
            raise WebhookNotFound(f"No webhook {webhook_id} in this tenant")
        now = self.clock()
        secret = signing.rotate(sub, self.keyring, now, self.secret_overlap)
        self._audit(
            who,
            sub,
            "webhook.secret_rotated",
            now,
            previous_valid_until=sub.previous_secret_until,
        )
        rotated = WebhookSecretRotated(
            id=sub.id, secret=secret, previous_secret_valid_until=sub.previous_secret_until
        )
        await self.session.commit()
        return rotated

    async def ping(self, who: Principal, webhook_id: uuid.UUID) -> WebhookDeliveryRead:
        """Queue a `webhook.ping` to this subscription only; the worker sends it (nothing is
        sent from a request). The delivery's outcome shows in the deliveries list."""
        sub = await self._subscription(who, webhook_id)
        gone = f"Webhook {webhook_id} is disabled: its receiver answered 410 Gone"
        if sub.disabled_at is not None:
            raise WebhookDisabled(gone, disabled_at=iso(sub.disabled_at))
        now = self.clock()
        # addressed to this one subscription: its delivery is written beside the event
        event = outbox_row(who.tenant, PING, {"webhook_id": str(sub.id)}, now, dispatched_at=now)
        queued = await emit_addressed(self.session, [], [(event, sub.id)], now)
        if not queued:  # disabled between the read above and the insert
            raise WebhookDisabled(gone)
        read = delivery_read(queued[0], [])
        await self.session.commit()
        return read

    async def deliveries(
        self,
        who: Principal,
        webhook_id: uuid.UUID,
        status: DeliveryStatus | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[WebhookDeliveryRead], str | None]:
        await self._subscription(who, webhook_id)
        rows = await self.repo.deliveries(
            webhook_id, status, decode_keyset_cursor(cursor), limit + 1
        )
        page, nxt = page_of(rows, limit, lambda d: keyset(d.created_at, d.id))
        attempts = await self.repo.attempts([d.id for d in page])
        return [delivery_read(d, attempts[d.id]) for d in page], nxt

    def _audit(
        self,
        who: Principal,
        sub: WebhookSubscription,
        action: str,
        at: datetime,
        **extra: Any,
    ) -> None:
        # The host only: a URL's path or query may carry a receiver's token.
        data: dict[str, Any] = {"id": str(sub.id), "host": host_of(sub.url), "events": sub.events}
        data.update({k: iso(v) for k, v in extra.items()})
        trail.record(
            self.session,
            tenant=who.tenant,
            actor=who.sub,
            action=action,
            object_type="webhook",
            object_id=sub.id,
            data=data,
            at=at,
        )
