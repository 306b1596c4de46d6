"""Which legal holds cover what (DESIGN §14), for the sweeps, the subject expiries and the DSAR
fan-out alike. Imports only models, so app.fulfilment.fanout can call it without a cycle.

A hold covers (subject, category) when its subject is that subject or none (a category hold
covers everyone), and its categories include that category or are none (a subject hold
without categories covers every category). A task for a system is covered when the hold
covers the subject and any category the system declares; a subject hold without categories
covers the subject at every system.

What a hold kept, and why, is said in one explanation step (`step`), the same for a sweep's
task, a subject's expiry, a DSAR's erasure task and a subject's retention read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.retention.models import LegalHold
from app.rules.explain import Step

# The explanation steps' rule and source (DESIGN §14).
RULE = "legal hold"
SOURCE = "GDPR Art. 17(3)(e)"

# The re-check time of a task held by a hold without an end: only a release brings it
# forward (the release sets it to now).
NEVER = datetime(9999, 12, 31, tzinfo=UTC)


def active(now: datetime) -> ColumnElement[bool]:
    return and_(
        LegalHold.released_at.is_(None),
        or_(LegalHold.until.is_(None), LegalHold.until > now),
    )


async def active_holds(
    session: AsyncSession, tenants: Iterable[str], now: datetime
) -> dict[str, list[LegalHold]]:
    """The tenants' active holds, by tenant, in one query."""
    wanted = sorted(set(tenants))
    out: dict[str, list[LegalHold]] = {t: [] for t in wanted}
    if not wanted:
        return out
    rows = await session.scalars(
        select(LegalHold)
        .where(LegalHold.tenant.in_(wanted), active(now))
        .order_by(LegalHold.created_at, LegalHold.id)
    )
    for hold in rows:
        out[hold.tenant].append(hold)
    return out


def covers(hold: LegalHold, subject_id: str | None, category: str) -> bool:
    if hold.subject_id is not None and hold.subject_id != subject_id:
        return False
    return hold.categories is None or category in hold.categories


def covering_system(
    holds: Sequence[LegalHold], subject_id: str | None, categories: Sequence[str]
) -> list[LegalHold]:
    """The holds covering a subject's task at a system holding `categories`."""
    out: list[LegalHold] = []
    for hold in holds:
        if hold.subject_id is not None and hold.subject_id != subject_id:
            continue
        if hold.categories is None or set(hold.categories) & set(categories):
            out.append(hold)
    return out


def covering(holds: Sequence[LegalHold], subject_id: str | None, category: str) -> list[LegalHold]:
    return [h for h in holds if covers(h, subject_id, category)]


def category_holds(holds: Sequence[LegalHold], category: str) -> list[LegalHold]:
    """Holds on a whole category (everyone's records): no sweep of it while they last."""
    return [
        h
        for h in holds
        if h.subject_id is None and h.categories is not None and category in h.categories
    ]


def held_subjects(holds: Sequence[LegalHold], category: str) -> list[str]:
    """The subjects a sweep of `category` must leave alone."""
    return sorted(
        {
            h.subject_id
            for h in holds
            if h.subject_id is not None and (h.categories is None or category in h.categories)
        }
    )


def recheck_at(holds: Sequence[LegalHold]) -> datetime:
    """When a task held by `holds` may be free: the last of their ends (NEVER if one has
    none); a release brings it forward."""
    ends = [h.until for h in holds]
    if any(e is None for e in ends):
        return NEVER
    return max(e for e in ends if e is not None)


def describe(hold: LegalHold) -> str:
    what = (
        "every category" if hold.categories is None else "categories " + ", ".join(hold.categories)
    )
    whose = "of this subject" if hold.subject_id is not None else "of every subject"
    until = f" until {hold.until.isoformat()}" if hold.until is not None else ""
    return f"legal hold {hold.id} ({what} {whose}{until}): {hold.reason}"


def step(held: Sequence[LegalHold], lead: str, tail: str = "") -> Step:
    """The explanation step saying that `held` keep something, and why: `lead` says what
    ("postponed while "), then each hold described (`describe`), then `tail`."""
    return Step(RULE, SOURCE, lead + "; ".join(describe(h) for h in held) + tail)


def ended_step() -> Step:
    """The step a held task gets when no hold covers it any more and it runs."""
    return Step(RULE, None, "the legal hold ended: the task runs")
