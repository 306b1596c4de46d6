"""Test harness: every test that takes `client` runs once on SQLite and once on PostgreSQL.

Each backend gets a fresh database built by `alembic upgrade head` (never by create_all).
Tests isolate by tenant: each test gets its own, so nothing needs truncating.

PostgreSQL comes from TEST_POSTGRES_URL (default: the machine's server on 127.0.0.1:5432).
If it cannot be reached the PostgreSQL half FAILS (it never skips); set
PRAPI_ALLOW_NO_POSTGRES=1 outside CI to run the SQLite half alone.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from alembic import command
from alembic.config import Config
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.core.config import Settings
from app.core.secretbox import Keyring
from app.core.security import ALL_SCOPES, KeyConfig, mint_token
from app.main import create_app

ROOT = Path(__file__).resolve().parents[1]
TEST_SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
TEST_SECRETS_KEY = "test-secrets-key-0123456789-abcdefghijklmnopqrstuvwxyz"
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgresql"]


class MutableClock:
    """The app's clock; real time unless a test pins it."""

    def __init__(self) -> None:
        self.pinned: datetime | None = None

    def __call__(self) -> datetime:
        return self.pinned if self.pinned is not None else datetime.now(UTC)


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logger"] = False
    # the key the tests' apps seal secrets with (0013 encrypts or decrypts existing ones)
    cfg.attributes["secrets_keyring"] = Keyring(TEST_SECRETS_KEY)
    return cfg


def run_alembic(fn: Callable[..., Any], database_url: str, *args: Any) -> None:
    """Alembic's async env.py runs its own event loop: run it off the test loop's thread."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn(alembic_config(database_url), *args)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_pg_database() -> str:
    """A fresh database on the shared server; returns its SQLAlchemy URL."""
    name = f"prapi_test_{uuid.uuid4().hex[:10]}"
    try:
        await _pg_admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("PRAPI_ALLOW_NO_POSTGRES") == "1" and os.environ.get("CI") != "true":
            pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc}")
        pytest.fail(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc}", pytrace=False)
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The API tests that also run through a private pgbouncer in transaction mode (DESIGN §16),
# as two more backends for these modules: "pgbouncer", the distribution's, which keeps no
# prepared statement (DB_POOLER=pgbouncer), and "pgbouncer-prepared", 1.24 with
# max_prepared_statements (DB_POOLER_PREPARED_STATEMENTS=true; tests/pgbouncer.py).
THROUGH_PGBOUNCER = {
    "tests/policies/test_policies_api.py",
    "tests/dsar/test_dsar_api.py",
    "tests/consent/test_ledger_api.py",
    "tests/consent/test_subjects_api.py",
    "tests/consent/test_batch_history_receipt.py",
    "tests/breaches/test_breaches_api.py",
    "tests/events/test_webhooks_api.py",
    "tests/hardening/test_concurrency.py",
}
# pgbouncer URL → the direct URL of the same database (make_settings reads it)
POOLED: dict[str, str] = {}
PREPARED: set[str] = set()  # the pgbouncer URLs that keep prepared statements
POOLERS = ("pgbouncer", "pgbouncer-prepared")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" not in metafunc.fixturenames:
        return
    module = Path(str(metafunc.definition.fspath)).relative_to(ROOT).as_posix()
    backends = [*BACKENDS, *POOLERS] if module in THROUGH_PGBOUNCER else BACKENDS
    metafunc.parametrize("database_url", backends, indirect=True, scope="session")


@pytest.fixture(scope="session")
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        run_alembic(command.upgrade, url, "heads")
        yield url
        return
    url = await create_pg_database()
    bouncer = None
    try:
        run_alembic(command.upgrade, url, "heads")
        if request.param in POOLERS:
            from tests.pgbouncer import start_pgbouncer

            pg = make_url(PG_ADMIN_URL)
            prepared = request.param == "pgbouncer-prepared"
            bouncer = start_pgbouncer(
                tmp_path_factory.mktemp("pgbouncer"),
                pg.host or "127.0.0.1",
                pg.port or 5432,
                prepared=prepared,
            )
            pooled = bouncer.url_for(url)
            POOLED[pooled] = url
            if prepared:
                PREPARED.add(pooled)
            yield pooled
        else:
            yield url
    finally:
        if bouncer is not None:
            bouncer.stop()
        await drop_pg_database(url)


@pytest.fixture(scope="session")
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture(autouse=True)
def _unpin_clock(clock: MutableClock) -> Iterator[None]:
    yield
    clock.pinned = None


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "auth_secret": TEST_SECRET,
        "secrets_key": TEST_SECRETS_KEY,
        "app_env": "dev",
        "log_level": "INFO",
        # Tests drive the worker themselves (Worker.run_once), deterministically.
        "worker_in_process": False,
        # The local receiver of the webhook tests.
        "webhook_allow_hosts": "127.0.0.1",
    }
    if database_url in POOLED:
        # through pgbouncer: the pools in transaction-mode safety, the listener direct
        values["db_pooler"] = "pgbouncer"
        values["db_pooler_prepared_statements"] = database_url in PREPARED
        values["database_listen_url"] = POOLED[database_url]
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
async def app(database_url: str, clock: MutableClock) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(database_url), clock=clock)
    async with LifespanManager(application):
        yield application


@pytest.fixture(scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def backend(database_url: str) -> str:
    return "postgresql" if database_url.startswith("postgresql") else "sqlite"


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


TEST_KEYS = KeyConfig("HS256", TEST_SECRET, TEST_SECRET, None, None, None)


def token_for(
    tenant: str, scopes: tuple[str, ...] | list[str] = ALL_SCOPES, sub: str = "tester"
) -> str:
    return mint_token(TEST_KEYS, tenant=tenant, scopes=list(scopes), sub=sub)


def auth_headers(tenant: str, scopes: tuple[str, ...] | list[str] = ALL_SCOPES) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(tenant, scopes)}"}


@pytest.fixture
def auth(tenant: str) -> dict[str, str]:
    return auth_headers(tenant)


def spotrak_body(key: str = "spotrak") -> dict[str, Any]:
    from app.policies.schemas import SPOTRAK_EXAMPLE

    body = dict(SPOTRAK_EXAMPLE)
    body["key"] = key
    return body
