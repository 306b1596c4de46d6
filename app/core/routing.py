"""The route class of every router: text that cannot be stored is refused, and the hot routes
serve the ordinary request without FastAPI's per-request dependency solver.

U+0000. PostgreSQL cannot store it in text or jsonb, so a JSON body carrying it is refused
with a 422 on every backend (not stored on SQLite and a 500 on PostgreSQL): `AppRequest.json`
checks the parsed body, and the middleware checks paths and query strings.

Hot routes.

FastAPI resolves every route's dependencies and parameters through a generic solver on each
request, after several layers of middleware, exception wrapping and route matching; on the
three hottest routes (record a consent event, read the current consent state, open a DSAR)
that machinery was most of the request's CPU, more than the database round trip.

A route declared with `@hot(handler)` (on a router whose `route_class` is `AppRoute`) is
served first by `handler`, called by `HotPaths` (an ASGI layer just inside the request-context
middleware, so request ids, access log, metrics, body limit and deadline all apply) for a
request whose method and path match the declared route. The handler does what the declared
dependencies would do for the ordinary case — the bearer token through the same cached
verifier, the same scope check and write limiter, the body through the same pydantic model,
the same service method — or returns None, having changed nothing, for anything else: no or
a bad token, a missing scope, a body the model rejects, a header or query parameter it does
not handle. FastAPI then serves the request exactly as declared (the body replayed), so every
error response of validation or auth comes from one code path, and the OpenAPI document is the
declared route's. An exception the handler raises (a domain error, a database outage) is
answered by the app's own exception handlers, as FastAPI would. `FAST_PATHS=false` turns this
off (the equivalence tests run both ways).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.deps import authenticate
from app.core.errors import DomainError, InvalidCharacter
from app.core.security import Principal

FastHandler = Callable[[Request], Awaitable[Response | None]]
_HANDLERS: dict[Callable[..., Any], FastHandler] = {}
# (method, declared route, its handler) for every hot route, in declaration order
_HOT_ROUTES: list[tuple[str, APIRoute, FastHandler]] = []

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)


def hot(handler: FastHandler) -> Callable[[F], F]:
    """Marks an endpoint as served first by `handler` (see the module docstring)."""

    def mark(endpoint: F) -> F:
        _HANDLERS[endpoint] = handler
        return endpoint

    return mark


class AppRequest(Request):
    received: bytes | None = None

    async def body(self) -> bytes:
        # kept here (not only in Starlette's private cache) so that HotPaths can replay it
        if self.received is None:
            self.received = await super().body()
        return self.received

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
    """Where U+0000 first occurs in parsed JSON, or None: the path of the string value, or of
    the object whose key holds it (the offending key is not echoed back)."""
    stack: list[tuple[list[str | int], Any]] = [([], data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return loc
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                if "\x00" in key:
                    return loc
                stack.append(([*loc, key], item))
        elif isinstance(value, list):
            stack.extend(([*loc, i], item) for i, item in reversed(list(enumerate(value))))
    return None


class AppRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        fast = _HANDLERS.get(endpoint)
        if fast is not None:
            for method in sorted(self.methods or ()):
                _HOT_ROUTES.append((method, self, fast))

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()

        async def handler(request: Request) -> Response:
            return await declared(AppRequest(request.scope, request.receive))

        return handler


class HotPaths:
    """The ASGI layer that offers a request to its hot route's handler first (module
    docstring). Added as the innermost user middleware, with the FastAPI app."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.api.state.settings.fast_paths:
            hit = _match(scope)
            if hit is not None:
                fast, child_scope = hit
                scope.update(child_scope)  # route (its template names the access log line), params
                request = AppRequest(scope, receive)
                try:
                    response = await fast(request)
                except Exception as exc:
                    response = await self._answer(request, exc)
                if response is not None:
                    await response(scope, receive, send)
                    return
                receive = _replaying(request.received, receive)
        await self.app(scope, receive, send)

    async def _answer(self, request: Request, exc: Exception) -> Response:
        """The app's exception handler for `exc`, looked up as Starlette does (status code
        first for HTTP exceptions, then the class hierarchy); none → raised on."""
        handlers = self.api.exception_handlers
        handler = None
        if isinstance(exc, StarletteHTTPException):
            handler = handlers.get(exc.status_code)
        if handler is None:
            handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
        if handler is None:
            raise exc
        response = handler(request, exc)
        if inspect.isawaitable(response):
            response = await response
        return response


def _match(scope: Scope) -> tuple[FastHandler, Scope] | None:
    """The hot route for this request, by the route's own matching (path, root path and
    parameter conversion as the router does it), with the scope it adds."""
    method = scope["method"]
    for wanted, route, fast in _HOT_ROUTES:
        if wanted != method:
            continue
        match, child_scope = route.matches(scope)
        if match is Match.FULL:
            return fast, child_scope
    return None


def _replaying(body: bytes | None, receive: Receive) -> Receive:
    """`receive` for the declared route after a hot handler read the body: the body again,
    then whatever the server sends next (a disconnect)."""
    if body is None:
        return receive
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def principal(request: Request, *scopes: str) -> Principal | None:
    """`deps.authenticate` for a hot handler: None instead of a 401/403 (the declared route
    then answers). Writes then call `check_write_limit`, whose 429 is raised from the handler
    after authentication, as the declared dependency raises it."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        return authenticate(request, token, *scopes)
    except DomainError:
        return None


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
        await request.body()
    except ClientDisconnect:
        return None  # nothing was read: the declared route meets the same disconnect
    try:
        # a body refused here is replayed to the declared route, which parses it again and
        # answers with its own problem
        return model.model_validate(await request.json())
    except (ValueError, RecursionError, ValidationError):
        return None
