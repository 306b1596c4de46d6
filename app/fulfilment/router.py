"""/v1/systems, /v1/tasks, a ticket's tasks and its access package (DESIGN §13)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from app.core.deps import request_uow, require, require_operator_or_system
from app.core.errors import ServiceUnavailable, Unprocessable
from app.core.idempotency import IdempotencyKeyHeader
from app.core.openapi import created, problems
from app.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery
from app.core.routing import AppRoute, hot
from app.core.security import TASKS_WORK, Principal, dev_secret
from app.fulfilment.models import TaskStatus
from app.fulfilment.package import PAGE_HEADERS, render_html, verify_link
from app.fulfilment.schemas import (
    SYSTEM_KEY_PATTERN,
    DsarPackage,
    PackageLinkIn,
    PackageLinkRead,
    SystemCreate,
    SystemCreated,
    SystemList,
    SystemRead,
    SystemSecretRotated,
    SystemUpdate,
    SystemUpdated,
    TaskClaimed,
    TaskClaimIn,
    TaskList,
    TaskRead,
    TaskResultIn,
    TaskType,
    TaskWaiveIn,
)
from app.fulfilment.service import FulfilmentConfig, FulfilmentService

# Scope aliases live with their domain.
SystemsManageScope = Annotated[Principal, Depends(require("systems:manage"))]
TasksWorkScope = Annotated[Principal, Depends(require(TASKS_WORK))]
TasksReadScope = Annotated[Principal, Depends(require_operator_or_system("dsar:read"))]
DsarReadScope = Annotated[Principal, Depends(require("dsar:read"))]
DsarWriteScope = Annotated[Principal, Depends(require("dsar:write"))]

router = APIRouter(route_class=AppRoute)
MAX_LINK = timedelta(days=30)
MIN_LINK = timedelta(hours=1)
LINK_UNITS = {"hours": 1, "days": 24, "weeks": 24 * 7}


async def get_service(request: Request) -> AsyncIterator[FulfilmentService]:
    settings = request.app.state.settings
    config = FulfilmentConfig(
        allow_hosts=settings.webhook_allow_host_set,
        data_max_bytes=settings.task_data_max_bytes,
        backoff_base_seconds=settings.task_retry_backoff_base_seconds,
        backoff_max_seconds=settings.task_retry_backoff_max_seconds,
        keyring=request.app.state.secrets,
        secret_overlap=timedelta(hours=settings.webhook_secret_overlap_hours),
    )
    async with request_uow(request) as uow:
        yield FulfilmentService(uow, request.app.state.clock, config)


ServiceDep = Annotated[FulfilmentService, Depends(get_service)]
SystemKey = Annotated[str, Path(pattern=SYSTEM_KEY_PATTERN, max_length=64)]


class PackageLinksOff(ServiceUnavailable):
    code = "package_links_not_configured"


class LinkPeriodInvalid(Unprocessable):
    code = "validation_error"


def link_key(request: Request) -> str:
    """PACKAGE_LINK_SECRET; in dev generated once and kept beside the JWT secret."""
    key: str | None = getattr(request.app.state, "package_link_key", None)
    if key is None:
        settings = request.app.state.settings
        if settings.package_link_secret:
            key = str(settings.package_link_secret)
        elif settings.app_env == "production":
            raise PackageLinksOff("PACKAGE_LINK_SECRET is not set: package links are off")
        else:
            key = dev_secret(settings.package_link_secret_path())
        request.app.state.package_link_key = key
    return key


# ---- systems -------------------------------------------------------------------------------


@router.post(
    "/v1/systems",
    status_code=201,
    response_model=SystemCreated,
    operation_id="createSystem",
    tags=["systems"],
    summary="Register a system that holds personal data",
    description="A push system gets its signing secret (`whsec_…`) once: its `task.created` "
    "jobs are POSTed to its URL signed like webhooks (Standard Webhooks headers), with the "
    "webhooks' retries. A pull system claims its tasks with `POST /v1/tasks/claim`.",
    responses=problems(409),
)
async def create_system(
    body: SystemCreate,
    service: ServiceDep,
    who: SystemsManageScope,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    result = await service.create_system(who, body, idempotency_key)
    if isinstance(result, JSONResponse):
        return result
    return created(result, f"/v1/systems/{result.key}", result.version)


@router.get(
    "/v1/systems",
    response_model=SystemList,
    operation_id="listSystems",
    tags=["systems"],
    summary="List the tenant's systems",
    responses=problems(),
)
async def list_systems(
    service: ServiceDep,
    who: SystemsManageScope,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> SystemList:
    items, nxt = await service.list_systems(who, limit, cursor)
    return SystemList(items=items, next_cursor=nxt)


@router.get(
    "/v1/systems/{key}",
    response_model=SystemRead,
    operation_id="getSystem",
    tags=["systems"],
    summary="Read one system",
    responses=problems(404),
)
async def get_system(key: SystemKey, service: ServiceDep, who: SystemsManageScope) -> SystemRead:
    return await service.get_system(who, key)


@router.patch(
    "/v1/systems/{key}",
    response_model=SystemUpdated,
    operation_id="updateSystem",
    tags=["systems"],
    summary="Change a system (`active: false` retires it)",
    description="Any field. A retired system gets no new tasks; its open tasks stay. A pull "
    "system switched to push gets its secret in this answer, once.",
    responses=problems(404),
)
async def update_system(
    key: SystemKey, body: SystemUpdate, service: ServiceDep, who: SystemsManageScope
) -> SystemUpdated:
    read, secret = await service.update_system(who, key, body)
    return SystemUpdated(**read.model_dump(), secret=secret)


@router.post(
    "/v1/systems/{key}/rotate-secret",
    response_model=SystemSecretRotated,
    operation_id="rotateSystemSecret",
    tags=["systems"],
    summary="Issue a new signing secret for a push system",
    description="Returns the new secret once. For WEBHOOK_SECRET_OVERLAP_HOURS (default 24) "
    "every job carries both signatures, space-separated in `webhook-signature` "
    "(`v1,<new> v1,<old>`, Standard Webhooks); then only the new one.",
    responses=problems(404, 409),
)
async def rotate_system_secret(
    key: SystemKey, service: ServiceDep, who: SystemsManageScope
) -> SystemSecretRotated:
    return await service.rotate_secret(who, key)


# ---- a ticket's tasks and package ----------------------------------------------------------


@router.get(
    "/v1/dsars/{id}/tasks",
    response_model=TaskList,
    operation_id="listDsarTasks",
    tags=["dsars"],
    summary="The request's tasks at its systems",
    responses=problems(404),
)
async def list_dsar_tasks(
    id: uuid.UUID,
    service: ServiceDep,
    who: DsarReadScope,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> TaskList:
    items, nxt = await service.dsar_tasks(who, id, limit, cursor)
    return TaskList(items=items, next_cursor=nxt)


@router.get(
    "/v1/dsars/{id}/package",
    response_model=DsarPackage,
    operation_id="getDsarPackage",
    tags=["dsars"],
    summary="The access package: what each system holds",
    description="JSON; with `Accept: text/html` the same as a page a person can read.",
    responses={
        **problems(404),
        200: {"content": {"text/html": {"schema": {"type": "string"}}}},
    },
)
async def get_dsar_package(
    id: uuid.UUID, request: Request, service: ServiceDep, who: DsarReadScope
) -> Any:
    package = await service.package(who.tenant, id)
    accept = request.headers.get("accept", "")
    if "text/html" in accept and "application/json" not in accept:
        return HTMLResponse(render_html(package), headers=PAGE_HEADERS)
    return package


@router.post(
    "/v1/dsars/{id}/package/link",
    status_code=201,
    response_model=PackageLinkRead,
    operation_id="createDsarPackageLink",
    tags=["dsars"],
    summary="An expiring link to the package, for the person",
    description="The URL needs no token: it serves the HTML package until `expires_at` "
    "(1 hour to 30 days), then 410.",
    responses=problems(404, 503),
)
async def create_dsar_package_link(
    id: uuid.UUID,
    body: PackageLinkIn,
    request: Request,
    service: ServiceDep,
    who: DsarWriteScope,
) -> Response:
    unit_hours = LINK_UNITS.get(body.expires_in.unit)
    if unit_hours is None:
        raise LinkPeriodInvalid.at(["body", "expires_in", "unit"], "hours, days or weeks")
    span = timedelta(hours=body.expires_in.value * unit_hours)
    if not MIN_LINK <= span <= MAX_LINK:
        raise LinkPeriodInvalid.at(["body", "expires_in"], "from 1 hour to 30 days")
    link = await service.create_link(
        who, id, span, link_key(request), str(request.base_url).rstrip("/")
    )
    return created(link, link.url)


@router.get(
    "/v1/package-links/{token}",
    response_class=HTMLResponse,
    operation_id="openDsarPackageLink",
    tags=["dsars"],
    summary="Open an access package link (no token: the link is the credential)",
    responses={
        **problems(404, 410),
        200: {"content": {"text/html": {"schema": {"type": "string"}}}},
    },
)
async def open_dsar_package_link(
    token: Annotated[str, Path(max_length=512)], request: Request, service: ServiceDep
) -> HTMLResponse:
    claims = verify_link(link_key(request), token, request.app.state.clock())
    package = await service.open_link(claims, token)
    return HTMLResponse(render_html(package), headers=PAGE_HEADERS)


# ---- tasks ---------------------------------------------------------------------------------
# `{id:uuid}`: `/v1/tasks/claim` is not a task id, so `GET /v1/tasks/claim` is a 405 (Allow:
# POST), not a 422 about a malformed id.


@router.get(
    "/v1/tasks",
    response_model=TaskList,
    operation_id="listTasks",
    tags=["tasks"],
    summary="List tasks (an operator: all; a system's token: its own)",
    responses=problems(),
)
async def list_tasks(
    service: ServiceDep,
    who: TasksReadScope,
    status: TaskStatus | None = None,
    system: Annotated[str | None, Query(pattern=SYSTEM_KEY_PATTERN, max_length=64)] = None,
    dsar_id: uuid.UUID | None = None,
    overdue: bool | None = None,
    type: Annotated[
        TaskType | None, Query(description="A request type, retention_sweep or retention_erasure")
    ] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> TaskList:
    items, nxt = await service.list_tasks(
        who,
        status=status,
        type=type,
        system=system,
        dsar_id=dsar_id,
        overdue=overdue,
        limit=limit,
        cursor=cursor,
    )
    return TaskList(items=items, next_cursor=nxt)


@router.post(
    "/v1/tasks/claim",
    response_model=TaskClaimed,
    operation_id="claimTasks",
    tags=["tasks"],
    summary="Lease pending tasks (a pull system's token)",
    description="Each task is leased to this caller for `lease_seconds`; a lease that runs "
    "out makes the task claimable again. Two claimers never hold one task.",
    responses=problems(404),
)
@hot  # a pull system's worker calls it in a loop
async def claim_tasks(body: TaskClaimIn, service: ServiceDep, who: TasksWorkScope) -> TaskClaimed:
    return TaskClaimed(items=await service.claim(who, body))


@router.get(
    "/v1/tasks/{id:uuid}",
    response_model=TaskRead,
    operation_id="getTask",
    tags=["tasks"],
    summary="Read one task",
    responses=problems(404),
)
async def get_task(id: uuid.UUID, service: ServiceDep, who: TasksReadScope) -> TaskRead:
    return await service.get_task(who, id)


@router.post(
    "/v1/tasks/{id:uuid}/result",
    response_model=TaskRead,
    operation_id="reportTaskResult",
    tags=["tasks"],
    summary="Report what the system did",
    description="`data` for access and portability only (at most TASK_DATA_MAX_BYTES, else "
    "413); `reason` for failed and refused. The same report again answers the same; a "
    "different one after a final report is 409 `task_already_reported`.",
    responses=problems(404, 409),
)
async def report_task_result(
    id: uuid.UUID, body: TaskResultIn, service: ServiceDep, who: TasksWorkScope
) -> TaskRead:
    return await service.report(who, id, body)


@router.post(
    "/v1/tasks/{id:uuid}/waive",
    response_model=TaskRead,
    operation_id="waiveTask",
    tags=["tasks"],
    summary="Waive a task (the operator's lever)",
    responses=problems(404, 409),
)
async def waive_task(
    id: uuid.UUID, body: TaskWaiveIn, service: ServiceDep, who: DsarWriteScope
) -> TaskRead:
    return await service.waive(who, id, body)


@router.post(
    "/v1/tasks/{id:uuid}/retry",
    response_model=TaskRead,
    operation_id="retryTask",
    tags=["tasks"],
    summary="Send a failed or refused task back to its system",
    responses=problems(404, 409),
)
async def retry_task(id: uuid.UUID, service: ServiceDep, who: DsarWriteScope) -> TaskRead:
    return await service.retry(who, id)
