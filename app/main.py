"""The ASGI app: `uvicorn app.main:app`. Engine and session factory are built in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.audit.router import router as audit_router
from app.breaches.router import router as breaches_router
from app.consent.router import router as consent_router
from app.core import idempotency
from app.core.clock import Clock, utc_now
from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_sessionmaker, verify_pooler_keeps_statements
from app.core.docs import install_docs
from app.core.errors import install_error_handlers
from app.core.listen import Listener, asyncpg_dsn
from app.core.logging import configure_logging
from app.core.middleware import Metrics, RequestContextMiddleware
from app.core.ratelimit import build_limiter
from app.core.rawpg import create_raw_pool
from app.core.routing import HotPaths
from app.core.secretbox import load_keyring
from app.core.security import load_verifier
from app.dsar.router import router as dsar_router
from app.fulfilment.router import router as fulfilment_router
from app.ops.router import router as ops_router
from app.policies import cache as policy_cache
from app.policies.router import router as policies_router
from app.reports.router import router as reports_router
from app.retention.router import router as retention_router
from app.subjects.router import router as subjects_router
from app.webhooks.router import router as webhooks_router
from app.worker import Worker

DESCRIPTION = """\
Privacy policies as versioned configuration, and the promises they make kept on time:
DSAR due dates, an append-only consent ledger, breach notification clocks, retention expiry.

Authenticate with `Authorization: Bearer <JWT>` (`python -m app token --tenant acme --scopes all`).
Errors are RFC 9457 `application/problem+json` with a stable `code`.
"""


def create_app(settings: Settings | None = None, clock: Clock = utc_now) -> FastAPI:
    settings = settings or get_settings()
    keys = load_verifier(settings)  # refuses to start without a key in production
    secrets = load_keyring(settings)  # the signing secrets' key at rest (SECRETS_KEY)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        if settings.pooler == "pgbouncer-prepared":
            await verify_pooler_keeps_statements(settings.database_url)
        engine = create_engine(
            settings.database_url,
            settings.db_pool_size,
            settings.statement_timeout_ms,
            settings.pooler,
        )
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(
            engine, idempotency.session_info(settings.idempotency_ttl, clock)
        )
        app.state.raw_pool = await create_raw_pool(
            settings.database_url,
            settings.db_pool_size,
            settings.statement_timeout_ms,
            settings.pooler,
        )
        stop = asyncio.Event()
        task: asyncio.Task[None] | None = None
        if settings.run_worker_in_process:
            # The embedded default: the same loop as `python -m app worker`, in this process.
            worker = Worker(
                app.state.sessionmaker,
                settings,
                keyring=secrets,
                clock=clock,
                on_attempt=lambda s: app.state.metrics.webhook_attempts.labels(s.value).inc(),
                on_secret_unreadable=app.state.metrics.webhook_secret_unreadable.inc,
            )
            task = asyncio.create_task(worker.run_forever(stop), name="worker")
        app.state.worker_task = task
        # Every process hears the others' policy changes (app/policies/cache.py).
        listen_dsn = None if settings.is_sqlite else asyncpg_dsn(settings.listen_url)
        listener = listen_task = None
        if listen_dsn is not None:
            gauge = app.state.metrics.cache_listener_up

            def on_up(reconnected: bool) -> None:
                policy_cache.listening_started(reconnected)
                gauge.set(1)

            def on_down() -> None:
                policy_cache.listening_stopped()
                gauge.set(0)

            listener = Listener(
                listen_dsn,
                {policy_cache.CHANNEL: policy_cache.heard},
                on_up=on_up,
                on_down=on_down,
            )
            listen_task = asyncio.create_task(listener.run(stop), name="cache-listener")
        app.state.listener = listener
        # Everything built so far (modules, routes, schemas, calendars) lives as long as the
        # process: out of the collector's sight, a full collection no longer walks it (it took
        # ~45 ms each time, a visible p99 stall under load).
        gc.freeze()
        try:
            yield
        finally:
            stop.set()
            if listen_task is not None:
                try:
                    await asyncio.wait_for(listen_task, timeout=10)
                except TimeoutError:
                    listen_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await listen_task
            if task is not None:
                try:
                    await asyncio.wait_for(task, timeout=settings.webhook_timeout_seconds + 5)
                except TimeoutError:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if app.state.write_limiter is not None:
                await app.state.write_limiter.close()
            if app.state.raw_pool is not None:
                await app.state.raw_pool.close()
            await engine.dispose()

    app = FastAPI(
        title="Privacy Rights API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # install_docs: the same pages, with their assets served from here
        redoc_url=None,
        openapi_tags=[
            {"name": "policies", "description": "Policies as versioned configuration"},
            {"name": "dsars", "description": "Data-subject requests and their legal clocks"},
            {"name": "consent", "description": "The append-only consent ledger"},
            {"name": "subjects", "description": "One person's consents, export and erasure"},
            {"name": "breaches", "description": "Breach incidents, their clocks and the record"},
            {"name": "systems", "description": "The systems that hold personal data"},
            {"name": "tasks", "description": "Each system's share of a request, and its answer"},
            {"name": "webhooks", "description": "Signed event delivery to your receivers"},
            {"name": "audit", "description": "The tenant's hash-chained audit log"},
            {"name": "reports", "description": "Figures for privacy officers and regulators"},
            {"name": "ops", "description": "Health, readiness and metrics"},
        ],
    )
    app.state.settings = settings
    app.state.keys = keys
    app.state.secrets = secrets
    app.state.clock = clock
    app.state.metrics = Metrics()
    app.state.write_limiter = build_limiter(
        settings.rate_limit_writes, settings.redis_url, settings.rate_limit_redis_prefix
    )
    install_error_handlers(app)
    install_docs(app)
    # FastAPI matches routes one by one in this order: the hottest paths come first.
    app.include_router(consent_router)
    app.include_router(subjects_router)
    app.include_router(dsar_router)
    app.include_router(policies_router)
    app.include_router(breaches_router)
    app.include_router(fulfilment_router)
    app.include_router(retention_router)
    app.include_router(webhooks_router)
    app.include_router(audit_router)
    app.include_router(reports_router)
    app.include_router(ops_router)
    # Middleware is added innermost first: the hot routes' binder (app/core/routing.py) runs
    # inside CORS and the request context, like every route.
    app.add_middleware(HotPaths, api=app)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Location", "ETag", "X-Request-Id"],
        )
    app.add_middleware(
        RequestContextMiddleware,
        metrics=app.state.metrics,
        max_body_bytes=settings.max_body_bytes,
        timeout_seconds=settings.request_timeout_seconds,
    )
    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn app.main:app` builds the app on first access, not at import (tests and the
    # CLI import this module without wanting an app built from the environment).
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
