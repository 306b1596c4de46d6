"""A database that goes away is a 503 problem, whatever shape the driver gives the failure
(issue 8, item 6; the long run is bench/durability.py).

asyncpg's connection losses reach the app as SQLAlchemy's *base* `DBAPIError` (not an
OperationalError): "connection was closed in the middle of operation" (invalidated), "the
database system is starting up / shutting down" (57P03), admin shutdown (57P01). Other
database errors stay a 500 without internals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import exc as sa_exc

from app.main import create_app
from tests.conftest import make_settings


class _DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _raiser(exc: Exception) -> Callable[[], Any]:
    async def route() -> None:
        raise exc

    return route


CASES = {
    "invalidated": (
        sa_exc.DBAPIError(
            "SELECT 1",
            None,
            _DriverError("connection was closed in the middle of operation", None),
            connection_invalidated=True,
        ),
        503,
    ),
    "starting-up": (
        sa_exc.DBAPIError(
            "SELECT 1", None, _DriverError("the database system is starting up", "57P03")
        ),
        503,
    ),
    "admin-shutdown": (
        sa_exc.InternalError("COMMIT", None, _DriverError("terminating connection", "57P01")),
        503,
    ),
    "connection-failure": (
        sa_exc.DBAPIError("SELECT 1", None, _DriverError("connection failure", "08006")),
        503,
    ),
    "too-many-connections": (
        sa_exc.DBAPIError(
            "SELECT 1", None, _DriverError("sorry, too many clients already", "53300")
        ),
        503,
    ),
    "too-many-connections-bare-pool": (
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        503,
    ),
    "unique-violation": (
        sa_exc.IntegrityError(
            "INSERT", None, _DriverError("duplicate key value secret-42", "23505")
        ),
        500,
    ),
    "division-by-zero": (
        sa_exc.DBAPIError("SELECT 1/0", None, _DriverError("division by zero secret-42", "22012")),
        500,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_database_failures_map_to_503_only_when_the_database_is_away(
    case: str, tmp_path: Any
) -> None:
    exc, status = CASES[case]
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"))
    app.add_api_route("/boom", _raiser(exc))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        r = await client.get("/boom")
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if status == 503:
        assert body["code"] == "database_unavailable"
        assert r.headers["retry-after"] == "2"
    else:
        assert body["code"] == "internal_error"
        assert "secret-42" not in r.text
