"""pruning: a finished webhook delivery never attempted is kept from when it was queued

Revision ID: 0015
Revises: 0014

The worker pruned finished deliveries `OUTBOX_KEEP_DAYS` after `last_attempt_at`, through a
partial index on that column. A delivery that finished without any attempt keeps it NULL and
was never pruned: the pending deliveries stopped unsent when their receiver answered 410
Gone (app/webhooks/delivery.py `disable`). A finished delivery is now kept from
`coalesce(last_attempt_at, created_at)` (its last attempt, or when it was queued), and the
batch reads this expression index over the finished deliveries in place of the old one. Its
predicate says "finished" as `status <> 'pending'` (the same rows: a delivery is pending,
succeeded or failed), which no index on `status` serves: SQLite's planner, without
statistics, took the claim's (status, next_attempt_at) index and sorted every finished row
rather than read the old partial index. The deliveries left behind so far go in the worker's
next rounds, in its usual batches: nothing is rewritten here.

On PostgreSQL the new index is built CONCURRENTLY (outside a transaction), before the old one
is dropped (CONCURRENTLY too), so the upgrade does not block writes to this busy table and the
batch always has an index to read.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, its expression, its predicate: the finished deliveries): the new one, then the one
# it replaces
KEPT_FROM = (
    'ix_webhook_delivery_kept_from',
    'coalesce(last_attempt_at, created_at)',
    "status <> 'pending'",
)
LAST_ATTEMPT = (
    'ix_webhook_delivery_finished',
    'last_attempt_at',
    "status IN ('succeeded', 'failed')",
)


def _swap(create: tuple[str, str, str], drop: tuple[str, str, str]) -> None:
    """Build `create`, then drop `drop`."""
    name, expression, predicate = create
    where = {'postgresql_where': sa.text(predicate), 'sqlite_where': sa.text(predicate)}
    if op.get_bind().dialect.name == 'postgresql':
        with op.get_context().autocommit_block():
            op.create_index(
                name,
                'webhook_delivery',
                [sa.text(expression)],
                unique=False,
                postgresql_concurrently=True,
                **where,
            )
            op.drop_index(drop[0], table_name='webhook_delivery', postgresql_concurrently=True)
        return
    op.create_index(name, 'webhook_delivery', [sa.text(expression)], unique=False, **where)
    op.drop_index(drop[0], table_name='webhook_delivery')


def upgrade() -> None:
    _swap(KEPT_FROM, LAST_ATTEMPT)


def downgrade() -> None:
    _swap(LAST_ATTEMPT, KEPT_FROM)
