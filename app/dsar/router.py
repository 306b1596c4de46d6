"""/v1/dsars: data-subject requests with their legal clocks (DESIGN §6)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from app.core.deps import request_uow, require
from app.core.idempotency import IdempotencyKeyHeader
from app.core.instants import Instant
from app.core.openapi import created, problems, sends
from app.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery
from app.core.routing import AppRoute, hot
from app.core.security import Principal
from app.dsar.models import DsarStatus
from app.dsar.schemas import (
    DsarCreate,
    DsarEventList,
    DsarList,
    ExtensionIn,
    Sla,
    TransitionIn,
)
from app.dsar.schemas import (
    DsarRead as DsarOut,
)
from app.dsar.service import DsarService
from app.policies.schemas import KEY_PATTERN, Right

router = APIRouter(prefix="/v1/dsars", tags=["dsars"], route_class=AppRoute)
# the scopes each route requires (app/core/deps.py: require)
DsarReadScope = Annotated[Principal, Depends(require("dsar:read"))]
DsarWriteScope = Annotated[Principal, Depends(require("dsar:write"))]


async def get_service(request: Request) -> AsyncIterator[DsarService]:
    days = request.app.state.settings.due_soon_days
    async with request_uow(request) as uow:
        yield DsarService(uow, request.app.state.clock, timedelta(days=days))


ServiceDep = Annotated[DsarService, Depends(get_service)]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=200,
        description='The ticket\'s `ETag` (`"3"`): the change applies only to that version, '
        "else 412. `*` matches any current version. Compared strongly (RFC 9110 §13.1.1): a "
        'weak tag (`W/"3"`) never matches, so it is 412 too.',
    ),
]


def _etag(response: Response, ticket: DsarOut) -> DsarOut:
    response.headers["ETag"] = f'"{ticket.version}"'
    return ticket


@router.post(
    "",
    status_code=201,
    response_model=DsarOut,
    operation_id="createDsar",
    summary="Open a data-subject request",
    description="Records the policy version in force at `received_at` and computes the "
    "acknowledgement and due dates, with their explanation.",
    responses={**problems(), **sends(201, etag=True, location=True)},
)
@hot
async def create_dsar(
    body: DsarCreate,
    service: ServiceDep,
    who: DsarWriteScope,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    result = await service.create(who, body, idempotency_key)
    if isinstance(result, JSONResponse):
        return result
    return created(result, f"/v1/dsars/{result.id}", result.version)


@router.get(
    "",
    response_model=DsarList,
    operation_id="listDsars",
    summary="List requests, soonest due first",
    responses=problems(),
)
async def list_dsars(
    service: ServiceDep,
    who: DsarReadScope,
    status: DsarStatus | None = None,
    type: Right | None = None,
    sla: Sla | None = None,
    policy_key: Annotated[str | None, Query(pattern=KEY_PATTERN, max_length=64)] = None,
    due_before: Instant | None = None,
    received_after: Instant | None = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> DsarList:
    items, nxt = await service.list_page(
        who,
        status=status,
        type=type,
        sla=sla,
        policy_key=policy_key,
        due_before=due_before,
        received_after=received_after,
        limit=limit,
        cursor=cursor,
    )
    return DsarList(items=items, next_cursor=nxt)


@router.get(
    "/{id}",
    response_model=DsarOut,
    operation_id="getDsar",
    summary="Read one request",
    responses={**problems(404), **sends(200, etag=True)},
)
async def get_dsar(
    id: uuid.UUID, service: ServiceDep, who: DsarReadScope, response: Response
) -> DsarOut:
    return _etag(response, await service.get(who, id))


@router.post(
    "/{id}/transitions",
    response_model=DsarOut,
    operation_id="transitionDsar",
    summary="Move a request to another status",
    description="received → awaiting_verification → in_progress → completed | rejected; "
    "withdrawn from any open state. Leaving awaiting_verification records `verified_at` and, "
    "where the clock starts at verification, recomputes the due date. Rejecting needs a "
    "`reason` and takes an optional `reason_code` (identity_not_verified, "
    "manifestly_unfounded, excessive, exemption, no_data, other) that the CCPA metrics report "
    "counts denials by.",
    responses={**problems(404, 409, 412), **sends(200, etag=True)},
)
async def transition_dsar(
    id: uuid.UUID,
    body: TransitionIn,
    service: ServiceDep,
    who: DsarWriteScope,
    response: Response,
    if_match: IfMatch = None,
) -> DsarOut:
    return _etag(response, await service.transition(who, id, body, if_match))


@router.post(
    "/{id}/extension",
    response_model=DsarOut,
    operation_id="extendDsar",
    summary="Take the extension (once, within the first period)",
    responses={**problems(404, 409, 412), **sends(200, etag=True)},
)
async def extend_dsar(
    id: uuid.UUID,
    body: ExtensionIn,
    service: ServiceDep,
    who: DsarWriteScope,
    response: Response,
    if_match: IfMatch = None,
) -> DsarOut:
    return _etag(response, await service.extend(who, id, body, if_match))


@router.get(
    "/{id}/events",
    response_model=DsarEventList,
    operation_id="listDsarEvents",
    summary="The request's timeline",
    responses=problems(404),
)
async def list_dsar_events(
    id: uuid.UUID,
    service: ServiceDep,
    who: DsarReadScope,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> DsarEventList:
    items, nxt = await service.events(who, id, limit, cursor)
    return DsarEventList(items=items, next_cursor=nxt)
