"""The chain: canonical form and digest of an entry (pure), and the sealer (worker side).

digest(n) = sha256(digest(n-1) + canonical(entry n)), with 64 zeros before the first entry.
The canonical form is sorted-key compact JSON of the entry's own fields and its chain
position, so any change to a sealed row, a removed row or a reordering breaks verification.

Sealing (DESIGN §9): entries are chained per tenant, in sequence order, in batches, and only
once no running transaction can still commit an entry that should come earlier: on
PostgreSQL, entries whose writing transaction id is below the xmin of the current snapshot
(every transaction below it has ended). One sealer at a time (an advisory lock); the others
skip the round. SQLite has one writer at a time: everything committed can be sealed.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEntry
from app.core.db import is_postgres, take_write_lock

GENESIS = "0" * 64
SEAL_BATCH = 1000
# pg_try_advisory_xact_lock key of the sealer (any constant unlikely to collide).
SEAL_LOCK_ID = 0x5EA1_A0D17


def canonical(
    *,
    chain_seq: int,
    id: int,
    tenant: str,
    at: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    data: Any,
) -> str:
    doc = {
        "seq": chain_seq,
        "id": id,
        "tenant": tenant,
        "at": at.astimezone(UTC).isoformat(),
        "actor": actor,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "data": data,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_digest(prev: str, canonical_form: str) -> str:
    return hashlib.sha256((prev + canonical_form).encode()).hexdigest()


def entry_digest(entry: AuditEntry, chain_seq: int, prev: str) -> str:
    return chain_digest(
        prev,
        canonical(
            chain_seq=chain_seq,
            id=entry.id,
            tenant=entry.tenant,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            object_type=entry.object_type,
            object_id=entry.object_id,
            data=entry.data,
        ),
    )


async def seal(session: AsyncSession, now: datetime, batch: int = SEAL_BATCH) -> int:
    """Seal one batch; returns how many entries it chained (0: nothing to do, or another
    sealer holds the lock). Commits."""
    is_pg = is_postgres(session)
    stmt = select(AuditEntry).where(AuditEntry.digest.is_(None))
    if is_pg:
        got = await session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SEAL_LOCK_ID}
        )
        if not got:
            await session.rollback()
            return 0
        stmt = stmt.where(
            AuditEntry.xid < text("(pg_snapshot_xmin(pg_current_snapshot()))::text::bigint")
        )
    else:
        await take_write_lock(session, "audit_entry")
    entries: Sequence[AuditEntry] = (
        await session.scalars(stmt.order_by(AuditEntry.id).limit(batch))
    ).all()
    if not entries:
        await session.rollback()
        return 0
    by_tenant: dict[str, list[AuditEntry]] = defaultdict(list)
    for entry in entries:
        by_tenant[entry.tenant].append(entry)
    # every tenant's chain head in one query (the (tenant, chain_seq) unique index serves it)
    last = (
        select(AuditEntry.tenant, func.max(AuditEntry.chain_seq).label("seq"))
        .where(AuditEntry.tenant.in_(list(by_tenant)), AuditEntry.chain_seq.is_not(None))
        .group_by(AuditEntry.tenant)
        .subquery()
    )
    heads = {
        row[0]: (int(row[1] or 0), str(row[2]))
        for row in await session.execute(
            select(AuditEntry.tenant, AuditEntry.chain_seq, AuditEntry.digest).join(
                last,
                (AuditEntry.tenant == last.c.tenant) & (AuditEntry.chain_seq == last.c.seq),
            )
        )
    }
    changes: list[dict[str, Any]] = []
    for tenant, items in by_tenant.items():
        seq, prev = heads.get(tenant, (0, GENESIS))
        for entry in items:
            seq += 1
            digest = entry_digest(entry, seq, prev)
            changes.append(
                {
                    "id": entry.id,
                    "chain_seq": seq,
                    "prev_digest": prev,
                    "digest": digest,
                    "sealed_at": now,
                }
            )
            prev = digest
    await session.execute(update(AuditEntry), changes)
    await session.commit()
    return len(changes)


@dataclass(slots=True)
class Verification:
    ok: bool
    checked: int
    unsealed: int
    first_broken: dict[str, Any] | None


async def verify(session: AsyncSession, tenant: str, page: int = SEAL_BATCH) -> Verification:
    """Walk the tenant's chain from the start, recomputing every digest."""
    expected, prev, checked = 1, GENESIS, 0
    broken: dict[str, Any] | None = None
    after = 0
    while broken is None:
        rows = (
            await session.scalars(
                select(AuditEntry)
                .where(
                    AuditEntry.tenant == tenant,
                    AuditEntry.chain_seq.is_not(None),
                    AuditEntry.chain_seq > after,
                )
                .order_by(AuditEntry.chain_seq)
                .limit(page)
            )
        ).all()
        for entry in rows:
            assert entry.chain_seq is not None
            checked += 1
            reason = None
            if entry.chain_seq != expected:
                reason = f"entry {expected} of the chain is missing"
            elif entry.prev_digest != prev:
                reason = "prev_digest does not match the previous entry's digest"
            elif entry.digest != entry_digest(entry, entry.chain_seq, prev):
                reason = "digest does not match the entry's content"
            if reason is not None:
                broken = {"seq": expected, "id": entry.id, "reason": reason}
                break
            prev = str(entry.digest)
            expected += 1
            after = entry.chain_seq
        if len(rows) < page:
            break
    unsealed = await session.scalar(
        select(func.count())
        .select_from(AuditEntry)
        .where(AuditEntry.tenant == tenant, AuditEntry.digest.is_(None))
    )
    return Verification(broken is None, checked, unsealed or 0, broken)
