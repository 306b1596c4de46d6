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
from typing import Any, Generic, TypeVar

from app.rules.policy import ConsentPurposeRule, ResolvedPolicy

TTL_SECONDS = 2.0
MAX_POLICIES = 10_000

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class VersionSnapshot:
    """What a write needs of a policy version (read-only; never attached to a session)."""

    policy_key: str
    version: int
    effective_at: datetime
    published_at: datetime
    resolved: ResolvedPolicy
    # the resolved consent purposes by key, indexed once (every consent write looks one up)
    purposes: dict[str, ConsentPurposeRule] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        by_key = {p["key"]: p for p in self.resolved.get("consent_purposes") or []}
        object.__setattr__(self, "purposes", by_key)


def version_in_force(versions: Iterable[tuple[int, datetime]], at: datetime) -> int | None:
    """The rule, once: the newest version whose `effective_at` is not after `at`, else
    version 1, which also governs every earlier instant. `versions` holds (number,
    effective_at) pairs in any order."""
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


class ExpiringCache(Generic[K, V]):
    """A small thread-safe LRU whose entries live `ttl` seconds from when they were put (a
    read never extends them). An empty value is never stored: what does not exist yet must
    show at once when it is created."""

    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = MAX_POLICIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[K, tuple[float, tuple[V, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> tuple[V, ...] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] < time.monotonic():
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: K, values: Sequence[V]) -> None:
        if not values:
            return
        with self._lock:
            self._entries[key] = (time.monotonic() + self.ttl, tuple(values))
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)


# A policy's versions by (tenant, policy key), for the writes of the other domains.
VERSIONS: ExpiringCache[tuple[str, str], VersionSnapshot] = ExpiringCache()

# (policy_key, version, effective_at, consent_purposes) for every version of a tenant's policies
PurposeRow = tuple[str, int, datetime, Any]

# Every version of every policy of a tenant, with its consent purposes: what the current-state
# read needs besides the subject's own rows. Dropped at once when this process creates or
# publishes a policy of the tenant, refreshed after TTL_SECONDS otherwise (so another
# process's new policy or version shows in this process's reads within that time).
PURPOSES: ExpiringCache[str, PurposeRow] = ExpiringCache()
