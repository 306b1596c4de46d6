"""A fresh PostgreSQL database per module, built by Alembic, for the multi-process tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic import command

from tests.conftest import create_pg_database, drop_pg_database, run_alembic


@pytest.fixture(scope="module")
async def pg_url() -> AsyncIterator[str]:
    url = await create_pg_database()
    try:
        run_alembic(command.upgrade, url, "heads")
        yield url
    finally:
        await drop_pg_database(url)
