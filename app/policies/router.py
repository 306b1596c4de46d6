"""/v1/policies: policies as versioned configuration (DESIGN §4)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from app.core.deps import request_session, require
from app.core.idempotency import IdempotencyKeyHeader
from app.core.instants import json_ready
from app.core.openapi import created, problems, sends
from app.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery
from app.core.routing import AppRoute
from app.core.security import Principal
from app.policies.schemas import (
    KEY_PATTERN,
    MINIMAL_EXAMPLE,
    SPOTRAK_EXAMPLE,
    BreachPreviewIn,
    BreachPreviewOut,
    DsarPreviewIn,
    DsarPreviewOut,
    PolicyCreate,
    PolicyList,
    PolicyPublish,
    PolicyRead,
    RetentionPreviewIn,
    RetentionPreviewOut,
)
from app.policies.service import PolicyService, PreviewService

router = APIRouter(prefix="/v1/policies", tags=["policies"], route_class=AppRoute)
# the scopes each route requires (app/core/deps.py: require)
PoliciesReadScope = Annotated[Principal, Depends(require("policies:read"))]
PoliciesWriteScope = Annotated[Principal, Depends(require("policies:write"))]


async def get_service(request: Request) -> AsyncIterator[PolicyService]:
    async with request_session(request) as session:
        yield PolicyService(session, request.app.state.clock)


ServiceDep = Annotated[PolicyService, Depends(get_service)]
PolicyKey = Annotated[str, Path(pattern=KEY_PATTERN, max_length=64, description="The policy's key")]

_CREATE_EXAMPLES: dict[str, Any] = {
    "spotrak": {"summary": "GDPR policy with its own promises", "value": SPOTRAK_EXAMPLE},
    "minimal": {
        "summary": "Only the required fields; the rest from the regime",
        "value": MINIMAL_EXAMPLE,
    },
}
_PUBLISH_EXAMPLES: dict[str, Any] = {
    "new-version": {
        "summary": "A new version (takes effect after the change notice)",
        "value": {k: v for k, v in SPOTRAK_EXAMPLE.items() if k != "key"},
    }
}


@router.post(
    "",
    status_code=201,
    response_model=PolicyRead,
    operation_id="createPolicy",
    summary="Create a policy (version 1)",
    responses={**problems(409), **sends(201, location=True)},
)
async def create_policy(
    body: Annotated[PolicyCreate, Body(openapi_examples=_CREATE_EXAMPLES)],
    service: ServiceDep,
    who: PoliciesWriteScope,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    result = await service.create(who, body, idempotency_key)
    if isinstance(result, JSONResponse):
        return result
    return created(result, f"/v1/policies/{result.key}")


@router.get(
    "",
    response_model=PolicyList,
    operation_id="listPolicies",
    summary="List policies (each at its version in force)",
    responses=problems(),
)
async def list_policies(
    service: ServiceDep,
    who: PoliciesReadScope,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> PolicyList:
    items, nxt = await service.list_page(who, limit, cursor)
    return PolicyList(items=items, next_cursor=nxt)


@router.get(
    "/{key}",
    response_model=PolicyRead,
    operation_id="getPolicy",
    summary="Get the version in force now",
    responses=problems(404),
)
async def get_policy(key: PolicyKey, service: ServiceDep, who: PoliciesReadScope) -> PolicyRead:
    return await service.get(who, key)


@router.put(
    "/{key}",
    status_code=201,
    response_model=PolicyRead,
    operation_id="publishPolicyVersion",
    summary="Publish a new version",
    description="Versions are immutable. The new one takes effect at publication plus the "
    "change notice (or at `effective_from`, if later); until then the previous one governs.",
    responses={**problems(404), **sends(201, location=True)},
)
async def publish_policy_version(
    key: PolicyKey,
    body: Annotated[PolicyPublish, Body(openapi_examples=_PUBLISH_EXAMPLES)],
    service: ServiceDep,
    who: PoliciesWriteScope,
) -> Any:
    result = await service.publish(who, key, body)
    return created(result, f"/v1/policies/{key}/versions/{result.version}")


@router.get(
    "/{key}/versions",
    response_model=PolicyList,
    operation_id="listPolicyVersions",
    summary="List a policy's versions, oldest first",
    responses=problems(404),
)
async def list_policy_versions(
    key: PolicyKey,
    service: ServiceDep,
    who: PoliciesReadScope,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> PolicyList:
    items, nxt = await service.versions(who, key, limit, cursor)
    return PolicyList(items=items, next_cursor=nxt)


@router.get(
    "/{key}/versions/{version}",
    response_model=PolicyRead,
    operation_id="getPolicyVersion",
    summary="Get one version",
    responses=problems(404),
)
async def get_policy_version(
    key: PolicyKey,
    version: Annotated[int, Path(ge=1, le=1_000_000)],
    service: ServiceDep,
    who: PoliciesReadScope,
) -> PolicyRead:
    return await service.version(who, key, version)


async def get_preview(request: Request) -> AsyncIterator[PreviewService]:
    async with request_session(request) as session:
        yield PreviewService(session, request.app.state.clock)


PreviewDep = Annotated[PreviewService, Depends(get_preview)]
DeadlineIn = Annotated[DsarPreviewIn | BreachPreviewIn, Field(discriminator="kind")]

_DEADLINE_EXAMPLES: dict[str, Any] = {
    "dsar": {
        "summary": "An access request received on 31 January",
        "value": {
            "kind": "dsar",
            "type": "access",
            "received_at": "2027-01-31T10:00:00+01:00",
            "verified_at": None,
        },
    },
    "breach": {
        "summary": "A high-risk breach discovered on a Saturday night",
        "value": {"kind": "breach", "aware_at": "2026-10-24T22:30:00+02:00", "risk": "high_risk"},
    },
}
_RETENTION_EXAMPLES: dict[str, Any] = {
    "two-records": {
        "summary": "A log line and a closed customer account",
        "value": {
            "records": [
                {"category": "technical_logs", "collected_at": "2026-03-01T08:00:00Z"},
                {
                    "category": "business_data",
                    "collected_at": "2024-01-10T08:00:00Z",
                    "events": {"contract_ended": "2026-06-30T17:00:00+02:00"},
                },
            ]
        },
    }
}


@router.post(
    "/{key}/deadlines",
    response_model=DsarPreviewOut | BreachPreviewOut,
    operation_id="previewDeadlines",
    summary="Preview the deadlines this policy gives for some facts",
    description="Uses the version in force at `received_at` / `aware_at`. `*_date` and "
    "`acknowledge_by` are local dates in the policy's timezone; `*_at` are instants.",
    responses=problems(404),
)
async def preview_deadlines(
    key: PolicyKey,
    body: Annotated[DeadlineIn, Body(openapi_examples=_DEADLINE_EXAMPLES)],
    service: PreviewDep,
    who: PoliciesReadScope,
) -> DsarPreviewOut | BreachPreviewOut:
    return await service.deadlines(who, key, body)


@router.post(
    "/{key}/retention",
    response_model=RetentionPreviewOut,
    operation_id="evaluateRetention",
    summary="Evaluate retention expiry for up to 10,000 records",
    description="Results come in input order. An unknown category is a problem in that "
    "record's slot, not a failure of the call. Uses the version in force now.",
    responses=problems(404, 413),
)
async def evaluate_retention(
    key: PolicyKey,
    body: Annotated[RetentionPreviewIn, Body(openapi_examples=_RETENTION_EXAMPLES)],
    service: PreviewDep,
    who: PoliciesReadScope,
) -> Response:
    result = await service.retention(who, key, [dict(r) for r in body.records])
    # Serialised here in one pass: 10,000 results through response_model validation would
    # cost more than the evaluation itself. The schema above still documents the shape.
    return Response(json.dumps(result, default=_json_default), media_type="application/json")


def _json_default(value: object) -> str:
    if isinstance(value, date):  # an instant (in UTC, with Z) or a date
        return str(json_ready(value))
    raise TypeError(type(value).__name__)
