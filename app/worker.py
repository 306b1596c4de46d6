"""The worker loop: `python -m app worker`, and inside the server process in the embedded
default (SQLite; `WORKER_IN_PROCESS`).

Each round: seal the audit log, emit reminders, the fulfilment jobs, prune what the service
keeps only for a while (app/pruning: one batch of each kind), fan outbox events out to
subscriptions, deliver what is due. Every phase is its own short transaction; a phase that
fails is logged and the next round tries again. All state is in the database, so any number
of workers may run (on PostgreSQL: advisory lock for the sealer, SKIP LOCKED for claims and
pruning, unique keys for reminders and deliveries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import chain
from app.breaches import reminders as breach_reminders
from app.core.clock import Clock, utc_now
from app.core.config import Settings
from app.core.secretbox import Keyring, load_keyring
from app.dsar import reminders as dsar_reminders
from app.events.reminders import remind
from app.fulfilment import jobs
from app.pruning import jobs as pruning
from app.retention import jobs as retention
from app.webhooks import delivery
from app.webhooks.models import DeliveryStatus

log = logging.getLogger("app.worker")


@dataclass(slots=True)
class RoundStats:
    sealed: int = 0
    reminders: int = 0
    dispatched: int = 0
    attempted: int = 0
    succeeded: int = 0
    failed: int = 0
    pruned: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return bool(
            self.sealed or self.reminders or self.dispatched or self.attempted or self.pruned
        )


def _at(run: pruning.Phase, now: datetime) -> Callable[[AsyncSession], Awaitable[int]]:
    return lambda session: run(session, now)


class Worker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        keyring: Keyring | None = None,
        clock: Clock = utc_now,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: Callable[[], float] = random.random,
        on_attempt: Callable[[DeliveryStatus], None] | None = None,
        on_secret_unreadable: Callable[[int], None] | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        # opens the stored signing secrets (SECRETS_KEY, app/core/secretbox.py)
        self.keyring = keyring if keyring is not None else load_keyring(settings)
        self.clock = clock
        self.rng = rng
        self.on_attempt = on_attempt
        # deliveries held back because the keyring opens no signing secret of theirs
        self.on_secret_unreadable = on_secret_unreadable
        self.allow = settings.webhook_allow_host_set
        self.lease = timedelta(seconds=settings.webhook_timeout_seconds + 30)
        # what each domain reminds of (app/events/reminders.py claims them exactly once)
        self.reminder_sources = [
            dsar_reminders.source(timedelta(days=settings.due_soon_days)),
            breach_reminders.source(timedelta(hours=settings.breach_reminder_hours)),
        ]
        self.pruners = pruning.phases(settings)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        # when this process last looked for today's sweeps (RETENTION_SWEEP_CHECK_SECONDS)
        self._sweeps_checked: datetime | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                timeout=self.settings.webhook_timeout_seconds,
                follow_redirects=False,  # a redirect could lead anywhere (SSRF)
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Worker:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _phase(
        self, name: str, stats: RoundStats, fn: Callable[[AsyncSession], Awaitable[int]]
    ) -> int:
        try:
            async with self.sessionmaker() as session:
                return await fn(session)
        except Exception as exc:
            log.warning("worker phase failed", extra={"phase": name, "error": type(exc).__name__})
            stats.errors.append(f"{name}: {type(exc).__name__}")
            return 0

    async def run_once(self, now: datetime | None = None) -> RoundStats:
        """One round. `now` pins the time (tests); by default the clock."""
        at = now or self.clock()
        stats = RoundStats()
        while True:
            n = await self._phase("seal", stats, lambda s: chain.seal(s, at))
            stats.sealed += n
            if n < chain.SEAL_BATCH:
                break
        stats.reminders = await self._phase(
            "remind",
            stats,
            lambda s: remind(s, at, self.reminder_sources),
        )
        # Fulfilment (DESIGN §13): task.overdue once, retries after backoff. Before the
        # fan-out, so their events go out this round.
        stats.reminders += await self._phase("task_overdue", stats, lambda s: jobs.overdue(s, at))
        await self._phase("task_retries", stats, lambda s: jobs.retries(s, at))
        # The service's own data (DESIGN §14), task results included: one batch of each kind
        # per round; a busy round is followed at once by the next.
        for pruner in self.pruners:
            stats.pruned += await self._phase(pruner.name, stats, _at(pruner.run, at))
        # Retention (DESIGN §14): holds past their `until` end, held tasks no hold covers any
        # more run, passed subject expiries become erasure tasks, and today's sweeps exist.
        await self._phase("holds_ended", stats, lambda s: retention.end_holds(s, at))
        await self._phase("holds_released", stats, lambda s: retention.release_held(s, at))
        await self._phase("retention_erasures", stats, lambda s: retention.create_erasures(s, at))
        if self._sweeps_due(at):

            async def sweeps(session: AsyncSession) -> int:
                return len((await retention.create_sweeps(session, at)).created)

            await self._phase("retention_sweeps", stats, sweeps)
        while True:
            n = await self._phase("fan_out", stats, lambda s: delivery.fan_out(s, at))
            stats.dispatched += n
            if n < delivery.FAN_OUT_BATCH:
                break
        await self._deliver(at, stats)
        return stats

    def _sweeps_due(self, at: datetime) -> bool:
        """Looking for the day's sweeps reads every policy and system: once every
        RETENTION_SWEEP_CHECK_SECONDS, not every round (0: every round)."""
        last = self._sweeps_checked
        every = timedelta(seconds=self.settings.retention_sweep_check_seconds)
        if last is not None and last <= at < last + every:
            return False
        self._sweeps_checked = at
        return True

    async def _deliver(self, now: datetime, stats: RoundStats) -> None:
        claimed: list[delivery.Claimed] = []

        async def take(session: AsyncSession) -> int:
            claimed.extend(
                await delivery.claim(
                    session,
                    now,
                    self.lease,
                    self.keyring,
                    enrich=jobs.job_bodies,
                    on_unreadable=self.on_secret_unreadable,
                )
            )
            return len(claimed)

        await self._phase("claim", stats, take)
        if not claimed:
            return
        outcomes = await asyncio.gather(
            *(delivery.send(self.client, item, now, self.allow) for item in claimed)
        )
        results = [
            (
                item,
                outcome,
                delivery.backoff(
                    item.attempt,
                    self.settings.webhook_backoff_base_seconds,
                    self.settings.webhook_backoff_max_seconds,
                    self.rng,
                ),
            )
            for item, outcome in zip(claimed, outcomes, strict=True)
        ]
        statuses: list[DeliveryStatus] = []

        async def store(session: AsyncSession) -> int:
            statuses.extend(
                await delivery.record(
                    session, results, now, max_attempts=self.settings.webhook_max_attempts
                )
            )
            return len(statuses)

        stats.attempted += await self._phase("record", stats, store)
        for (item, outcome, _), status in zip(results, statuses, strict=False):
            if outcome.ok:
                stats.succeeded += 1
            else:
                log.info(
                    "webhook attempt failed",
                    extra={
                        "delivery_id": str(item.delivery_id),
                        "tenant": item.tenant,
                        "attempt": item.attempt,
                        "status": outcome.status_code,
                        "error": outcome.error,
                    },
                )
            if status == DeliveryStatus.failed:
                stats.failed += 1
            if self.on_attempt is not None:
                self.on_attempt(status)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Rounds until `stop` is set; a busy round is followed at once by the next."""
        interval = self.settings.worker_interval_seconds
        log.info("worker started", extra={"interval_s": interval})
        try:
            while not stop.is_set():
                stats = await self.run_once()
                if stats.busy and not stats.errors:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
        finally:
            await self.aclose()
            log.info("worker stopped")
