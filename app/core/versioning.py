"""Optimistic concurrency for tickets and incidents: `version`, `ETag` and `If-Match`.

A change reads the row (locked on PostgreSQL), checks `If-Match` when one was sent, and
writes with SQLAlchemy's version counter. A concurrent change that slipped in between shows up
as `StaleDataError`: without `If-Match` the change is retried on fresh data (never a lost
update); with it, the caller's version is stale and the answer is 412.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from app.core.errors import PreconditionFailed

MAX_RETRIES = 3
T = TypeVar("T")


class VersionMismatch(PreconditionFailed):
    code = "version_mismatch"


def parse_if_match(value: str | None, what: str) -> int | None:
    """`"3"`, `W/"3"` or `3` → 3; absent → None; anything else is a 412."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise VersionMismatch(f'If-Match must be the {what}\'s version, e.g. "3"')
    return int(text)


def check_version(current: int, expected: int | None, what: str) -> None:
    if expected is not None and current != expected:
        raise VersionMismatch(
            f"The {what} is at version {current}, not {expected}", current_version=current
        )


async def retry_stale(
    session: AsyncSession, expected: int | None, what: str, once: Callable[[], Awaitable[T]]
) -> T:
    """Run `once` (one transaction); on a concurrent update retry it, unless the caller
    pinned a version with If-Match."""
    for attempt in range(MAX_RETRIES):
        try:
            return await once()
        except StaleDataError:
            await session.rollback()
            if expected is not None or attempt == MAX_RETRIES - 1:
                raise VersionMismatch(f"The {what} changed meanwhile; read it again") from None
    raise AssertionError("unreachable")
