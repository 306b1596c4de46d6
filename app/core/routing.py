"""The route class of every router: text that cannot be stored is refused, and the hot routes
serve the ordinary request without FastAPI's per-request dependency solver.

U+0000. PostgreSQL cannot store it in text or jsonb, so a JSON body carrying it is refused
with a 422 on every backend (not stored on SQLite and a 500 on PostgreSQL): `AppRequest.json`
checks the parsed body, and the middleware checks paths and query strings.

Hot routes.

FastAPI resolves every route's dependencies and parameters through a generic solver on each
request, after several layers of middleware, exception wrapping and route matching; on the
three hottest routes (record a consent event, read the current consent state, open a DSAR)
that machinery was most of the request's CPU, more than the database round trip; a pull
system's claim, which its workers call in a loop, is marked too.

An endpoint marked `@hot` (on a router whose `route_class` is `AppRoute`) is also served by
`HotPaths`, an ASGI layer just inside the request-context middleware (request ids, access
log, metrics, body limit and deadline all apply), for a request whose method and path match
the declared route. There is no second handler: `HotRoute` is compiled once from the declared
route's own dependant — its path, query, header and cookie parameters, its body model, its
dependencies (the security dependency with its scopes, the service factory that yields the
service) — and binds a request in two phases:

1. bind: the JSON body through the route's body field, every parameter through its field
   (`request_params_to_args` / `request_body_to_args`, the functions FastAPI's solver
   applies), then the plain (non-generator) dependencies, innermost first. Any failure here
   — a parameter or body the fields refuse, no or a bad token, a missing scope, a body that
   is not plain JSON — changes nothing: the request falls through to FastAPI, which answers
   exactly as declared (the body replayed), so every validation and auth error comes from one
   code path. Plain dependencies must therefore be safe to run twice when a later step fails
   (authentication is; the write limiter runs last and a refused check takes no token).
2. serve: the generator dependencies (the session and the service) are entered, the declared
   endpoint is called with the bound values, and its result is answered as FastAPI answers
   it (a Response as is; anything else serialised through the route's response field and
   class). An exception raised here is answered by the app's exception handlers through
   Starlette's own `ExceptionMiddleware` (its lookup, not a copy of it).

A route `HotRoute` cannot bind (a sync or generator-of-generator dependency, background
tasks, security scopes, a form body) is refused when the route is declared, and a request is
left to FastAPI whenever the app has `dependency_overrides`. `FAST_PATHS=false` turns the
layer off (the equivalence tests run both ways; tests/hardening/test_fast_paths.py).
"""

from __future__ import annotations

import copy
import email.message
import inspect
import json
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi._compat import field_annotation_is_sequence
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import (
    _get_param_aliases,
    _get_param_model,
    request_body_to_args,
    request_params_to_args,
)
from fastapi.params import Form
from fastapi.routing import APIRoute, serialize_response
from fastapi.utils import is_body_allowed_for_status_code
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import InvalidCharacter

F = TypeVar("F", bound=Callable[..., Any])
_HOT: set[Callable[..., Any]] = set()
# (method, declared route, its binding) for every hot route, in declaration order
_HOT_ROUTES: list[tuple[str, APIRoute, HotRoute]] = []
_NOT_BOUND = object()


def hot(endpoint: F) -> F:
    """Marks an endpoint as served by `HotPaths` when its request binds (module docstring)."""
    _HOT.add(endpoint)
    return endpoint


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


def _is_async_gen(call: Any) -> bool:
    return inspect.isasyncgenfunction(call) or inspect.isasyncgenfunction(
        getattr(call, "__call__", None)  # noqa: B004
    )


def _is_coroutine(call: Any) -> bool:
    if inspect.isclass(call):
        return False
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004
    )


_IMMUTABLE = (type(None), str, bytes, int, float, bool, tuple, frozenset)
_NO_QUERY: Mapping[str, Any] = {}  # no query string: nothing to parse


@dataclass(slots=True)
class _Scalar:
    """One scalar parameter, bound as `request_params_to_args` binds it (one request key;
    absent → the default, or refused when required), with its lookups done once."""

    field: Any  # fastapi ModelField
    name: str
    key: str
    loc: tuple[str, str]
    required: bool
    default: Any
    validate_default: bool
    copy_default: bool  # FastAPI hands each request its own copy of a mutable default

    @classmethod
    def of(cls, field: Any) -> _Scalar | None:
        """None for what only FastAPI's general binding handles (sequences, models, several
        aliases): that kind of parameter is then bound by `request_params_to_args`."""
        if _get_param_model(field) is not None or field_annotation_is_sequence(
            field.field_info.annotation
        ):
            return None
        aliases = _get_param_aliases(field)
        if len(aliases) != 1:
            return None
        key = aliases[0][1]
        info = field.field_info
        return cls(
            field,
            field.name,
            key,
            (info.in_.value, key),
            info.is_required(),
            info.default,
            bool(info.validate_default),
            not isinstance(info.default, _IMMUTABLE),
        )


class _Kind:
    """The parameters of one kind (path, query, header, cookie) at one dependant level."""

    __slots__ = ("fields", "scalars")

    def __init__(self, fields: list[Any]) -> None:
        self.fields = fields
        scalars = [_Scalar.of(f) for f in fields]
        self.scalars: list[_Scalar] | None = (
            None if any(s is None for s in scalars) else [s for s in scalars if s is not None]
        )

    def bind(self, received: Mapping[str, Any], values: dict[str, Any]) -> bool:
        if self.scalars is None:
            bound, errors = request_params_to_args(self.fields, received)
            if errors:
                return False
            values.update(bound)
            return True
        for p in self.scalars:
            value = received.get(p.key)
            if value is None:
                if p.required:
                    return False
                value = copy.deepcopy(p.default) if p.copy_default else p.default
                if not p.validate_default:
                    values[p.name] = value
                    continue
            v, errors = p.field.validate(value, values, loc=p.loc)
            if errors:
                return False
            values[p.name] = v
        return True


@dataclass(slots=True)
class _Params:
    """What one dependant level binds from the request itself."""

    path: _Kind | None
    query: _Kind | None
    header: _Kind | None
    cookie: _Kind | None
    request_name: str | None
    connection_name: str | None
    response_name: str | None

    @classmethod
    def of(cls, dependant: Dependant, where: str) -> _Params:
        unsupported = [
            what
            for what, name in (
                ("background tasks", dependant.background_tasks_param_name),
                ("security scopes", dependant.security_scopes_param_name),
                ("a websocket", dependant.websocket_param_name),
            )
            if name is not None
        ]
        if unsupported:
            raise TypeError(f"{where}: a hot route cannot bind {', '.join(unsupported)}")

        def kind(fields: list[Any]) -> _Kind | None:
            return _Kind(list(fields)) if fields else None

        return cls(
            kind(dependant.path_params),
            kind(dependant.query_params),
            kind(dependant.header_params),
            kind(dependant.cookie_params),
            dependant.request_param_name,
            dependant.http_connection_param_name,
            dependant.response_param_name,
        )

    def bind(self, request: Request, response: Response | None, values: dict[str, Any]) -> bool:
        """Adds this level's parameters to `values`; False when a field refuses its value."""
        if self.path is not None and not self.path.bind(request.path_params, values):
            return False
        if self.query is not None and not self.query.bind(
            request.query_params if request.scope["query_string"] else _NO_QUERY, values
        ):
            return False
        if self.header is not None and not self.header.bind(request.headers, values):
            return False
        if self.cookie is not None and not self.cookie.bind(request.cookies, values):
            return False
        if self.request_name is not None:
            values[self.request_name] = request
        if self.connection_name is not None:
            values[self.connection_name] = request
        if self.response_name is not None:
            values[self.response_name] = response
        return True


@dataclass(slots=True)
class _Dependency:
    name: str | None
    call: Callable[..., Any]
    params: _Params
    needs: list[_Dependency]
    generator: bool
    use_cache: bool
    # the generator as a context manager (built once); for a plain dependency, unused
    context: Callable[..., AbstractAsyncContextManager[Any]] = field(init=False)
    binds: bool = field(init=False)  # whether it takes anything from the request itself

    def __post_init__(self) -> None:
        self.context = asynccontextmanager(self.call)
        p = self.params
        self.binds = any(
            x is not None
            for x in (
                p.path,
                p.query,
                p.header,
                p.cookie,
                p.request_name,
                p.connection_name,
                p.response_name,
            )
        )


def _compile(dependant: Dependant, where: str) -> list[_Dependency]:
    """The dependant's dependencies as a tree the binder walks; refuses what it cannot bind."""
    out: list[_Dependency] = []
    for sub in dependant.dependencies:
        call = sub.call
        name = f"{where} → {getattr(call, '__name__', type(call).__name__)}"
        if call is None or sub.body_params:
            raise TypeError(f"{name}: a hot route's dependencies cannot read the body")
        generator = _is_async_gen(call)
        if not generator and not _is_coroutine(call):
            raise TypeError(f"{name}: a hot route's dependencies must be async")
        needs = _compile(sub, name)
        if any(n.generator for n in needs):
            raise TypeError(f"{name}: a hot route's dependency cannot need a generator")
        out.append(
            _Dependency(sub.name, call, _Params.of(sub, name), needs, generator, sub.use_cache)
        )
    return out


@dataclass(slots=True)
class _Bound:
    """A request bound by `HotRoute.bind`: the values for the endpoint so far, the generator
    dependencies still to enter, and the response whose headers a `Response` parameter set."""

    values: dict[str, Any]
    cache: dict[Any, Any]
    response: Response | None
    generators: list[tuple[_Dependency, dict[str, Any]]] = field(default_factory=list)


def _takes_response(params: _Params, dependencies: list[_Dependency]) -> bool:
    return params.response_name is not None or any(
        _takes_response(d.params, d.needs) for d in dependencies
    )


class HotRoute:
    """The declared route's dependant, compiled for `HotPaths` (module docstring)."""

    def __init__(self, route: APIRoute) -> None:
        where = f"{sorted(route.methods or ())} {route.path}"
        dependant = route.dependant
        body_field = route.body_field
        if body_field is not None and isinstance(body_field.field_info, Form):
            raise TypeError(f"{where}: a hot route's body must be JSON")
        self.route = route
        self.endpoint = dependant.call
        self.params = _Params.of(dependant, where)
        self.body_params = list(dependant.body_params)
        self.embed_body = bool(getattr(route, "_embed_body_fields", False))
        # one body parameter not embedded: the body is that parameter's value
        self.single_body = (
            self.body_params[0] if len(self.body_params) == 1 and not self.embed_body else None
        )
        self.dependencies = _compile(dependant, where)
        self.takes_response = _takes_response(self.params, self.dependencies)
        response_class = route.response_class
        self.default_response_class = isinstance(response_class, DefaultPlaceholder)
        self.response_class: type[Response] = (
            response_class.value
            if isinstance(response_class, DefaultPlaceholder)
            else response_class
        )

    async def bind(self, request: Request) -> _Bound | None:
        """Phase 1 (module docstring): the bound request, or None having changed nothing."""
        response = None
        if self.takes_response:  # a `Response` parameter somewhere: FastAPI's blank one
            response = Response()
            del response.headers["content-length"]
            response.status_code = None  # type: ignore[assignment]
        bound = _Bound({}, {}, response)
        if self.body_params:
            body = await _json_body(request)
            if body is _NOT_BOUND:
                return None
            if self.single_body is not None:  # request_body_to_args' own shortcut
                value, errors = self.single_body.validate(body, {}, loc=("body",))
                if errors:
                    return None
                bound.values[self.single_body.name] = value
            else:
                values, errors = await request_body_to_args(self.body_params, body, self.embed_body)
                if errors:
                    return None
                bound.values.update(values)
        if not self.params.bind(request, response, bound.values):
            return None
        try:
            if not await self._solve(self.dependencies, request, bound, bound.values):
                return None
        except Exception:  # the declared route meets (and answers) the same error
            return None
        return bound

    async def _solve(
        self,
        dependencies: list[_Dependency],
        request: Request,
        bound: _Bound,
        into: dict[str, Any],
    ) -> bool:
        for dep in dependencies:
            if dep.use_cache and dep.call in bound.cache:
                if dep.name is not None:
                    into[dep.name] = bound.cache[dep.call]
                continue
            values: dict[str, Any] = {}
            if dep.binds and not dep.params.bind(request, bound.response, values):
                return False
            if dep.needs and not await self._solve(dep.needs, request, bound, values):
                return False
            if dep.generator:  # entered in phase 2 (only at the top level: _compile)
                bound.generators.append((dep, values))
                continue
            solved = await dep.call(**values)
            if dep.use_cache:
                bound.cache[dep.call] = solved
            if dep.name is not None:
                into[dep.name] = solved
        return True

    async def serve(self, request: Request, bound: _Bound) -> Response:
        """Phase 2 (module docstring): the generator dependencies, the endpoint, the answer."""
        generators = bound.generators
        if len(generators) == 1:  # the usual case (the service): no exit stack needed
            dep, values = generators[0]
            async with dep.context(**values) as solved:
                if dep.name is not None:
                    bound.values[dep.name] = solved
                raw = await self.endpoint(**bound.values)  # type: ignore[misc]
        else:
            async with AsyncExitStack() as stack:
                for dep, values in generators:
                    solved = await stack.enter_async_context(dep.context(**values))
                    if dep.name is not None:
                        bound.values[dep.name] = solved
                raw = await self.endpoint(**bound.values)  # type: ignore[misc]
        if isinstance(raw, Response):
            return raw
        return await self._answer(raw, bound.response)

    async def _answer(self, raw: Any, sub: Response | None) -> Response:
        """A returned value answered as FastAPI answers it (fastapi.routing.get_request_handler)."""
        route = self.route
        dump_json = route.response_field is not None and self.default_response_class
        content = await serialize_response(
            field=route.response_field,
            response_content=raw,
            include=route.response_model_include,
            exclude=route.response_model_exclude,
            by_alias=route.response_model_by_alias,
            exclude_unset=route.response_model_exclude_unset,
            exclude_defaults=route.response_model_exclude_defaults,
            exclude_none=route.response_model_exclude_none,
            dump_json=dump_json,
        )
        args: dict[str, Any] = {}
        status = (sub.status_code if sub is not None else None) or route.status_code
        if status is not None:
            args["status_code"] = status
        if dump_json:
            response = Response(content=content, media_type="application/json", **args)
        else:
            response = self.response_class(content, **args)
        if not is_body_allowed_for_status_code(response.status_code):
            response.body = b""
        if sub is not None:
            response.headers.raw.extend(sub.headers.raw)
        return response


async def _json_body(request: Request) -> Any:
    """The body parsed as FastAPI parses a JSON body, or `_NOT_BOUND` for anything else (no
    body, another media type, malformed JSON, U+0000, a client gone): the declared route
    meets the same body and answers for it."""
    content_type = request.headers.get("content-type")
    if not content_type:
        return _NOT_BOUND
    if content_type != "application/json" and not _is_json(content_type):
        return _NOT_BOUND
    try:
        if not await request.body():
            return _NOT_BOUND
        return await request.json()
    except (ClientDisconnect, ValueError, RecursionError, InvalidCharacter):
        return _NOT_BOUND


def _is_json(content_type: str) -> bool:
    """FastAPI's test of a JSON body's media type (fastapi.routing.get_request_handler)."""
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class AppRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if endpoint in _HOT:
            binding = HotRoute(self)
            for method in sorted(self.methods or ()):
                _HOT_ROUTES.append((method, self, binding))

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()

        async def handler(request: Request) -> Response:
            return await declared(AppRequest(request.scope, request.receive))

        return handler


_PENDING = "app.hot_exception"


async def _raise_pending(scope: Scope, receive: Receive, send: Send) -> None:
    """The app inside `HotPaths.answering`: raises the hot route's exception again, for
    Starlette's ExceptionMiddleware to answer with the app's handler."""
    raise scope.pop(_PENDING)


class HotPaths:
    """The ASGI layer that serves a hot route's request when it binds (module docstring).
    Added as the innermost user middleware, with the FastAPI app."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        # FastAPI gives 500 and Exception to the outermost layer, the rest to the
        # ExceptionMiddleware around its router: the same split for the hot routes.
        handlers: Mapping[Any, Any] = {
            k: v for k, v in api.exception_handlers.items() if k not in (500, Exception)
        }
        self.answering = ExceptionMiddleware(_raise_pending, handlers=handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self.api.state.settings.fast_paths
            and not self.api.dependency_overrides
        ):
            hit = _match(scope)
            if hit is not None:
                binding, child_scope = hit
                scope.update(child_scope)  # route (its template names the access log line), params
                request = AppRequest(scope, receive)
                bound = await binding.bind(request)
                if bound is not None:
                    try:
                        response = await binding.serve(request, bound)
                    except Exception as exc:
                        # answered by the app's handlers, looked up by Starlette itself (paid
                        # only when something is raised: nothing has been sent yet)
                        scope[_PENDING] = exc
                        await self.answering(scope, receive, send)
                        return
                    await response(scope, receive, send)
                    return
                receive = _replaying(request.received, receive)
        await self.app(scope, receive, send)


def _match(scope: Scope) -> tuple[HotRoute, Scope] | None:
    """The hot route for this request, by the route's own matching (path, root path and
    parameter conversion as the router does it), with the scope it adds."""
    method = scope["method"]
    for wanted, route, binding in _HOT_ROUTES:
        if wanted != method:
            continue
        match, child_scope = route.matches(scope)
        if match is Match.FULL:
            return binding, child_scope
    return None


def _replaying(body: bytes | None, receive: Receive) -> Receive:
    """`receive` for the declared route after the binder read the body: the body again, then
    whatever the server sends next (a disconnect)."""
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
