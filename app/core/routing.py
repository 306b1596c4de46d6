"""The route class of every router: text that cannot be stored is refused, and the hot routes
serve the ordinary request without FastAPI's per-request dependency solver.

U+0000. PostgreSQL cannot store it in text or jsonb, so a JSON body carrying it is refused
with a 422 on every backend (not stored on SQLite and a 500 on PostgreSQL): `AppRequest.json`
checks the parsed body, and the middleware checks paths and query strings.

Hot routes.

FastAPI resolves every route's dependencies and parameters through a generic solver on each
request; on the three hottest routes (record a consent event, read the current consent state,
open a DSAR) that solver was the largest single cost, about a third of the request's CPU.

A route declared with `@hot(handler)` (on a router whose `route_class` is `AppRoute`) first
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

import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from app.core.errors import DomainError, InvalidCharacter
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


class AppRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            data = json.loads(body)
            if b"\\u0000" in body:  # the only way JSON can carry U+0000
                where = nul_location(data)
                if where is not None:
                    raise InvalidCharacter(["body", *where])
            self._json = data
        return self._json


def nul_location(data: Any) -> list[str | int] | None:
    """Where U+0000 first occurs in parsed JSON (a key or a string value), or None."""
    stack: list[tuple[list[str | int], Any]] = [([], data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return loc
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                if "\x00" in key:
                    return [*loc, key]
                stack.append(([*loc, key], item))
        elif isinstance(value, list):
            stack.extend(([*loc, i], item) for i, item in reversed(list(enumerate(value))))
    return None


class AppRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()
        fast = _HANDLERS.get(self.endpoint)

        async def handler(request: Request) -> Response:
            request = AppRequest(request.scope, request.receive)
            if fast is not None and request.app.state.settings.fast_paths:
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
