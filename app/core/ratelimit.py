"""Per-tenant rate limit on write routes (`RATE_LIMIT_WRITES` per minute; off by default).

Two limiters, one contract (`check` raises `RateLimited` or returns; a refused check takes
nothing, so running it again after a refusal changes nothing):

- without `REDIS_URL`, `WriteLimiter`: a token bucket per tenant, in this process. With N
  processes (`--workers`, replicas) a tenant gets up to N times the rate.
- with `REDIS_URL`, `RedisWriteLimiter`: one fixed window of a minute per tenant in Redis,
  shared by every process. One atomic Lua script reads the count, refuses at the limit, or
  increments it and starts the window's expiry on its first write. Redis unreachable (or
  slow): the write is let through — a limiter must never turn an outage of its own into an
  outage of the API — and a warning says so, once per outage; Redis is then left alone for
  `RETRY_SECONDS` before it is tried again.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.core.errors import DomainError

log = logging.getLogger("app.ratelimit")

WINDOW_MS = 60_000
RETRY_SECONDS = 2.0  # after a failure, Redis is not asked again before this (fail open)

# KEYS[1] the tenant's counter; ARGV[1] the limit, ARGV[2] the window in ms.
# → {1, ms left in the window} when taken, {0, ms left} when refused (nothing taken).
_FIXED_WINDOW = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    left = tonumber(ARGV[2])
  end
  return {0, left}
end
count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, redis.call('PTTL', KEYS[1])}
"""


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many writes for this tenant; retry in {retry_after} s")
        self.retry_after = retry_after

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}


class Limiter(Protocol):
    async def check(self, tenant: str) -> None: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class WriteLimiter:
    """In process: a token bucket per tenant."""

    def __init__(self, per_minute: int, max_tenants: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_tenants = max_tenants
        self.buckets: dict[str, _Bucket] = {}

    async def check(self, tenant: str) -> None:
        self.take(tenant)

    async def close(self) -> None:
        return None

    def take(self, tenant: str, now: float | None = None) -> None:
        t = time.monotonic() if now is None else now
        bucket = self.buckets.get(tenant)
        if bucket is None:
            if len(self.buckets) >= self.max_tenants:
                self.buckets.clear()
            bucket = self.buckets[tenant] = _Bucket(self.capacity, t)
        bucket.tokens = min(self.capacity, bucket.tokens + (t - bucket.updated) * self.rate)
        bucket.updated = t
        if bucket.tokens < 1.0:
            raise RateLimited(max(1, math.ceil((1.0 - bucket.tokens) / self.rate)))
        bucket.tokens -= 1.0


class RedisWriteLimiter:
    """Shared by every process: a fixed window per tenant in Redis (the module docstring)."""

    def __init__(
        self,
        url: str,
        per_minute: int,
        *,
        prefix: str = "prapi:writes:",
        timeout: float = 0.25,
    ) -> None:
        self.per_minute = per_minute
        self.prefix = prefix
        # No connection is opened here: the first check connects (and fails open).
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # no retries: a write waits for the limiter at most `timeout`, then passes
            retry=Retry(NoBackoff(), 0),
        )
        self.script: Any = self.client.register_script(_FIXED_WINDOW)
        self.failing_since: float | None = None
        self.skip_until = 0.0
        self.passed_unchecked = 0  # writes let through while Redis was away

    async def check(self, tenant: str) -> None:
        now = time.monotonic()
        if now < self.skip_until:
            self.passed_unchecked += 1
            return
        try:
            taken, left_ms = await self.script(
                keys=[self.prefix + tenant], args=[self.per_minute, WINDOW_MS]
            )
        except (RedisError, OSError) as exc:
            self._failed(now, exc)
            return
        if self.failing_since is not None:
            log.info(
                "write limit shared again: Redis answers",
                extra={
                    "event": "rate_limit_redis_back",
                    "unchecked_writes": self.passed_unchecked,
                },
            )
            self.failing_since = None
            self.passed_unchecked = 0
        if not int(taken):
            raise RateLimited(max(1, math.ceil(int(left_ms) / 1000)))

    def _failed(self, now: float, exc: Exception) -> None:
        self.skip_until = now + RETRY_SECONDS
        self.passed_unchecked += 1
        if self.failing_since is None:
            self.failing_since = now
            log.warning(
                "write limit not enforced: Redis unreachable, writes pass unchecked",
                extra={"event": "rate_limit_redis_down", "error": type(exc).__name__},
            )

    async def close(self) -> None:
        await self.client.aclose()


def build_limiter(
    per_minute: int | None, redis_url: str | None, prefix: str = "prapi:writes:"
) -> Limiter | None:
    if not per_minute:
        return None
    if redis_url:
        return RedisWriteLimiter(redis_url, per_minute, prefix=prefix)
    return WriteLimiter(per_minute)
