"""Request-scoped dependencies: the request's database session and the principal with its scopes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Unauthorized
from app.core.security import Principal, Verifier, verify_token
from app.core.uow import UnitOfWork

bearer = HTTPBearer(auto_error=False, description="JWT from `python -m app token`")


def request_uow(request: Request) -> UnitOfWork:
    """The request's unit of work (app/core/uow.py), to use as `async with`: its session, and
    the bare pool behind it for a write that is one statement (PostgreSQL)."""
    state = request.app.state
    return UnitOfWork(state.sessionmaker(), getattr(state, "raw_pool", None))


@asynccontextmanager
async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's ORM session, for services whose writes are all on the session."""
    async with request_uow(request) as uow:
        yield uow.session


def authenticate(request: Request, token: str, *scopes: str) -> Principal:
    """The bearer token's principal, holding every scope named (401 or 403 otherwise). The
    tenant goes on the request for the access log, even when a scope is missing."""
    keys: Verifier = request.app.state.keys
    principal = verify_token(keys, token)
    request.state.tenant = principal.tenant
    principal.require(*scopes)
    return principal


async def check_write_limit(request: Request, principal: Principal) -> None:
    """The tenant's write rate limit (429), when one is configured (app/core/ratelimit.py)."""
    limiter = request.app.state.write_limiter
    if limiter is not None:
        await limiter.check(principal.tenant)


def require(*scopes: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency factory: the principal, after checking it holds every scope named."""

    writes = any(s.endswith((":write", ":manage", ":work")) for s in scopes)

    async def _dep(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        # one dependency level, not two: every request pays for each level it resolves
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthorized("A bearer token is required")
        principal = authenticate(request, credentials.credentials, *scopes)
        if writes and request.method != "GET":
            await check_write_limit(request, principal)
        return principal

    return _dep


def require_operator_or_system(
    operator_scope: str,
) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency factory: an operator with `operator_scope`, or a system's `tasks:work`
    token (the service then narrows what it sees to that system's own objects)."""

    async def _dep(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthorized("A bearer token is required")
        keys: Verifier = request.app.state.keys
        principal = verify_token(keys, credentials.credentials)
        request.state.tenant = principal.tenant
        principal.require_operator_or_system(operator_scope)
        return principal

    return _dep
