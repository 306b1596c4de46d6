"""Pure ASGI middleware: request id, access log by route template, metrics, body size limit,
and the last-resort 500 problem (no internals in the body; the request id in the log)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PROBLEM_MEDIA_TYPE, InvalidCharacter, problem_body, problem_response
from app.core.logging import request_id_var

log = logging.getLogger("app.access")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.cache_listener_up = Gauge(
            "cache_listener_up",
            "1 while this process hears other processes' policy changes (LISTEN); 0: its "
            "policy caches fall back to a short TTL",
            registry=self.registry,
        )
        # Read from the database at scrape time (app.ops.metrics): every replica reports
        # the same figures, whichever process runs the worker.
        self.outbox_backlog = Gauge(
            "outbox_backlog",
            "Outbox events not yet fanned out to webhook subscriptions",
            registry=self.registry,
        )
        self.webhook_pending = Gauge(
            "webhook_deliveries_pending",
            "Webhook deliveries waiting for their first or next attempt",
            registry=self.registry,
        )
        self.webhook_held_back = Gauge(
            "webhook_deliveries_secret_unreadable",
            "Pending webhook deliveries held back because no configured key opens their "
            "signing secret (SECRETS_KEY changed without the old key in SECRETS_KEY_OLD)",
            registry=self.registry,
        )
        self.webhook_failures = Gauge(
            "webhook_delivery_failures",
            "Webhook deliveries that failed for good (every attempt used up)",
            registry=self.registry,
        )
        self.dsar_overdue = Gauge(
            "dsar_overdue_tickets",
            "Open DSAR tickets past their due instant",
            registry=self.registry,
        )
        self.breach_overdue = Gauge(
            "breach_overdue_incidents",
            "Breach incidents with a required notification past its due instant",
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        # Counted by the worker running in this process (if any).
        self.webhook_attempts = Counter(
            "webhook_delivery_attempts",
            "Webhook attempts made by this process's worker, by resulting delivery status",
            ["status"],
            registry=self.registry,
        )
        self.webhook_secret_unreadable = Counter(
            "webhook_secret_unreadable",
            "Deliveries this process's worker held back because no configured key opens their "
            "signing secret (SECRETS_KEY changed without the old key in SECRETS_KEY_OLD): not "
            "sent, attempt not counted, claimed again later",
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # The labelled children are looked up once per (method, route, status): `labels()`
        # takes a lock and builds its key on every call.
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class _TooLarge(StarletteHTTPException):
    """Raised while the app reads the body; an HTTPException so FastAPI's body parsing
    re-raises it (any other exception there becomes a 400) and the handler renders a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The body exceeds {limit} bytes")


class RequestContextMiddleware:
    def __init__(
        self, app: ASGIApp, metrics: Metrics, max_body_bytes: int, timeout_seconds: float = 30.0
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.timeout = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        declared = _content_length(scope)
        try:
            nul = _nul_in_target(scope)
            if nul is not None:
                await InvalidCharacter([nul]).problem()(scope, _empty_receive, send_wrapper)
                return
            if declared is not None and declared > self.max_body:
                await _problem(
                    send_wrapper,
                    413,
                    "payload_too_large",
                    f"The body exceeds {self.max_body} bytes",
                )
                return
            received = 0

            async def receive_wrapper() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        raise _TooLarge(self.max_body)
                return message

            async with asyncio.timeout(self.timeout):
                await self.app(scope, receive_wrapper, send_wrapper)
        except TimeoutError:
            log.warning("request deadline exceeded", extra=_context(scope))
            if not status["sent"]:
                await _problem(
                    send_wrapper,
                    503,
                    "request_timeout",
                    f"The request took longer than {self.timeout:g} s",
                )
        except _TooLarge:
            if not status["sent"]:
                await _problem(
                    send_wrapper,
                    413,
                    "payload_too_large",
                    f"The body exceeds {self.max_body} bytes",
                )
        except Exception:
            log.exception("unhandled error", extra=_context(scope))
            if not status["sent"]:
                await _problem(
                    send_wrapper,
                    500,
                    "internal_error",
                    f"An unexpected error occurred (request id {rid})",
                )
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope.get("method", "")
            self.metrics.observe_request(method, route, status["code"], elapsed)
            log.info(
                "request",
                extra={
                    **_context(scope),
                    "status": status["code"],
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if 0 < len(text) <= 64 and all(c.isalnum() or c in "-_." for c in text):
                return str(text)
    return None


def _nul_in_target(scope: Scope) -> str | None:
    """ "path" or "query" when the request target carries U+0000 (core.routing explains)."""
    if "\x00" in scope.get("path", ""):
        return "path"
    if b"%00" in scope.get("query_string", b""):
        return "query"
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    # the template as documented: `{subject_id}`, not the `{subject_id:path}` it is declared with
    path = getattr(route, "path_format", None)
    return path if isinstance(path, str) else "<unmatched>"


def _context(scope: Scope) -> dict[str, Any]:
    state = scope.get("state") or {}
    return {
        "method": scope.get("method"),
        "route": _route_template(scope),
        "tenant": state.get("tenant") if isinstance(state, dict) else None,
    }


async def _problem(send: Send, status: int, code: str, detail: str) -> None:
    response = problem_response(status, code, detail)
    assert response.media_type == PROBLEM_MEDIA_TYPE
    await response({"type": "http"}, _empty_receive, send)


async def _empty_receive() -> Message:
    return {"type": "http.disconnect"}


__all__ = ["Metrics", "RequestContextMiddleware", "problem_body"]
