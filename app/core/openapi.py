"""OpenAPI helpers: documented problem responses for every operation."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from app.core.errors import PROBLEM_MEDIA_TYPE, Problem

_DESCRIPTIONS = {
    401: "Missing or invalid bearer token",
    403: "The token lacks a required scope",
    404: "Not found in this tenant",
    409: "Conflict with the current state",
    412: "If-Match does not match the current version",
    413: "Request body too large",
    422: "Validation failed (field paths in `errors`)",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Response docs for the given statuses (plus 401/403/422, which every route can give)."""
    wanted = sorted({401, 403, 422, *codes})
    return {
        code: {
            "model": Problem,
            "description": _DESCRIPTIONS.get(code, HTTPStatus(code).phrase),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in wanted
    }
