"""RFC 9457 problem details: one DomainError hierarchy, one renderer, the handlers.

Every error the API returns is `application/problem+json` with a stable snake_case `code`.
Validation errors carry field paths and messages only: submitted values may be personal data.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from http import HTTPStatus
from typing import Any, Self

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://privacy-rights-api.dev/problems/"

log = logging.getLogger("app.errors")


class ValidationItem(BaseModel):
    loc: list[str | int] = Field(max_length=32)
    msg: str = Field(max_length=1000)
    type: str | None = Field(default=None, max_length=100)


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable `code` and optional extra members."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "type": "https://privacy-rights-api.dev/problems/not_found",
                "title": "Not Found",
                "status": 404,
                "detail": "No policy 'spotrak' in this tenant",
                "code": "policy_not_found",
            }
        },
    )

    type: str = Field(max_length=300)
    title: str = Field(max_length=300)
    status: int
    detail: str | None = Field(default=None, max_length=4000)
    code: str = Field(max_length=100)
    errors: list[ValidationItem] | None = Field(default=None, max_length=1000)


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


class DomainError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str | None = None

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.code)
        self.detail = detail
        self.extra = extra

    def headers(self) -> dict[str, str] | None:
        return None


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class Unprocessable(DomainError):
    status = 422
    code = "unprocessable"

    @classmethod
    def at(cls, loc: list[str | int], msg: str) -> Self:
        """A 422 about one field, in the shape of the validation errors (`errors` with loc)."""
        return cls(
            f"{'.'.join(str(p) for p in loc)}: {msg}",
            errors=[{"loc": loc, "msg": msg, "type": "value_error"}],
        )


class InvalidCharacter(StarletteHTTPException):
    """U+0000 in a text value: PostgreSQL cannot store it, so it is refused on every backend.
    An HTTPException so that FastAPI's body parsing re-raises it (anything else raised while
    it parses a body becomes a 400)."""

    MESSAGE = "U+0000 (NUL) is not accepted in text"

    def __init__(self, loc: list[str | int]) -> None:
        super().__init__(422, f"{'.'.join(str(p) for p in loc)}: {self.MESSAGE}")
        self.loc = loc

    def problem(self) -> ProblemResponse:
        return problem_response(
            422,
            "validation_error",
            str(self.detail),
            errors=[{"loc": self.loc, "msg": self.MESSAGE, "type": "string_nul"}],
        )


class PreconditionFailed(DomainError):
    status = 412
    code = "precondition_failed"


class Unauthorized(DomainError):
    status = 401
    code = "invalid_token"

    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class Forbidden(DomainError):
    status = 403
    code = "insufficient_scope"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"


class ServiceUnavailable(DomainError):
    status = 503
    code = "service_unavailable"


def problem_body(
    status: int,
    code: str,
    detail: str | None = None,
    title: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    return body


def problem_response(
    status: int,
    code: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    return ProblemResponse(problem_body(status, code, detail, **extra), status, headers=headers)


def validation_items(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Field path and message only: never the submitted `input` or `ctx` values."""
    items = []
    for err in errors:
        loc = [p if isinstance(p, int | str) else str(p) for p in err.get("loc", ())]
        msg = str(err.get("msg", "invalid"))
        # A few pydantic messages quote the value sent (e.g. an unknown discriminator tag):
        # cut it out, it may be personal data.
        quoted = [err.get("input"), (err.get("ctx") or {}).get("tag")]
        for sent in quoted:
            if isinstance(sent, str | int | float) and not isinstance(sent, bool):
                text = str(sent)
                if text and text in msg:
                    msg = msg.replace(f"'{text}'", "the value sent").replace(text, "the value sent")
        items.append({"loc": loc, "msg": msg, "type": err.get("type")})
    return items


_STATUS_CODES = {
    400: "bad_request",
    401: "invalid_token",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "service_unavailable",
}


# SQLSTATEs that mean the server or the connection went away, not that the query was wrong:
# class 08 (connection exception), 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot
# connect now (starting up / shutting down).
# connection exceptions, admin/crash shutdown, cannot connect now, and too many connections
# (more processes, more connections: a full server is away for this request, not broken)
_OUTAGE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> ProblemResponse:
        return problem_response(exc.status, exc.code, exc.detail, exc.headers(), **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> ProblemResponse:
        errors = exc.errors()
        if any(err.get("type") == "json_invalid" for err in errors):
            # FastAPI reports a body that is not JSON as a validation error (422); it is a
            # malformed request, the 400 the document declares (the parser's message and
            # position are left out: they quote the body)
            return problem_response(400, "invalid_json", "The request body is not valid JSON")
        items = validation_items(errors)
        first = items[0] if items else None
        detail = (
            f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
            if first
            else "The request is not valid"
        )
        return problem_response(422, "validation_error", detail, errors=items)

    def _away() -> ProblemResponse:
        return problem_response(
            503,
            "database_unavailable",
            "The database is not reachable right now; retry shortly",
            {"Retry-After": "2"},
        )

    async def _database_away(_: Request, exc: Exception) -> ProblemResponse:
        log.warning("database unavailable", extra={"error": type(exc).__name__})
        return _away()

    for cls in (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,
        ConnectionError,
        OSError,
    ):
        app.add_exception_handler(cls, _database_away)

    def _by_sqlstate(exc: Exception, state: object) -> ProblemResponse | None:
        """The server's answer read from its SQLSTATE, whichever driver layer carried it."""
        if isinstance(state, str) and state.startswith(_OUTAGE_SQLSTATES):
            log.warning("database unavailable", extra={"error": type(exc).__name__})
            return _away()
        if state in ("22021", "22P05"):
            # character_not_in_repertoire / untranslatable_character: U+0000 that reached the
            # database by a path the input checks (core.routing, the middleware) do not cover
            return problem_response(
                422,
                "validation_error",
                f"A text value holds a character the database cannot store "
                f"({InvalidCharacter.MESSAGE})",
            )
        if state == "57014":  # query_canceled: statement_timeout
            log.warning("statement timeout", extra={"error": type(exc).__name__})
            return problem_response(
                503,
                "statement_timeout",
                "The database took too long to answer; retry shortly",
                {"Retry-After": "2"},
            )
        return None

    @app.exception_handler(sa_exc.DBAPIError)
    async def _dbapi(request: Request, exc: sa_exc.DBAPIError) -> ProblemResponse:
        # asyncpg's connection losses ("connection was closed in the middle of operation",
        # "the database system is starting up", admin shutdown) arrive as the base DBAPIError.
        if exc.connection_invalidated:
            return await _database_away(request, exc)
        answer = _by_sqlstate(exc, getattr(exc.orig, "sqlstate", None))
        if answer is None:
            raise exc  # anything else stays a 500 (rendered by the middleware, no internals)
        return answer

    # The same, for the bare asyncpg pool of the hot paths (app/core/rawpg.py): a connection
    # lost mid-operation, a closing pool, or (InternalClientError) a protocol state broken by a
    # dying server.
    for pg_cls in (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError):
        app.add_exception_handler(pg_cls, _database_away)

    @app.exception_handler(asyncpg.PostgresError)
    async def _pg_error(request: Request, exc: asyncpg.PostgresError) -> ProblemResponse:
        answer = _by_sqlstate(exc, getattr(exc, "sqlstate", None))
        if answer is None:
            raise exc
        return answer

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> ProblemResponse:
        if isinstance(exc, InvalidCharacter):
            return exc.problem()
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else None
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            allowed = allowed_methods(request)
            if allowed is not None:
                headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        return problem_response(exc.status_code, code, detail, headers)


def _leaf_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """The app's routes as declared, through the routers FastAPI includes (each an object
    holding its `original_router`; our routers are included without a prefix, so their
    routes' own paths are the full paths)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _leaf_routes(included.routes)
        else:
            yield route


_PARAMETER = re.compile(r"{[^}]*}")


def _literal_length(template: str) -> int:
    return len(_PARAMETER.sub("", template))


def allowed_methods(request: Request) -> list[str] | None:
    """The methods of the documented path the request's path is (RFC 9110 §15.5.6: a 405's
    `Allow` lists the methods the target resource supports), or None when no route's path
    matches. Starlette answers with the methods of the first route whose path matched only
    (`OPTIONS /v1/breaches` said `Allow: POST`). When several templates match one path
    (`/v1/subjects/{subject_id}/consents` and, `/` being part of an id,
    `/v1/subjects/{subject_id}`), the path is the most specific one: the most literal text."""
    matching = [
        route
        for route in _leaf_routes(request.app.router.routes)
        if getattr(route, "methods", None)
        and isinstance(getattr(route, "path_format", None), str)
        and route.matches(request.scope)[0] is not Match.NONE
    ]
    if not matching:
        return None
    path = max(matching, key=lambda route: _literal_length(route.path_format)).path_format
    methods: set[str] = set()
    for route in matching:
        if route.path_format == path:
            methods |= route.methods
    return sorted(methods)
