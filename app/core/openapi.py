"""OpenAPI helpers: documented problem responses for every operation."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import Response
from pydantic import BaseModel

from app.core.errors import PROBLEM_MEDIA_TYPE, Problem

_DESCRIPTIONS = {
    400: "Malformed request (the body is not parseable JSON)",
    401: "Missing or invalid bearer token",
    403: "The token lacks a required scope",
    404: "Not found in this tenant",
    409: "Conflict with the current state",
    412: "If-Match does not match the current version (compared strongly: a weak tag never does)",
    413: "Request body too large",
    422: "Validation failed (field paths in `errors`)",
    429: "Too many writes for this tenant (write routes, when RATE_LIMIT_WRITES is set)",
    503: "The database is unavailable or the request ran past its deadline; retry later",
}
# Every operation can answer these: malformed input, auth, body size, validation, the rate
# limit and the request deadline / database outage.
ALWAYS = (400, 401, 403, 413, 422, 429, 503)


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Response docs for the given statuses, plus those in ALWAYS."""
    wanted = sorted({*ALWAYS, *codes})
    docs: dict[int | str, dict[str, Any]] = {}
    for code in wanted:
        doc: dict[str, Any] = {
            "model": Problem,
            "description": _DESCRIPTIONS.get(code, HTTPStatus(code).phrase),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if code == 429:
            doc["headers"] = {
                "Retry-After": {
                    "description": "Seconds until a write is accepted again",
                    "schema": {"type": "integer"},
                }
            }
        docs[code] = doc
    return docs


ETAG_HEADER = {
    "description": 'The version as a strong entity tag (`"3"`): send it back in `If-Match` to '
    "change exactly this version. Kept on an idempotent replay.",
    "required": True,
    "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
}
LOCATION_HEADER = {
    "description": "Where the created resource is read",
    "required": True,
    "schema": {"type": "string"},
}


def sends(status: int, *, etag: bool = False, location: bool = False) -> dict[int | str, Any]:
    """Response docs for the headers a success response carries (`ETag`, `Location`), to merge
    into `responses=`: FastAPI adds the body schema of the route's own status itself."""
    headers: dict[str, Any] = {}
    if location:
        headers["Location"] = LOCATION_HEADER
    if etag:
        headers["ETag"] = ETAG_HEADER
    return {status: {"headers": headers}}


def model_response(
    model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A pydantic model sent as is, serialised once by pydantic-core. FastAPI would validate
    the returned model against `response_model` again and then serialise it: the hot routes
    keep `response_model` for the OpenAPI document and skip that second pass."""
    return Response(
        content=model.model_dump_json(),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def created(model: BaseModel, location: str, version: int | None = None) -> Response:
    """201 with `Location` (and `ETag` for versioned objects), the body serialised once."""
    headers = {"Location": location}
    if version is not None:
        headers["ETag"] = f'"{version}"'
    return model_response(model, 201, headers)
