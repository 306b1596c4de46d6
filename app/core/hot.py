"""Hot routes: the ordinary request served without FastAPI's per-request dependency solver.

FastAPI resolves every route's dependencies and parameters through a generic solver on each
request; on the three hottest routes (record a consent event, read the current consent state,
open a DSAR) that solver was the largest single cost, about a third of the request's CPU.

A route declared with `@hot(handler)` (on a router whose `route_class` is `HotRoute`) first
offers the request to `handler`, which does what the declared dependencies would do for the
ordinary case — the bearer token through the same cached verifier, the same scope check and
write limiter, the body through the same pydantic model, the same service method — or
returns None, having changed nothing, for anything else: no or a bad token, a missing scope,
a body the model rejects, a header or query parameter it does not handle. FastAPI then
serves the request exactly as declared, so every error response comes from one code path,
and the OpenAPI document is the declared route's. `FAST_PATHS=false` turns this off (the
equivalence tests run both ways).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from app.core.errors import DomainError
from app.core.security import KeyConfig, Principal, verify_token

FastHandler = Callable[[Request], Awaitable[Response | None]]
_HANDLERS: dict[Callable[..., Any], FastHandler] = {}

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)


def hot(handler: FastHandler) -> Callable[[F], F]:
    """Marks an endpoint as served first by `handler` (see the module docstring)."""

    def mark(endpoint: F) -> F:
        _HANDLERS[endpoint] = handler
        return endpoint

    return mark


class HotRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()
        fast = _HANDLERS.get(self.endpoint)
        if fast is None:
            return declared

        async def handler(request: Request) -> Response:
            if request.app.state.settings.fast_paths:
                response = await fast(request)
                if response is not None:
                    return response
            return await declared(request)

        return handler


def principal(request: Request, *scopes: str) -> Principal | None:
    """The bearer token's principal holding every scope named, or None (the declared route
    then answers 401/403). A write also passes the tenant's write limiter, as the declared
    dependency does: its 429 is raised from here, after authentication, as there."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    keys: KeyConfig = request.app.state.keys
    try:
        who = verify_token(keys, token)
    except DomainError:
        return None
    if not who.scopes.issuperset(scopes):
        return None
    request.state.tenant = who.tenant
    return who


def check_write_limit(request: Request, who: Principal) -> None:
    limiter = request.app.state.write_limiter
    if limiter is not None:
        limiter.check(who.tenant)


def json_content(request: Request) -> bool:
    """True when the body is declared as plain `application/json` (anything else is left to
    FastAPI's own content-type handling)."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == "application/json"


async def body_as(request: Request, model: type[M]) -> M | None:
    """The JSON body validated by `model` as FastAPI validates a body parameter (parsed by
    `Request.json()`, then validated from Python objects), or None when either step fails."""
    if not json_content(request):
        return None
    try:
        # parsed and cached on the request by Starlette: the declared route reuses both
        return model.model_validate(await request.json())
    except (ValueError, RecursionError, ValidationError):
        return None
