"""/v1/breaches: breach incidents, their notification clocks and the record (DESIGN §8).

No route deletes an incident: the register is kept (at least the policy's `records_kept_for`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from app.breaches.models import BreachRisk, BreachStatus
from app.breaches.schemas import (
    CREATE_EXAMPLE,
    NOTIFICATION_EXAMPLES,
    PATCH_EXAMPLES,
    BreachCreate,
    BreachList,
    BreachPatch,
    BreachRead,
    NotificationIn,
)
from app.breaches.service import BreachService
from app.core.deps import request_session, require
from app.core.idempotency import IdempotencyKeyHeader
from app.core.instants import Instant
from app.core.openapi import created, problems, sends
from app.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery
from app.core.routing import AppRoute
from app.core.security import Principal
from app.policies.schemas import KEY_PATTERN

router = APIRouter(prefix="/v1/breaches", tags=["breaches"], route_class=AppRoute)
# the scopes each route requires (app/core/deps.py: require)
BreachReadScope = Annotated[Principal, Depends(require("breach:read"))]
BreachWriteScope = Annotated[Principal, Depends(require("breach:write"))]


async def get_service(request: Request) -> AsyncIterator[BreachService]:
    async with request_session(request) as session:
        yield BreachService(session, request.app.state.clock)


ServiceDep = Annotated[BreachService, Depends(get_service)]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=200,
        description='The incident\'s `ETag` (`"3"`): the change applies only to that version, '
        "else 412. `*` matches any current version. Compared strongly (RFC 9110 §13.1.1): a "
        'weak tag (`W/"3"`) never matches, so it is 412 too.',
    ),
]
_CREATE_EXAMPLES: dict[str, Any] = {
    "high-risk": {
        "summary": "A high-risk breach under the Spotrak policy",
        "value": CREATE_EXAMPLE,
    },
    "processor": {
        "summary": "As a processor: the duty is to tell the controller",
        "value": {
            "policy_key": "spotrak",
            "title": "Misdirected export to another client",
            "aware_at": "2026-03-28T10:00:00+01:00",
            "data_categories": ["contact_details"],
            "risk": "risk",
            "role": "processor",
        },
    },
}


def _etag(response: Response, incident: BreachRead) -> BreachRead:
    response.headers["ETag"] = f'"{incident.version}"'
    return incident


@router.post(
    "",
    status_code=201,
    response_model=BreachRead,
    operation_id="createBreach",
    summary="Register a breach incident",
    description="Records the policy version in force at `aware_at` and, from the risk and role, "
    "who must be told and by when (`*_notification_required`, `*_due_at`: 72 clock hours under "
    "GDPR, across DST; null where the law sets no fixed period), with the explanation.",
    responses={**problems(), **sends(201, etag=True, location=True)},
)
async def create_breach(
    body: Annotated[BreachCreate, Body(openapi_examples=_CREATE_EXAMPLES)],
    service: ServiceDep,
    who: BreachWriteScope,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    result = await service.create(who, body, idempotency_key)
    if isinstance(result, JSONResponse):
        return result
    return created(result, f"/v1/breaches/{result.id}", result.version)


@router.get(
    "",
    response_model=BreachList,
    operation_id="listBreaches",
    summary="The breach register, newest awareness first",
    responses=problems(),
)
async def list_breaches(
    service: ServiceDep,
    who: BreachReadScope,
    status: BreachStatus | None = None,
    overdue: Annotated[
        bool | None,
        Query(description="true: a required notice is missing past its due instant"),
    ] = None,
    risk: BreachRisk | None = None,
    policy_key: Annotated[str | None, Query(pattern=KEY_PATTERN, max_length=64)] = None,
    aware_after: Annotated[
        Instant | None, Query(description="Only incidents known after this instant")
    ] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> BreachList:
    items, nxt = await service.list_page(
        who,
        status=status,
        overdue=overdue,
        risk=risk,
        policy_key=policy_key,
        aware_after=aware_after,
        limit=limit,
        cursor=cursor,
    )
    return BreachList(items=items, next_cursor=nxt)


@router.get(
    "/{id}",
    response_model=BreachRead,
    operation_id="getBreach",
    summary="Read one incident",
    responses={**problems(404), **sends(200, etag=True)},
)
async def get_breach(
    id: uuid.UUID, service: ServiceDep, who: BreachReadScope, response: Response
) -> BreachRead:
    return _etag(response, await service.get(who, id))


@router.patch(
    "/{id}",
    response_model=BreachRead,
    operation_id="updateBreach",
    summary="Re-assess, describe or move an incident",
    description="Any of `risk`, `subjects_affected`, `data_categories`, `description`, "
    "`status`, with an optional `reason`. A new `risk` recomputes the duties and due instants. "
    "Status: open → contained → closed, or open → closed; closed is final (409 with "
    "`allowed`). Closing while a required notice is missing needs a `reason` "
    "(422 `breach_close_needs_reason`). Every change is recorded in `history`.",
    responses={**problems(404, 409, 412), **sends(200, etag=True)},
)
async def update_breach(
    id: uuid.UUID,
    body: Annotated[BreachPatch, Body(openapi_examples=PATCH_EXAMPLES)],
    service: ServiceDep,
    who: BreachWriteScope,
    response: Response,
    if_match: IfMatch = None,
) -> BreachRead:
    return _etag(response, await service.update(who, id, body, if_match))


@router.post(
    "/{id}/notifications",
    status_code=201,
    response_model=BreachRead,
    operation_id="recordBreachNotification",
    summary="Record a notice sent to the authority, the people affected or the controller",
    description="Returns the whole incident (201, `Location` is the incident) with the notice "
    "in `notifications`. A notice sent after its due instant needs `late_reason` (422 "
    "`breach_notification_late_reason_required`: GDPR/UK GDPR Art. 33(1), the service's own "
    "rule elsewhere) and is marked `late`. "
    "`controller` is only for an incident registered with role `processor`.",
    responses={**problems(404, 409, 412), **sends(201, etag=True, location=True)},
)
async def record_breach_notification(
    id: uuid.UUID,
    body: Annotated[NotificationIn, Body(openapi_examples=NOTIFICATION_EXAMPLES)],
    service: ServiceDep,
    who: BreachWriteScope,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    result = await service.notify(who, id, body, if_match, idempotency_key)
    if isinstance(result, JSONResponse):
        return result
    return created(result, f"/v1/breaches/{result.id}", result.version)
