"""Process-wide caches of policy versions, for the write paths of the other domains (and,
for the consent-state read, of every tenant's consent purposes).

Every DSAR, consent event and breach records the policy version in force at its own instant;
looking that up used to cost a query (and decoding the resolved rules) on every write.
Versions are immutable and only ever added, so a policy's version list is cached for a short
time and dropped at once when this process publishes a version. Another process's
publication is seen within `TTL_SECONDS` — a version only governs from its `effective_at`
(publication + change notice), so the window matters only for a version published with no
notice at all, for requests arriving in the same second or two.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TTL_SECONDS = 2.0
MAX_POLICIES = 10_000


@dataclass(frozen=True, slots=True)
class VersionSnapshot:
    """What a write needs of a policy version (read-only; never attached to a session)."""

    policy_key: str
    version: int
    effective_at: datetime
    published_at: datetime
    resolved: dict[str, Any]
    # the resolved consent purposes by key, indexed once (every consent write looks one up)
    purposes: dict[str, dict[str, Any]] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        by_key = {p["key"]: p for p in self.resolved.get("consent_purposes") or []}
        object.__setattr__(self, "purposes", by_key)


def version_in_force(versions: Iterable[tuple[int, datetime]], at: datetime) -> int | None:
    """The rule, once (PolicyRepository.version_at is its SQL form): the newest version whose
    `effective_at` is not after `at`, else version 1, which also governs every earlier instant.
    `versions` holds (number, effective_at) pairs in any order."""
    best: int | None = None
    has_first = False
    for number, effective_at in versions:
        has_first = has_first or number == 1
        if effective_at <= at and (best is None or number > best):
            best = number
    return 1 if best is None and has_first else best


def in_force(versions: Sequence[VersionSnapshot], at: datetime) -> VersionSnapshot | None:
    """`version_in_force` over a policy's snapshots."""
    number = version_in_force(((v.version, v.effective_at) for v in versions), at)
    return next((v for v in versions if v.version == number), None)


class PolicyVersionCache:
    def __init__(self, ttl: float = TTL_SECONDS, max_policies: int = MAX_POLICIES) -> None:
        self.ttl = ttl
        self.max_policies = max_policies
        self._entries: OrderedDict[tuple[str, str], tuple[float, tuple[VersionSnapshot, ...]]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, tenant: str, key: str) -> tuple[VersionSnapshot, ...] | None:
        with self._lock:
            entry = self._entries.get((tenant, key))
            if entry is None or entry[0] < time.monotonic():
                return None
            self._entries.move_to_end((tenant, key))
            return entry[1]

    def put(self, tenant: str, key: str, versions: Sequence[VersionSnapshot]) -> None:
        if not versions:
            return  # an unknown policy is never cached: its creation must show at once
        with self._lock:
            self._entries[(tenant, key)] = (time.monotonic() + self.ttl, tuple(versions))
            self._entries.move_to_end((tenant, key))
            while len(self._entries) > self.max_policies:
                self._entries.popitem(last=False)

    def invalidate(self, tenant: str, key: str) -> None:
        with self._lock:
            self._entries.pop((tenant, key), None)


VERSIONS = PolicyVersionCache()


# (policy_key, version, effective_at, consent_purposes) for every version of a tenant's policies
PurposeRow = tuple[str, int, datetime, Any]


class TenantPurposesCache:
    """Every version of every policy of a tenant, with its consent purposes: what the
    current-state read needs besides the subject's own rows. Same lifetime rules as
    `PolicyVersionCache`: dropped at once when this process creates or publishes a policy of
    the tenant, refreshed after `TTL_SECONDS` otherwise (so another process's new policy or
    version shows in this process's reads within that time). A tenant without policies is
    never cached."""

    def __init__(self, ttl: float = TTL_SECONDS, max_tenants: int = MAX_POLICIES) -> None:
        self.ttl = ttl
        self.max_tenants = max_tenants
        self._entries: OrderedDict[str, tuple[float, tuple[PurposeRow, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tenant: str) -> tuple[PurposeRow, ...] | None:
        with self._lock:
            entry = self._entries.get(tenant)
            if entry is None or entry[0] < time.monotonic():
                return None
            self._entries.move_to_end(tenant)
            return entry[1]

    def put(self, tenant: str, rows: Sequence[PurposeRow]) -> None:
        if not rows:
            return
        with self._lock:
            self._entries[tenant] = (time.monotonic() + self.ttl, tuple(rows))
            self._entries.move_to_end(tenant)
            while len(self._entries) > self.max_tenants:
                self._entries.popitem(last=False)

    def invalidate(self, tenant: str) -> None:
        with self._lock:
            self._entries.pop(tenant, None)


PURPOSES = TenantPurposesCache()
