"""Process-wide caches of policy versions, for the write paths of the other domains (and,
for the consent-state read, of every tenant's consent purposes).

Every DSAR, consent event and breach records the policy version in force at its own instant;
looking that up used to cost a query (and decoding the resolved rules) on every write.
Versions are immutable and only ever added, so a policy's version list is cached, and dropped
at once when a version is created or published — by this process or by any other.

Across processes (`uvicorn --workers N`, replicas) the mechanism is PostgreSQL LISTEN/NOTIFY:
creating or publishing a policy sends a notification on `CHANNEL` in its own transaction
(`announcement`), and every process's listener (app/core/listen.py, wired in app/main.py)
drops the policy's entries when it arrives (`heard`). While a listener is up, entries live
`COHERENT_TTL_SECONDS` (a safety net, not the mechanism). A process that is not listening —
its listener is down, or not started yet — may have missed notifications: its entries then
live `TTL_SECONDS` only (the fallback, and what the listener's log line says), and when the
listener is back everything cached is dropped (`listening_started`). SQLite is one process:
its own invalidation after commit is all it needs, and it keeps the short TTL.

A read that filled an entry from the database races with an invalidation that arrives while
it runs: `stamp()` before the read and `put(…, stamp)` after; an entry read before the last
invalidation is not stored.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from app.rules.policy import ConsentPurposeRule, ResolvedPolicy

TTL_SECONDS = 2.0
COHERENT_TTL_SECONDS = 300.0
MAX_POLICIES = 10_000
# The NOTIFY channel of policy changes; the payload is {"tenant": …, "policy": …}.
CHANNEL = "prapi_policy_changed"

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
    read never extends them), or `coherent_ttl` while a listener hears every invalidation
    (`listening`). An empty value is never stored: what does not exist yet must show at once
    when it is created."""

    def __init__(
        self,
        ttl: float = TTL_SECONDS,
        max_entries: int = MAX_POLICIES,
        coherent_ttl: float = COHERENT_TTL_SECONDS,
    ) -> None:
        self.ttl = ttl
        self.coherent_ttl = coherent_ttl
        self.max_entries = max_entries
        self.listening = 0  # live listeners feeding this cache's invalidations
        self._epoch = 0  # bumped by every invalidation
        self._entries: OrderedDict[K, tuple[float, tuple[V, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> tuple[V, ...] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            lifetime = self.coherent_ttl if self.listening > 0 else self.ttl
            if entry[0] + lifetime < time.monotonic():
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def stamp(self) -> int:
        """Take before reading what `put` will store (the module docstring)."""
        return self._epoch

    def put(self, key: K, values: Sequence[V], stamp: int | None = None) -> None:
        if not values:
            return
        with self._lock:
            if stamp is not None and stamp != self._epoch:
                return  # invalidated while it was read: it may already be stale
            self._entries[key] = (time.monotonic(), tuple(values))
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate(self, key: K) -> None:
        with self._lock:
            self._epoch += 1
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._entries.clear()


# A policy's versions by (tenant, policy key), for the writes of the other domains.
VERSIONS: ExpiringCache[tuple[str, str], VersionSnapshot] = ExpiringCache()

# (policy_key, version, effective_at, consent_purposes) for every version of a tenant's policies
PurposeRow = tuple[str, int, datetime, Any]

# Every version of every policy of a tenant, with its consent purposes: what the current-state
# read needs besides the subject's own rows. Dropped when a policy of the tenant is created or
# a version published, in this process or another (the module docstring).
PURPOSES: ExpiringCache[str, PurposeRow] = ExpiringCache()


def invalidate(tenant: str, policy_key: str) -> None:
    """Drop what the caches hold of one policy (and of its tenant's purposes)."""
    VERSIONS.invalidate((tenant, policy_key))
    PURPOSES.invalidate(tenant)


def announcement(tenant: str, policy_key: str, echo: str | None = None) -> str:
    """The NOTIFY payload of a change to one policy (`echo`: see `announced`)."""
    change = {"tenant": tenant, "policy": policy_key}
    if echo is not None:
        change["echo"] = echo
    return json.dumps(change)


def heard(payload: str) -> None:
    """A notification on `CHANNEL`, from any process (this one included)."""
    change = json.loads(payload)
    invalidate(str(change["tenant"]), str(change["policy"]))
    waiter = _ECHOES.get(str(change.get("echo")))
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


ECHO_TIMEOUT_SECONDS = 1.0
_ECHOES: dict[str, asyncio.Future[None]] = {}


@asynccontextmanager
async def announced() -> AsyncIterator[str | None]:
    """The token to put in a change's notification (None: this process is not listening).
    Leaving the block without an error — after the commit — waits until this process's own
    listener has heard it (at most ECHO_TIMEOUT_SECONDS). PostgreSQL signals every listening
    session together when the transaction commits, so by then the other processes have been
    told as well: a client that reads through another process right after the answer finds
    the change there, instead of racing its notification."""
    if VERSIONS.listening == 0:
        yield None
        return
    token = uuid.uuid4().hex
    waiter = _ECHOES[token] = asyncio.get_running_loop().create_future()
    try:
        yield token
        await asyncio.wait_for(waiter, timeout=ECHO_TIMEOUT_SECONDS)
    except TimeoutError:
        pass  # the listener is slow or just went down: its TTL fallback covers the rest
    finally:
        _ECHOES.pop(token, None)


def listening_started(reconnected: bool) -> None:
    """A listener is up: invalidations now arrive as they happen. Everything cached before is
    dropped — notifications sent while no listener was up are lost."""
    for cache in (VERSIONS, PURPOSES):
        cache.clear()
        cache.listening += 1


def listening_stopped() -> None:
    """A listener went down: back to the short TTL for whatever it may have missed."""
    for cache in (VERSIONS, PURPOSES):
        cache.listening = max(0, cache.listening - 1)
