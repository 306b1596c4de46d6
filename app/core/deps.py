"""Request-scoped dependencies: the request's database session and the principal with its scopes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Unauthorized
from app.core.security import KeyConfig, Principal, verify_token

bearer = HTTPBearer(auto_error=False, description="JWT from `python -m app token`")


@asynccontextmanager
async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's ORM session; it carries the bare pool for the hot paths
    (app/core/rawpg.py). Closing is only needed when a transaction is still open (after an
    error): a session that never began one, or has committed, holds no connection."""
    session: AsyncSession = request.app.state.sessionmaker()
    session.info["raw_pool"] = getattr(request.app.state, "raw_pool", None)
    try:
        yield session
    finally:
        if session.in_transaction():
            await session.close()


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("A bearer token is required")
    keys: KeyConfig = request.app.state.keys
    principal = verify_token(keys, credentials.credentials)
    request.state.tenant = principal.tenant
    return principal


def require(*scopes: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency factory: the principal, after checking it holds every scope named."""

    writes = any(s.endswith(":write") or s == "webhooks:manage" for s in scopes)

    async def _dep(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        # one dependency level, not two: every request pays for each level it resolves
        principal = await get_principal(request, credentials)
        principal.require(*scopes)
        limiter = request.app.state.write_limiter
        if writes and limiter is not None and request.method != "GET":
            limiter.check(principal.tenant)
        return principal

    return _dep


PoliciesRead = Annotated[Principal, Depends(require("policies:read"))]
PoliciesWrite = Annotated[Principal, Depends(require("policies:write"))]
DsarRead = Annotated[Principal, Depends(require("dsar:read"))]
DsarWrite = Annotated[Principal, Depends(require("dsar:write"))]
ConsentRead = Annotated[Principal, Depends(require("consent:read"))]
ConsentWrite = Annotated[Principal, Depends(require("consent:write"))]
BreachRead = Annotated[Principal, Depends(require("breach:read"))]
BreachWrite = Annotated[Principal, Depends(require("breach:write"))]
SubjectExport = Annotated[Principal, Depends(require("consent:read", "dsar:read"))]
SubjectErase = Annotated[Principal, Depends(require("consent:write", "dsar:write"))]
WebhooksManage = Annotated[Principal, Depends(require("webhooks:manage"))]
AuditRead = Annotated[Principal, Depends(require("audit:read"))]
