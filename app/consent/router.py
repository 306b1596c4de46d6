"""/v1/consent-events: the append-only consent ledger (DESIGN §7).

No route updates or deletes an event: PUT, PATCH and DELETE on an event are 405.

`{id:uuid}`: only a UUID is an event id, so `/batch` is never read as one (`GET
/v1/consent-events/batch` is 405 with `Allow: POST`, not a 422 about a malformed id); a path
segment that is not a UUID names no event (404).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from app.consent.schemas import (
    ConsentBatchIn,
    ConsentBatchOut,
    ConsentEventCreated,
    ConsentEventIn,
    ConsentEventList,
    ConsentEventOut,
    ConsentReceipt,
)
from app.consent.service import ConsentService
from app.core.deps import request_uow, require
from app.core.idempotency import IdempotencyKeyHeader
from app.core.instants import Instant
from app.core.openapi import created, model_response, problems, sends
from app.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery
from app.core.routing import AppRoute, hot
from app.core.security import Principal
from app.policies.schemas import KEY_PATTERN

router = APIRouter(prefix="/v1/consent-events", tags=["consent"], route_class=AppRoute)
# the scopes each route requires (app/core/deps.py: require)
ConsentReadScope = Annotated[Principal, Depends(require("consent:read"))]
ConsentWriteScope = Annotated[Principal, Depends(require("consent:write"))]


async def get_service(request: Request) -> AsyncIterator[ConsentService]:
    # one dependency for session and clock: the hottest routes resolve as few as possible
    async with request_uow(request) as uow:
        yield ConsentService(uow, request.app.state.clock)


ServiceDep = Annotated[ConsentService, Depends(get_service)]
SecGpc = Annotated[
    str | None,
    Header(
        alias="Sec-GPC",
        max_length=8,
        description="Global Privacy Control: `1` also records an opt-out (denied, source "
        "`gpc`) for every purpose with `honors_gpc`",
    ),
]


def _gpc(sec_gpc: str | None) -> bool:
    return sec_gpc is not None and sec_gpc.strip() == "1"


@router.post(
    "",
    status_code=201,
    response_model=ConsentEventCreated,
    operation_id="recordConsentEvent",
    summary="Record a grant, denial or withdrawal",
    description="Appends the event with the policy version in force at `occurred_at` and moves "
    "the subject's current state forward in the same transaction — unless a newer event already "
    "set it (`became_current: false`). `Sec-GPC: 1` also records an opt-out for every purpose "
    "with `honors_gpc` (listed in `gpc_applied`).",
    responses={**problems(409), **sends(201, location=True)},
)
@hot
async def record_consent_event(
    body: ConsentEventIn,
    service: ServiceDep,
    who: ConsentWriteScope,
    idempotency_key: IdempotencyKeyHeader = None,
    sec_gpc: SecGpc = None,
) -> Any:
    result = await service.record(who, body, _gpc(sec_gpc), idempotency_key)
    if isinstance(result, JSONResponse):
        return result
    return created(result, f"/v1/consent-events/{result.id}")


@router.post(
    "/batch",
    response_model=ConsentBatchOut,
    operation_id="recordConsentEventsBatch",
    summary="Record up to 1,000 events in one call",
    description="Each item is checked on its own: `results` holds, in order, the recorded event "
    "or a problem. The valid ones are written with one multi-row insert. More than 1,000 is 413.",
    responses=problems(409, 413),
)
async def record_consent_events_batch(
    body: ConsentBatchIn,
    service: ServiceDep,
    who: ConsentWriteScope,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    result = await service.record_batch(who, body.events, idempotency_key)
    if isinstance(result, JSONResponse):
        return result
    return model_response(result)


@router.get(
    "",
    response_model=ConsentEventList,
    operation_id="listConsentEvents",
    summary="The ledger, newest first",
    responses=problems(),
)
async def list_consent_events(
    service: ServiceDep,
    who: ConsentReadScope,
    subject_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    purpose: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    policy_key: Annotated[str | None, Query(pattern=KEY_PATTERN, max_length=64)] = None,
    since: Annotated[
        Instant | None, Query(description="Events that occurred at or after this instant")
    ] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> ConsentEventList:
    items, nxt = await service.history(
        who,
        subject_id=subject_id,
        purpose=purpose,
        policy_key=policy_key,
        since=since,
        limit=limit,
        cursor=cursor,
    )
    return ConsentEventList(items=items, next_cursor=nxt)


@router.get(
    "/{id:uuid}",
    response_model=ConsentEventOut,
    operation_id="getConsentEvent",
    summary="Read one event (events are never updated or deleted: PUT, PATCH, DELETE are 405)",
    responses=problems(404),
)
async def get_consent_event(
    id: uuid.UUID, service: ServiceDep, who: ConsentReadScope
) -> ConsentEventOut:
    return await service.get(who, id)


@router.get(
    "/{id:uuid}/receipt",
    response_model=ConsentReceipt,
    operation_id="getConsentReceipt",
    summary="A consent receipt (ISO/IEC TS 27560 fields) for one event",
    responses=problems(404),
)
async def get_consent_receipt(
    id: uuid.UUID, service: ServiceDep, who: ConsentReadScope
) -> ConsentReceipt:
    return await service.receipt(who, id)
