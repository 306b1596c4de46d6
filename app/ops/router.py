"""Operational endpoints: liveness, readiness (database), Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.core.errors import problem_response
from app.core.routing import AppRoute
from app.ops.metrics import refresh

log = logging.getLogger("app.ops")

router = APIRouter(tags=["ops"], route_class=AppRoute)


@router.get("/healthz", operation_id="healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="The database is reachable",
    responses={503: {"description": "Database unreachable"}},
)
async def readyz(request: Request) -> Response:
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        return problem_response(503, "database_unavailable", "The database is not reachable")
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    try:
        async with request.app.state.sessionmaker() as session:
            await refresh(session, registry, request.app.state.clock())
    except Exception:  # the process metrics still answer while the database is away
        log.warning("metrics: database gauges not refreshed")
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
