"""Policy use cases. Each write is one transaction, committed here and nowhere else."""

from __future__ import annotations

import uuid
import zoneinfo
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import trail
from app.core.clock import Clock
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.idempotency import as_sent, idempotent
from app.core.instants import json_ready as iso
from app.core.pagination import decode_int_cursor, decode_key_cursor, page_of
from app.core.security import Principal
from app.policies import cache
from app.policies.cache import VERSIONS, VersionSnapshot, in_force
from app.policies.models import Policy, PolicyVersion
from app.policies.repository import PolicyRepository
from app.policies.schemas import (
    BreachPreviewIn,
    BreachPreviewOut,
    DsarPreviewIn,
    DsarPreviewOut,
    PolicyConfig,
    PolicyCreate,
    PolicyPublish,
    PolicyRead,
)
from app.rules import regimes
from app.rules.deadlines import breach_deadlines, dsar_deadlines, effective_at
from app.rules.fulfilment import settings as fulfilment_settings
from app.rules.records import settings as records_settings
from app.rules.retention import evaluate_retention


class PolicyNotFound(NotFound):
    code = "policy_not_found"


class PolicyVersionNotFound(NotFound):
    code = "policy_version_not_found"


class PolicyExists(Conflict):
    code = "policy_exists"


class PolicyInvalid(Unprocessable):
    code = "validation_error"


@lru_cache(maxsize=1)
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def semantic_errors(body: PolicyConfig) -> list[dict[str, Any]]:
    """Checks a JSON schema cannot express; each names the field path it is about."""
    errors: list[dict[str, Any]] = []

    def err(loc: Sequence[str | int], msg: str) -> None:
        errors.append({"loc": ["body", *loc], "msg": msg, "type": "value_error"})

    seen_rights: set[str] = set()
    for i, right in enumerate(body.rights):
        if right in seen_rights:
            err(["rights", i], f"duplicate right '{right}'")
        seen_rights.add(right)
    if body.response and body.response.by_type:
        for right in body.response.by_type:
            if right not in seen_rights:
                err(
                    ["response", "by_type", right],
                    f"a rule for '{right}', which the policy does not list in rights",
                )
    seen_cat: set[str] = set()
    for i, item in enumerate(body.retention):
        if item.category in seen_cat:
            err(["retention", i, "category"], f"duplicate category '{item.category}'")
        seen_cat.add(item.category)
    seen_purpose: set[str] = set()
    for i, purpose in enumerate(body.consent_purposes):
        if purpose.key in seen_purpose:
            err(["consent_purposes", i, "key"], f"duplicate purpose '{purpose.key}'")
        seen_purpose.add(purpose.key)
    jur = body.jurisdiction
    if jur.timezone not in _known_timezones():
        err(["jurisdiction", "timezone"], "not an IANA time zone this service knows")
    try:
        regimes.validate_country(jur.country, jur.subdivision)
    except ValueError as exc:
        loc = "subdivision" if jur.subdivision and "subdivision" in str(exc) else "country"
        err(["jurisdiction", loc], str(exc))
    return errors


def declared_config(body: PolicyConfig, key: str) -> dict[str, Any]:
    declared = body.model_dump(mode="json", exclude_unset=True)
    declared["key"] = key
    return declared


def to_read(version: PolicyVersion, in_force: bool) -> PolicyRead:
    data = dict(version.resolved)
    data["fulfilment"] = fulfilment_settings(data)  # versions published before the block
    data["records"] = records_settings(data)  # likewise
    data.update(
        version=version.version,
        published_at=version.published_at,
        effective_at=version.effective_at,
        in_force=in_force,
        declared=version.declared,
    )
    return PolicyRead.model_validate(data)


def _audit(
    session: AsyncSession, who: Principal, action: str, version: PolicyVersion, at: datetime
) -> None:
    trail.record(
        session,
        tenant=who.tenant,
        actor=who.sub,
        action=action,
        object_type="policy",
        object_id=version.policy_key,
        data={
            "key": version.policy_key,
            "version": version.version,
            "regime": version.resolved["jurisdiction"]["regime"],
            "effective_at": iso(version.effective_at),
        },
        at=at,
    )


class PolicyService:
    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.repo = PolicyRepository(session)
        self.clock = clock

    def _validate(self, body: PolicyConfig) -> None:
        errors = semantic_errors(body)
        if errors:
            first = errors[0]
            raise PolicyInvalid(
                f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}", errors=errors
            )

    async def create(
        self, who: Principal, body: PolicyCreate, idempotency_key: str | None
    ) -> JSONResponse | PolicyRead:
        self._validate(body)
        async with idempotent(
            self.session, who.tenant, "createPolicy", idempotency_key, lambda: as_sent(body)
        ) as idem:
            if idem.replay is not None:
                return idem.replay
            now = self.clock()
            declared = declared_config(body, body.key)
            resolved = regimes.resolve(declared)
            policy = Policy(
                id=uuid.uuid4(), tenant=who.tenant, key=body.key, latest_version=1, created_at=now
            )
            version = PolicyVersion(
                policy_id=policy.id,
                tenant=who.tenant,
                policy_key=body.key,
                version=1,
                declared=declared,
                resolved=resolved,
                published_at=now,
                effective_at=effective_at(resolved, published_at=now, is_first_version=True),
                published_by=who.sub,
            )
            self.session.add(policy)
            try:
                await self.session.flush()
            except IntegrityError as exc:
                await self.session.rollback()
                raise PolicyExists(
                    f"A policy with key '{body.key}' exists: publish a new version with PUT"
                ) from exc
            self.session.add(version)
            _audit(self.session, who, "policy.created", version, now)
            async with cache.announced() as echo:
                await self.repo.announce_change(who.tenant, body.key, echo)
                await self.session.flush()
                read = to_read(version, in_force=True)
                idem.remember(201, read.model_dump(mode="json"), f"/v1/policies/{body.key}", at=now)
                await self.session.commit()
                cache.invalidate(who.tenant, body.key)
            return read

    async def publish(self, who: Principal, key: str, body: PolicyPublish) -> PolicyRead:
        if body.key is not None and body.key != key:
            raise PolicyInvalid(
                "body.key must equal the policy key in the path",
                errors=[
                    {
                        "loc": ["body", "key"],
                        "msg": "must equal the path's key",
                        "type": "value_error",
                    }
                ],
            )
        self._validate(body)
        policy = await self._policy(who, key)
        now = self.clock()
        number = await self.repo.bump_version(policy.id)
        declared = declared_config(body, key)
        resolved = regimes.resolve(declared)
        version = PolicyVersion(
            policy_id=policy.id,
            tenant=who.tenant,
            policy_key=key,
            version=number,
            declared=declared,
            resolved=resolved,
            published_at=now,
            effective_at=effective_at(resolved, published_at=now, is_first_version=False),
            published_by=who.sub,
        )
        self.session.add(version)
        _audit(self.session, who, "policy.published", version, now)
        async with cache.announced() as echo:
            await self.repo.announce_change(who.tenant, key, echo)
            await self.session.flush()
            in_force = version.effective_at <= now
            await self.session.commit()
            cache.invalidate(who.tenant, key)
        return to_read(version, in_force=in_force)

    async def _policy(self, who: Principal, key: str) -> Policy:
        policy = await self.repo.get(who.tenant, key)
        if policy is None:
            raise PolicyNotFound(f"No policy '{key}' in this tenant")
        return policy

    async def get(self, who: Principal, key: str) -> PolicyRead:
        number = await self._number_in_force(who.tenant, key)
        version = (
            await self.repo.get_version_by_key(who.tenant, key, number)
            if number is not None
            else None
        )
        if version is None:
            raise PolicyNotFound(f"No policy '{key}' in this tenant")
        return to_read(version, in_force=True)

    async def _number_in_force(self, tenant: str, key: str) -> int | None:
        """The number of the version in force now (None: no such policy), by the one rule
        (cache.version_in_force) over the versions read afresh: the policy's own reads show a
        version published through another process at once, whatever the cache holds."""
        found = in_force(await self.snapshots(tenant, key, fresh=True), self.clock())
        return found.version if found is not None else None

    async def list_page(
        self, who: Principal, limit: int, cursor: str | None
    ) -> tuple[list[PolicyRead], str | None]:
        policies = await self.repo.list(who.tenant, decode_key_cursor(cursor), limit + 1)
        page, nxt = page_of(policies, limit, lambda p: [p.key])
        in_force = await self.repo.versions_in_force([p.id for p in page], self.clock())
        items = [to_read(in_force[p.id], in_force=True) for p in page if p.id in in_force]
        return items, nxt

    async def versions(
        self, who: Principal, key: str, limit: int, cursor: str | None
    ) -> tuple[list[PolicyRead], str | None]:
        policy = await self._policy(who, key)
        after_version = decode_int_cursor(cursor)
        rows = await self.repo.list_versions(policy.id, after_version, limit + 1)
        page, nxt = page_of(rows, limit, lambda v: [v.version])
        current_no = await self._number_in_force(who.tenant, key)
        items = [to_read(v, in_force=v.version == current_no) for v in page]
        return items, nxt

    async def version(self, who: Principal, key: str, number: int) -> PolicyRead:
        policy = await self._policy(who, key)
        found = await self.repo.get_version(policy.id, number)
        if found is None:
            raise PolicyVersionNotFound(f"Policy '{key}' has no version {number}")
        return to_read(found, in_force=await self._number_in_force(who.tenant, key) == number)

    async def snapshots(
        self, tenant: str, key: str, *, fresh: bool = False
    ) -> tuple[VersionSnapshot, ...]:
        """Every version of a policy (none: no such policy), from the process's cache, or
        from the database when `fresh` (which refills the cache)."""
        versions = None if fresh else VERSIONS.get((tenant, key))
        if versions is None:
            stamp = VERSIONS.stamp()
            versions = await self.repo.snapshots(tenant, key)
            VERSIONS.put((tenant, key), versions, stamp)
        return versions

    async def version_at(
        self, tenant: str, key: str, at: datetime, *, fresh: bool = False
    ) -> VersionSnapshot:
        """For the other domains: the version governing an instant, or 422 if no such policy.
        Served from the process's version cache (app/policies/cache.py) unless `fresh`."""
        found = in_force(await self.snapshots(tenant, key, fresh=fresh), at)
        if found is None:
            raise UnknownPolicy(f"No policy '{key}' in this tenant", field="policy_key")
        return found


class UnknownPolicy(Unprocessable):
    code = "policy_not_found"


class RightNotOffered(Unprocessable):
    code = "dsar_type_not_offered"


class PreviewService:
    """The rules module, exposed: what would the clocks say for these facts?"""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.policies = PolicyService(session, clock)
        self.clock = clock

    async def deadlines(
        self, who: Principal, key: str, body: DsarPreviewIn | BreachPreviewIn
    ) -> DsarPreviewOut | BreachPreviewOut:
        at = body.received_at if isinstance(body, DsarPreviewIn) else body.aware_at
        version = in_force(await self.policies.snapshots(who.tenant, key), at)
        if version is None:
            raise PolicyNotFound(f"No policy '{key}' in this tenant")
        resolved = version.resolved
        meta = {"policy_key": key, "policy_version": version.version}
        if isinstance(body, DsarPreviewIn):
            offered = list(resolved["rights"])
            if body.type not in offered:
                raise RightNotOffered(
                    f"Policy '{key}' v{version.version} does not offer '{body.type}'",
                    offered=offered,
                )
            dl = dsar_deadlines(
                resolved,
                type=body.type,
                received_at=body.received_at,
                verified_at=body.verified_at,
                requester=body.requester,
                identity_requested=body.identity_requested,
            )
            return DsarPreviewOut.model_validate({"kind": "dsar", **meta, **dl.to_dict()})
        bd = breach_deadlines(resolved, aware_at=body.aware_at, risk=body.risk, role=body.role)
        return BreachPreviewOut.model_validate({"kind": "breach", **meta, **bd.to_dict()})

    async def retention(
        self, who: Principal, key: str, records: list[dict[str, Any]]
    ) -> dict[str, Any]:
        version = in_force(await self.policies.snapshots(who.tenant, key), self.clock())
        if version is None:
            raise PolicyNotFound(f"No policy '{key}' in this tenant")
        result = evaluate_retention(version.resolved, records)
        return {"policy_key": key, "policy_version": version.version, **result}
