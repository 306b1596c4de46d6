"""Policy persistence. Every query is scoped by tenant; repositories flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import is_postgres
from app.policies.cache import CHANNEL, VersionSnapshot, announcement, version_in_force
from app.policies.models import Policy, PolicyVersion


class PolicyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, tenant: str, key: str) -> Policy | None:
        return await self.session.scalar(
            select(Policy).where(Policy.tenant == tenant, Policy.key == key)
        )

    async def list(self, tenant: str, after_key: str | None, limit: int) -> Sequence[Policy]:
        stmt = select(Policy).where(Policy.tenant == tenant)
        if after_key is not None:
            stmt = stmt.where(Policy.key > after_key)
        return (await self.session.scalars(stmt.order_by(Policy.key).limit(limit))).all()

    async def bump_version(self, policy_id: uuid.UUID) -> int:
        """Atomically take the next version number (serialises concurrent publishes)."""
        new = await self.session.scalar(
            update(Policy)
            .where(Policy.id == policy_id)
            .values(latest_version=Policy.latest_version + 1)
            .returning(Policy.latest_version)
        )
        assert new is not None
        return int(new)

    async def announce_change(self, tenant: str, key: str, echo: str | None = None) -> None:
        """NOTIFY every process's cache listener (app/policies/cache.py), in this transaction:
        PostgreSQL delivers it at commit, never for a rolled-back change. SQLite is one
        process: the service's own invalidation after commit is enough."""
        if is_postgres(self.session):
            await self.session.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": CHANNEL, "payload": announcement(tenant, key, echo)},
            )

    async def get_version(self, policy_id: uuid.UUID, version: int) -> PolicyVersion | None:
        return await self.session.scalar(
            select(PolicyVersion).where(
                PolicyVersion.policy_id == policy_id, PolicyVersion.version == version
            )
        )

    async def list_versions(
        self, policy_id: uuid.UUID, after_version: int | None, limit: int
    ) -> Sequence[PolicyVersion]:
        stmt = select(PolicyVersion).where(PolicyVersion.policy_id == policy_id)
        if after_version is not None:
            stmt = stmt.where(PolicyVersion.version > after_version)
        return (await self.session.scalars(stmt.order_by(PolicyVersion.version).limit(limit))).all()

    async def snapshots(self, tenant: str, key: str) -> tuple[VersionSnapshot, ...]:
        """Every version of a policy, oldest first, without the declared configuration."""
        rows = await self.session.execute(
            select(
                PolicyVersion.policy_key,
                PolicyVersion.version,
                PolicyVersion.effective_at,
                PolicyVersion.published_at,
                PolicyVersion.resolved,
            )
            .where(PolicyVersion.tenant == tenant, PolicyVersion.policy_key == key)
            .order_by(PolicyVersion.version)
        )
        return tuple(VersionSnapshot(*row) for row in rows)

    async def versions_in_force(
        self, policy_ids: Sequence[uuid.UUID], at: datetime
    ) -> dict[uuid.UUID, PolicyVersion]:
        """For a page of policies, each one's version in force, in one query."""
        if not policy_ids:
            return {}
        rows = (
            await self.session.scalars(
                select(PolicyVersion).where(
                    PolicyVersion.policy_id.in_(policy_ids),
                    (PolicyVersion.effective_at <= at) | (PolicyVersion.version == 1),
                )
            )
        ).all()
        by_policy: dict[uuid.UUID, dict[int, PolicyVersion]] = {}
        for row in rows:
            by_policy.setdefault(row.policy_id, {})[row.version] = row
        best: dict[uuid.UUID, PolicyVersion] = {}
        for policy_id, versions in by_policy.items():
            number = version_in_force(((n, v.effective_at) for n, v in versions.items()), at)
            if number is not None:
                best[policy_id] = versions[number]
        return best

    async def get_version_by_key(self, tenant: str, key: str, version: int) -> PolicyVersion | None:
        return await self.session.scalar(
            select(PolicyVersion).where(
                PolicyVersion.tenant == tenant,
                PolicyVersion.policy_key == key,
                PolicyVersion.version == version,
            )
        )
