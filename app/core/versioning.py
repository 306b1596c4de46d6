"""Optimistic concurrency for tickets and incidents: `version`, `ETag` and `If-Match`.

A change reads the row (locked on PostgreSQL), checks `If-Match` when one was sent, and
writes with SQLAlchemy's version counter. A concurrent change that slipped in between shows up
as `StaleDataError`: without `If-Match` the change is retried on fresh data (never a lost
update); with it, the caller's version is stale and the answer is 412.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from app.core.errors import PreconditionFailed

MAX_RETRIES = 3
T = TypeVar("T")


class HasVersion(Protocol):
    @property
    def version(self) -> int: ...


V = TypeVar("V", bound=HasVersion)


class VersionMismatch(PreconditionFailed):
    code = "version_mismatch"


Expected = frozenset[int] | None
"""The versions an `If-Match` accepts; None: any (absent, or `*`)."""

_ETAG = re.compile(r'(W/)?"([^"]*)"|([0-9]+)')


def parse_if_match(value: str | None, what: str) -> Expected:
    """`If-Match` as RFC 9110 §13.1.1 reads it: `*` matches any current version (the object
    exists, or the answer is 404), otherwise a comma-separated list of entity tags compared
    strongly. `"3"` is version 3 (a bare `3` is read the same); a weak tag (`W/"3"`) never
    matches under strong comparison, so a list of weak tags only is 412, saying why, like
    anything that is not an entity tag."""
    if value is None:
        return None
    text = value.strip()
    if text == "*":
        return None
    versions: set[int] = set()
    weak = False
    for item in text.split(","):
        found = _ETAG.fullmatch(item.strip())
        if found is None:
            raise VersionMismatch(f'If-Match must be the {what}\'s ETag, e.g. "3"')
        if found.group(1):
            weak = True
            continue
        tag = found.group(2) if found.group(3) is None else found.group(3)
        if tag.isdigit():
            versions.add(int(tag))
    if not versions:
        if weak:
            raise VersionMismatch(
                f"If-Match compares entity tags strongly (RFC 9110): a weak tag never matches; "
                f'send the {what}\'s ETag as given, e.g. "3"'
            )
        raise VersionMismatch(f"If-Match names no version of the {what}")
    return frozenset(versions)


def check_version(current: int, expected: Expected, what: str) -> None:
    if expected is not None and current not in expected:
        wanted = ", ".join(str(v) for v in sorted(expected))
        raise VersionMismatch(
            f"The {what} is at version {current}, not {wanted}", current_version=current
        )


async def retry_stale(
    session: AsyncSession, expected: Expected, what: str, once: Callable[[], Awaitable[T]]
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


class Optimistic:
    """One optimistic change of a versioned row (module docstring), for DSAR transitions and
    extensions and breach updates and notices alike: `If-Match` parsed once, `check` on each
    attempt's freshly read (locked) row, `run` retrying the attempt on a concurrent update
    unless a version was pinned."""

    def __init__(self, session: AsyncSession, if_match: str | None, what: str) -> None:
        self.session = session
        self.what = what
        self.expected = parse_if_match(if_match, what)

    def check(self, row: V) -> V:
        check_version(row.version, self.expected, self.what)
        return row

    async def run(self, attempt: Callable[[], Awaitable[T]]) -> T:
        return await retry_stale(self.session, self.expected, self.what, attempt)
