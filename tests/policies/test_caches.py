"""The process-wide policy caches (app/policies/cache.py): entries live `ttl` seconds from
when they were filled — a read never extends them — and are dropped at once on invalidation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.policies import cache
from app.policies.cache import ExpiringCache, PurposeRow, VersionSnapshot

AT = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(cache.time, "monotonic", fake)
    return fake


def test_tenant_purposes_expire_ttl_after_filling_however_often_read(clock: FakeClock) -> None:
    purposes: ExpiringCache[str, PurposeRow] = ExpiringCache(ttl=2.0)
    rows = [("spotrak", 1, AT, [{"key": "audience_cookies"}])]
    purposes.put("acme", rows)
    for _ in range(3):
        clock.now += 0.6
        assert purposes.get("acme") == tuple(rows)
    clock.now += 0.3  # 2.1 s after filling
    assert purposes.get("acme") is None


def test_tenant_purposes_invalidation_and_empty_tenants(clock: FakeClock) -> None:
    purposes: ExpiringCache[str, PurposeRow] = ExpiringCache(ttl=2.0)
    purposes.put("empty", [])  # a tenant without policies is never cached
    assert purposes.get("empty") is None
    purposes.put("acme", [("spotrak", 1, AT, [])])
    purposes.invalidate("acme")
    assert purposes.get("acme") is None


def test_tenant_purposes_keep_the_most_recently_used_tenants(clock: FakeClock) -> None:
    purposes: ExpiringCache[str, PurposeRow] = ExpiringCache(ttl=60.0, max_entries=2)
    for tenant in ("a", "b"):
        purposes.put(tenant, [("p", 1, AT, [])])
    assert purposes.get("a") is not None  # "a" is now the most recently used
    purposes.put("c", [("p", 1, AT, [])])
    assert purposes.get("b") is None
    assert purposes.get("a") is not None
    assert purposes.get("c") is not None


def test_policy_versions_expire_and_invalidate(clock: FakeClock) -> None:
    versions: ExpiringCache[tuple[str, str], VersionSnapshot] = ExpiringCache(ttl=2.0)
    snapshot = VersionSnapshot("spotrak", 1, AT, AT, {})
    versions.put(("acme", "spotrak"), [snapshot])
    assert versions.get(("acme", "spotrak")) == (snapshot,)
    clock.now += 2.1
    assert versions.get(("acme", "spotrak")) is None
    versions.put(("acme", "spotrak"), [snapshot])
    versions.invalidate(("acme", "spotrak"))
    assert versions.get(("acme", "spotrak")) is None


def test_entries_live_long_only_while_a_listener_hears_invalidations(clock: FakeClock) -> None:
    """Listening: the notifications are the mechanism, the long TTL a safety net. Not
    listening (the listener went down): the short TTL applies again, to every entry."""
    versions: ExpiringCache[tuple[str, str], VersionSnapshot] = ExpiringCache(
        ttl=2.0, coherent_ttl=300.0
    )
    snapshot = VersionSnapshot("spotrak", 1, AT, AT, {})
    versions.listening = 1
    versions.put(("acme", "spotrak"), [snapshot])
    clock.now += 60
    assert versions.get(("acme", "spotrak")) == (snapshot,)
    versions.listening = 0
    assert versions.get(("acme", "spotrak")) is None


def test_a_read_that_raced_an_invalidation_is_not_stored(clock: FakeClock) -> None:
    versions: ExpiringCache[tuple[str, str], VersionSnapshot] = ExpiringCache(ttl=2.0)
    snapshot = VersionSnapshot("spotrak", 1, AT, AT, {})
    stamp = versions.stamp()  # a request starts reading version 1 …
    versions.invalidate(("acme", "spotrak"))  # … another process's notification arrives …
    versions.put(("acme", "spotrak"), [snapshot], stamp)  # … the stale read is dropped
    assert versions.get(("acme", "spotrak")) is None
    versions.put(("acme", "spotrak"), [snapshot], versions.stamp())
    assert versions.get(("acme", "spotrak")) == (snapshot,)


def test_a_notification_drops_the_policy_and_its_tenants_purposes() -> None:
    snapshot = VersionSnapshot("spotrak", 1, AT, AT, {})
    cache.VERSIONS.put(("t-heard", "spotrak"), [snapshot])
    cache.PURPOSES.put("t-heard", [("spotrak", 1, AT, [])])
    cache.heard(cache.announcement("t-heard", "spotrak"))
    assert cache.VERSIONS.get(("t-heard", "spotrak")) is None
    assert cache.PURPOSES.get("t-heard") is None
