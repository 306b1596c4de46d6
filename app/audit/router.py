"""/v1/audit-events: the tenant's hash-chained audit log (DESIGN §9)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app.audit.schemas import AuditEventList, AuditVerification
from app.audit.service import AuditService
from app.core.deps import request_session, require
from app.core.instants import Instant
from app.core.openapi import problems
from app.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery
from app.core.routing import AppRoute
from app.core.security import Principal

router = APIRouter(prefix="/v1/audit-events", tags=["audit"], route_class=AppRoute)
# the scopes each route requires (app/core/deps.py: require)
AuditReadScope = Annotated[Principal, Depends(require("audit:read"))]


async def get_service(request: Request) -> AsyncIterator[AuditService]:
    async with request_session(request) as session:
        yield AuditService(session)


ServiceDep = Annotated[AuditService, Depends(get_service)]
Short = Annotated[str | None, Query(max_length=64)]


@router.get(
    "",
    response_model=AuditEventList,
    operation_id="listAuditEvents",
    summary="The audit log, oldest first",
    description="Every change, with actor, action and object. `digest` chains each entry to "
    "the tenant's previous one; entries are sealed into the chain by the worker shortly after "
    "they are written (`chain_seq` and `digest` are null until then).",
    responses=problems(),
)
async def list_audit_events(
    service: ServiceDep,
    who: AuditReadScope,
    action: Short = None,
    object_type: Short = None,
    object_id: Short = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    since: Instant | None = None,
    until: Instant | None = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> AuditEventList:
    items, nxt = await service.list_page(
        who,
        action=action,
        object_type=object_type,
        object_id=object_id,
        actor=actor,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return AuditEventList(items=items, next_cursor=nxt)


@router.get(
    "/verify",
    response_model=AuditVerification,
    operation_id="verifyAuditChain",
    summary="Recompute the tenant's chain and report the first broken link",
    responses=problems(),
)
async def verify_audit_chain(service: ServiceDep, who: AuditReadScope) -> AuditVerification:
    return await service.verify(who)
