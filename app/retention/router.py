"""/v1/retention/sweeps, a subject's retention events and state, /v1/holds (DESIGN §14).

Subject identifiers travel in the subject paths (the access log records route templates only);
`{subject_id:subject_id}` takes the rest of the path before the fixed end, as the other
subject routes do (app/subjects/router.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator

from app.core.deps import request_uow, require
from app.core.idempotency import IdempotencyKeyHeader
from app.core.openapi import created, problems
from app.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery
from app.core.routing import AppRoute
from app.core.security import Principal
from app.core.subject_id import SUBJECT_ID_MAX, SUBJECT_ID_RULES, refusal
from app.policies.schemas import KEY_PATTERN, SNAKE
from app.retention.schemas import (
    HoldCreate,
    HoldList,
    HoldRead,
    RetentionEventIn,
    RetentionEventRead,
    SubjectRetention,
    SweepList,
    SweepRunIn,
    SweepRunRead,
)
from app.retention.service import RetentionInvalid, RetentionService

RetentionReadScope = Annotated[Principal, Depends(require("retention:read"))]
RetentionWriteScope = Annotated[Principal, Depends(require("retention:write"))]

router = APIRouter(route_class=AppRoute)


async def get_service(request: Request) -> AsyncIterator[RetentionService]:
    async with request_uow(request) as uow:
        yield RetentionService(uow, request.app.state.clock)


ServiceDep = Annotated[RetentionService, Depends(get_service)]


def _date_text(value: Any) -> Any:
    """`YYYY-MM-DD` only: pydantic would read `0` as 1970-01-01."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("a date as YYYY-MM-DD")
    return value


LocalDate = Annotated[date, BeforeValidator(_date_text)]
SubjectId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=SUBJECT_ID_MAX,
        description="The subject's id, percent-encoded (`tenant/42` → `tenant%2F42`): every "
        "character of it, `/` included",
    ),
]


# ---- sweeps --------------------------------------------------------------------------------


@router.post(
    "/v1/retention/sweeps/run",
    response_model=SweepRunRead,
    operation_id="runRetentionSweeps",
    tags=["retention"],
    summary="Create today's sweeps now (the worker does it daily)",
    description="One `retention_sweep` task per (system, category it holds, retention rule "
    "triggered by `collected` or `last_activity`), at most one per (system, category, local "
    "day in the policy's timezone): a second run the same day creates nothing and lists the "
    "same sweeps. A category under a legal hold of everyone's records gets no sweep while the "
    "hold lasts (listed in `postponed`); held subjects are listed in each sweep's `holds`.",
    responses=problems(404),
)
async def run_retention_sweeps(
    service: ServiceDep,
    who: RetentionWriteScope,
    body: Annotated[
        SweepRunIn | None,
        Body(examples=[{"policy_key": "spotrak"}, {}], description="Optional: one policy"),
    ] = None,
) -> SweepRunRead:
    return await service.run_sweeps(who, body.policy_key if body is not None else None)


@router.get(
    "/v1/retention/sweeps",
    response_model=SweepList,
    operation_id="listRetentionSweeps",
    tags=["retention"],
    summary="List the sweeps, with their tasks' status and records affected",
    responses=problems(),
)
async def list_retention_sweeps(
    service: ServiceDep,
    who: RetentionReadScope,
    policy_key: Annotated[str | None, Query(pattern=KEY_PATTERN, max_length=64)] = None,
    system: Annotated[str | None, Query(pattern=KEY_PATTERN, max_length=64)] = None,
    category: Annotated[str | None, Query(pattern=SNAKE, max_length=64)] = None,
    day: Annotated[LocalDate | None, Query(description="The sweeps' local date")] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> SweepList:
    items, nxt = await service.list_sweeps(
        who,
        policy_key=policy_key,
        system=system,
        category=category,
        day=day,
        limit=limit,
        cursor=cursor,
    )
    return SweepList(items=items, next_cursor=nxt)


# ---- a subject's triggers and state ----------------------------------------------------------


@router.post(
    "/v1/subjects/{subject_id:subject_id}/retention-events",
    status_code=201,
    response_model=RetentionEventRead,
    operation_id="recordRetentionEvent",
    tags=["subjects"],
    summary="Record a per-subject retention trigger (account closed, contract ended, …)",
    description="`event` must be a `starts_at` that one of the policy's retention rules uses "
    "(`account_closed`, `contract_ended` or a custom name; another is 422 "
    "`retention_event_unknown` with `allowed`). The version in force at `occurred_at` "
    "governs. Each rule starting at the event gets an expiry; when it passes, the worker "
    "creates one `retention_erasure` task per system holding the category. Recording the "
    "same event again replaces the earlier occurrence's expiries not yet acted on.\n\n"
    f"Subject ids: {SUBJECT_ID_RULES}",
    responses=problems(409),
)
async def record_retention_event(
    subject_id: SubjectId,
    body: RetentionEventIn,
    service: ServiceDep,
    who: RetentionWriteScope,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    reason = refusal(subject_id)
    if reason is not None:
        raise RetentionInvalid.at(["path", "subject_id"], reason)
    result = await service.record_event(who, subject_id, body, idempotency_key)
    if isinstance(result, JSONResponse):
        return result
    read, location = result
    return created(read, location)


@router.get(
    "/v1/subjects/{subject_id:subject_id}/retention",
    response_model=SubjectRetention,
    operation_id="getSubjectRetention",
    tags=["subjects"],
    summary="The subject's retention state, one entry per policy and category",
    description="`state` ∈ `running expired not_started indefinite held`: a category kept "
    "from a per-subject event is `not_started` until the event is recorded; one kept from "
    "`collected` or `last_activity` is `running` per record (the daily sweeps act on it) or "
    "`indefinite`; `held` while a legal hold covers the subject's category. A subject never "
    "recorded reads like any other.\n\n"
    f"Subject ids: {SUBJECT_ID_RULES}",
    responses=problems(404),
)
async def get_subject_retention(
    subject_id: SubjectId,
    service: ServiceDep,
    who: RetentionReadScope,
    policy_key: Annotated[str | None, Query(pattern=KEY_PATTERN, max_length=64)] = None,
) -> SubjectRetention:
    return await service.subject_retention(who, subject_id, policy_key)


# ---- legal holds -----------------------------------------------------------------------------


@router.post(
    "/v1/holds",
    status_code=201,
    response_model=HoldRead,
    operation_id="createHold",
    tags=["holds"],
    summary="Place a legal hold (a subject, categories, or both)",
    description="While the hold is active (not released, before `until`) no sweep, retention "
    "erasure or DSAR erasure task touches what it covers (GDPR Art. 17(3)(e)): sweeps leave "
    "held subjects alone (`holds`), a category held for everyone gets no sweep, and erasure "
    "tasks it covers are created `held` and run once it ends. A subject hold without "
    "categories covers all the subject's data.",
    responses=problems(409),
)
async def create_hold(
    body: HoldCreate,
    service: ServiceDep,
    who: RetentionWriteScope,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    result = await service.create_hold(who, body, idempotency_key)
    if isinstance(result, JSONResponse):
        return result
    return created(result, f"/v1/holds/{result.id}")


@router.get(
    "/v1/holds",
    response_model=HoldList,
    operation_id="listHolds",
    tags=["holds"],
    summary="List the legal holds",
    responses=problems(),
)
async def list_holds(
    service: ServiceDep,
    who: RetentionReadScope,
    active: Annotated[bool | None, Query(description="Only active (or ended) holds")] = None,
    subject_id: Annotated[str | None, Query(min_length=1, max_length=SUBJECT_ID_MAX)] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> HoldList:
    items, nxt = await service.list_holds(
        who, active=active, subject_id=subject_id, limit=limit, cursor=cursor
    )
    return HoldList(items=items, next_cursor=nxt)


@router.delete(
    "/v1/holds/{id}",
    status_code=204,
    response_class=Response,
    operation_id="releaseHold",
    tags=["holds"],
    summary="Release a legal hold",
    description="The work it postponed runs from the next worker round. Releasing a hold "
    "already ended changes nothing (204).",
    responses=problems(404),
)
async def release_hold(id: uuid.UUID, service: ServiceDep, who: RetentionWriteScope) -> Response:
    await service.release_hold(who, id)
    return Response(status_code=204)
