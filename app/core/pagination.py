"""Opaque cursors for keyset pagination: `?limit=` (default 50, max 500) and `?cursor=`."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from fastapi import Query

from app.core.errors import Unprocessable

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

LimitQuery = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description="Page size (default 50, at most 500)")
]
CursorQuery = Annotated[
    str | None,
    Query(max_length=512, description="`next_cursor` from the previous page"),
]


class InvalidCursor(Unprocessable):
    code = "invalid_cursor"


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError) as exc:
        raise InvalidCursor("The cursor is not one this service issued") from exc
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidCursor("The cursor is not one this service issued")
    return values
