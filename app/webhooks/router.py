"""/v1/webhooks: signed event delivery to the tenant's receivers (DESIGN §9)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from app.core.deps import request_session, require
from app.core.idempotency import IdempotencyKeyHeader
from app.core.openapi import created, problems, sends
from app.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery
from app.core.routing import AppRoute
from app.core.security import Principal
from app.webhooks.models import DeliveryStatus
from app.webhooks.schemas import (
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryList,
    WebhookDeliveryRead,
    WebhookList,
    WebhookSecretRotated,
)
from app.webhooks.service import WebhookService

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=AppRoute)
# the scopes each route requires (app/core/deps.py: require)
WebhooksManageScope = Annotated[Principal, Depends(require("webhooks:manage"))]


async def get_service(request: Request) -> AsyncIterator[WebhookService]:
    state = request.app.state
    settings = state.settings
    overlap = timedelta(hours=settings.webhook_secret_overlap_hours)
    async with request_session(request) as session:
        yield WebhookService(
            session, state.clock, settings.webhook_allow_host_set, state.secrets, overlap
        )


ServiceDep = Annotated[WebhookService, Depends(get_service)]


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    operation_id="createWebhook",
    summary="Subscribe a receiver to events",
    description="Returns the signing secret (`whsec_…`) once. Deliveries are POSTed as JSON "
    '`{"type", "timestamp", "data"}` with Standard Webhooks headers `webhook-id` (the same on '
    "every retry: deduplicate on it), `webhook-timestamp` and `webhook-signature`, retried "
    "with exponential backoff. Event data carries ids, never personal data. A receiver "
    "answering 410 Gone disables its subscription (`disabled_at`; a `webhook.disabled` "
    "event to the tenant's other subscriptions).",
    responses={**problems(), **sends(201, location=True)},
)
async def create_webhook(
    body: WebhookCreate,
    service: ServiceDep,
    who: WebhooksManageScope,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    result = await service.create(who, body, idempotency_key)
    if isinstance(result, JSONResponse):
        return result
    return created(result, f"/v1/webhooks/{result.id}")


@router.get(
    "",
    response_model=WebhookList,
    operation_id="listWebhooks",
    summary="List the tenant's subscriptions (secrets are never shown again)",
    responses=problems(),
)
async def list_webhooks(
    service: ServiceDep,
    who: WebhooksManageScope,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> WebhookList:
    items, nxt = await service.list_page(who, limit, cursor)
    return WebhookList(items=items, next_cursor=nxt)


@router.delete(
    "/{id}",
    status_code=204,
    operation_id="deleteWebhook",
    summary="Unsubscribe (pending deliveries are dropped)",
    responses=problems(404),
)
async def delete_webhook(id: uuid.UUID, service: ServiceDep, who: WebhooksManageScope) -> Response:
    await service.delete(who, id)
    return Response(status_code=204)


@router.post(
    "/{id}/rotate-secret",
    response_model=WebhookSecretRotated,
    operation_id="rotateWebhookSecret",
    summary="Issue a new signing secret; the old one keeps signing for a while",
    description="Returns the new secret once. For WEBHOOK_SECRET_OVERLAP_HOURS (default 24) "
    "every delivery carries both signatures, space-separated in `webhook-signature` "
    "(`v1,<new> v1,<old>`, Standard Webhooks): switch the receiver to the new secret within "
    "that time. A second rotation during the overlap drops the oldest secret.",
    responses=problems(404),
)
async def rotate_webhook_secret(
    id: uuid.UUID, service: ServiceDep, who: WebhooksManageScope
) -> WebhookSecretRotated:
    return await service.rotate_secret(who, id)


@router.post(
    "/{id}/ping",
    response_model=WebhookDeliveryRead,
    operation_id="pingWebhook",
    summary="Queue a test event to this receiver",
    description="Queues a `webhook.ping` delivery for this subscription and returns it "
    "(status `pending`); the worker sends it like any event, signed, within its next round. "
    "Read its outcome in the deliveries list. A disabled subscription (its receiver "
    "answered 410 Gone) is 409 `webhook_disabled`.",
    responses=problems(404, 409),
)
async def ping_webhook(
    id: uuid.UUID, service: ServiceDep, who: WebhooksManageScope
) -> WebhookDeliveryRead:
    return await service.ping(who, id)


@router.get(
    "/{id}/deliveries",
    response_model=WebhookDeliveryList,
    operation_id="listWebhookDeliveries",
    summary="Deliveries to this receiver, newest first, with their attempts",
    responses=problems(404),
)
async def list_webhook_deliveries(
    id: uuid.UUID,
    service: ServiceDep,
    who: WebhooksManageScope,
    status: DeliveryStatus | None = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> WebhookDeliveryList:
    items, nxt = await service.deliveries(who, id, status, limit, cursor)
    return WebhookDeliveryList(items=items, next_cursor=nxt)
