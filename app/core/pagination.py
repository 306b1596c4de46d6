"""Opaque cursors for keyset pagination: `?limit=` (default 50, max 500) and `?cursor=`."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from app.core.errors import Unprocessable

T = TypeVar("T")

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


def keyset(at: datetime, oid: uuid.UUID) -> list[str]:
    """The (instant, id) position that `decode_keyset_cursor` reads back."""
    return [at.isoformat(), str(oid)]


def page_of(
    rows: Sequence[T], limit: int, position: Callable[[T], list[Any]]
) -> tuple[list[T], str | None]:
    """Rows fetched with `limit + 1`: the page, and the cursor after its last row when the
    extra row shows there is more."""
    page = list(rows[:limit])
    more = len(rows) > limit and bool(page)
    return page, encode_cursor(position(page[-1])) if more else None


_NOT_OURS = "not a cursor this service issued"


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError) as exc:
        raise InvalidCursor.at(["query", "cursor"], _NOT_OURS) from exc
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidCursor.at(["query", "cursor"], _NOT_OURS)
    return values


def decode_keyset_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (instant, id) position most lists page by; a tampered one is a 422, never a
    naive datetime reaching the database."""
    values = decode_cursor(cursor, 2)
    if values is None:
        return None
    try:
        at, oid = datetime.fromisoformat(str(values[0])), uuid.UUID(str(values[1]))
    except ValueError as exc:
        raise InvalidCursor.at(["query", "cursor"], _NOT_OURS) from exc
    if at.tzinfo is None:
        raise InvalidCursor.at(["query", "cursor"], _NOT_OURS)
    return at, oid


def decode_int_cursor(cursor: str | None) -> int | None:
    """A position that is a number (a version, a sequence id)."""
    values = decode_cursor(cursor, 1)
    if values is None:
        return None
    if not isinstance(values[0], int) or isinstance(values[0], bool):
        raise InvalidCursor.at(["query", "cursor"], _NOT_OURS)
    return values[0]


def decode_key_cursor(cursor: str | None) -> str | None:
    """A position that is a key (a policy key)."""
    values = decode_cursor(cursor, 1)
    if values is None:
        return None
    if not isinstance(values[0], str):
        raise InvalidCursor.at(["query", "cursor"], _NOT_OURS)
    return values[0]


S = TypeVar("S", bound=Select[*tuple[Any, ...]])


def seek(
    stmt: S,
    column: InstrumentedAttribute[Any],
    tiebreak: InstrumentedAttribute[Any],
    cursor: tuple[Any, Any] | None,
    limit: int,
    *,
    descending: bool = False,
) -> S:
    """`stmt` ordered by (`column`, `tiebreak`), after the cursor's (value, id) and limited:
    the one keyset page. The condition is spelled `column > v OR (column = v AND id > i)`
    (not a row comparison), which the planners turn into a range of the (…, column, id)
    index on both databases."""
    if cursor is not None:
        at, last = cursor
        if descending:
            stmt = stmt.where(or_(column < at, and_(column == at, tiebreak < last)))
        else:
            stmt = stmt.where(or_(column > at, and_(column == at, tiebreak > last)))
    if descending:
        return stmt.order_by(column.desc(), tiebreak.desc()).limit(limit)
    return stmt.order_by(column, tiebreak).limit(limit)
