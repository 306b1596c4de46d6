"""Per-tenant rate limit on write routes (`RATE_LIMIT_WRITES` per minute; off by default).

A token bucket per tenant, in process: with N replicas a tenant gets up to N times the rate.
A shared limiter (PostgreSQL or a gateway) is the next step if that matters.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from app.core.errors import DomainError


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many writes for this tenant; retry in {retry_after} s")
        self.retry_after = retry_after

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class WriteLimiter:
    def __init__(self, per_minute: int, max_tenants: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_tenants = max_tenants
        self.buckets: dict[str, _Bucket] = {}

    def check(self, tenant: str, now: float | None = None) -> None:
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
