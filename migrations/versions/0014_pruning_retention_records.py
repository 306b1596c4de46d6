"""pruning retention's own records: the deletion instant of a task without a ticket and of a
subject expiry, and the indexes the worker's batches read

Revision ID: 0014
Revises: 0013

Retention's rows grew forever: a sweep per system, category and day, with its task; a
subject's trigger events, their expiries and the erasure tasks made of them (DESIGN §14,
app/pruning). Once finished, each is kept as long as the policy keeps closed requests
(`records.dsar_kept_for`, after it finished), then deleted in the worker's batches:

- `fulfilment_task.delete_after`: set by the worker once a task without a ticket has
  finished (a retry clears it); `ix_fulfilment_task_unscheduled` holds only the finished
  ones still without it, `ix_fulfilment_task_delete_after` those with it, by kind;
- `retention_expiry.delete_after`: set once the expiry is settled (acted on or superseded);
  `ix_retention_expiry_unscheduled` and `ix_retention_expiry_delete_after` likewise.

Each batch reads an index range, never the table. On PostgreSQL the indexes are built
CONCURRENTLY (outside a transaction), so the upgrade does not block writes to these busy
tables while it runs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TASK_FINISHED = (
    "(status IN ('completed', 'not_found', 'waived', 'refused') "
    "OR (status = 'failed' AND retry_exhausted))"
)

# (index, table, columns, partial predicate)
INDEXES: list[tuple[str, str, list[str], str]] = [
    (
        'ix_fulfilment_task_unscheduled',
        'fulfilment_task',
        ['updated_at'],
        f'dsar_id IS NULL AND delete_after IS NULL AND {_TASK_FINISHED}',
    ),
    (
        'ix_fulfilment_task_delete_after',
        'fulfilment_task',
        ['type', 'delete_after'],
        'delete_after IS NOT NULL',
    ),
    (
        'ix_retention_expiry_unscheduled',
        'retention_expiry',
        ['created_at'],
        'delete_after IS NULL AND (tasks_created_at IS NOT NULL OR superseded_at IS NOT NULL)',
    ),
    (
        'ix_retention_expiry_delete_after',
        'retention_expiry',
        ['delete_after'],
        'delete_after IS NOT NULL',
    ),
]


def _where(predicate: str) -> dict[str, object]:
    return {'postgresql_where': sa.text(predicate), 'sqlite_where': sa.text(predicate)}


def upgrade() -> None:
    for table in ('fulfilment_task', 'retention_expiry'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column('delete_after', sa.DateTime(timezone=True), nullable=True)
            )

    if op.get_bind().dialect.name == 'postgresql':
        with op.get_context().autocommit_block():
            for name, table, columns, predicate in INDEXES:
                op.create_index(
                    name,
                    table,
                    columns,
                    unique=False,
                    postgresql_concurrently=True,
                    **_where(predicate),
                )
        return
    for name, table, columns, predicate in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False, **_where(predicate))


def downgrade() -> None:
    for name, table, _, predicate in reversed(INDEXES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name, **_where(predicate))

    for table in ('retention_expiry', 'fulfilment_task'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('delete_after')
