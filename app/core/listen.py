"""PostgreSQL LISTEN on a dedicated connection: how one process hears what another changed.

A process keeps caches (app/policies/cache.py); another process that changes what they hold
sends `NOTIFY` in the same transaction, and PostgreSQL delivers it to every listening session
when that transaction commits. LISTEN needs a session of its own, so the listener holds one
connection outside both pools, opened on `DATABASE_LISTEN_URL` (default `DATABASE_URL`):
behind a transaction-mode pooler that URL must reach PostgreSQL directly, since the pooler
hands a session's server connection to other clients between transactions.

A notification sent while the listener is away is lost for good. The listener therefore
tells its owner when it goes down (the caches then trust only their short TTL) and when it
is back (the caches drop everything: they may hold what a lost notification was about).
It reconnects by itself, with a backoff, after a database restart or a killed backend, and
checks its connection every `health_interval` seconds, so a connection that died silently is
noticed within that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger("app.listen")

APPLICATION_NAME = "prapi-listener"
# what a lost or refused connection raises
_LOST = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def asyncpg_dsn(database_url: str) -> str | None:
    """The SQLAlchemy URL as a plain PostgreSQL DSN (None for another database)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """LISTENs on `channels` (channel → handler of the payload) until `stop` is set.

    `on_up(reconnected)` runs once the LISTENs are in place (before any notification is
    handled); `on_down()` when the connection is lost. Both, and the handlers, run on the
    event loop and must not block.
    """

    def __init__(
        self,
        dsn: str,
        channels: Mapping[str, Callable[[str], None]],
        *,
        on_up: Callable[[bool], None],
        on_down: Callable[[], None],
        health_interval: float = 5.0,
        max_backoff: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.channels = dict(channels)
        self.on_up = on_up
        self.on_down = on_down
        self.health_interval = health_interval
        self.max_backoff = max_backoff
        self.live = False
        self.backend_pid: int | None = None
        self.connects = 0  # how many times the LISTENs were put in place

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        down_since: float | None = None
        try:
            while not stop.is_set():
                try:
                    await self._listen(stop, down_since)
                    return  # stopped
                except _LOST as exc:
                    if self.live or down_since is None:
                        log.warning(
                            "cache listener down: caches fall back to their TTL",
                            extra={"event": "cache_listener_down", "error": type(exc).__name__},
                        )
                    if self.live:
                        self.live = False
                        self.on_down()
                        backoff = 0.1
                    if down_since is None:
                        down_since = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(self.max_backoff, backoff * 2)
        finally:
            if self.live:  # stopped (or cancelled) while up
                self.live = False
                self.on_down()

    async def _listen(self, stop: asyncio.Event, down_since: float | None) -> None:
        """One connection: LISTEN, report up, watch it until `stop` (returns) or it is lost
        (raises)."""
        conn = await asyncpg.connect(
            self.dsn,
            timeout=5,
            statement_cache_size=0,
            server_settings={"application_name": APPLICATION_NAME},
        )
        try:
            for channel in self.channels:
                await conn.add_listener(channel, self._dispatch)
            self.backend_pid = conn.get_server_pid()
            reconnected = self.connects > 0 or down_since is not None
            self.connects += 1
            self.live = True
            self.on_up(reconnected)
            extra: dict[str, Any] = {"event": "cache_listener_up", "reconnected": reconnected}
            if down_since is not None:
                extra["down_seconds"] = round(time.monotonic() - down_since, 3)
            log.info("cache listener up", extra=extra)
            await self._watch(conn, stop)
            if not stop.is_set():
                raise ConnectionError("the listener's connection was closed")
        finally:
            self.backend_pid = None
            if not conn.is_closed():
                conn.terminate()

    async def _watch(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        """Until `stop`, or the connection is lost (a killed backend shows at once; a dead
        network within `health_interval`)."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        if conn.is_closed():
            return
        while not stop.is_set() and not lost.is_set():
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
            try:
                await asyncio.wait(
                    waiters, timeout=self.health_interval, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for w in waiters:
                    w.cancel()
            if not stop.is_set() and not lost.is_set():
                await conn.fetchval("SELECT 1", timeout=5)

    def _dispatch(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        handler = self.channels.get(channel)
        if handler is None:
            return
        try:
            handler(payload)
        except Exception:
            # a malformed payload must not stop the listener; the TTL still bounds staleness
            log.exception("notification not handled", extra={"channel": channel})
