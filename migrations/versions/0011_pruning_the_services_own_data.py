"""pruning: the indexes the worker's deletion batches read, and a ticket's deletion instant

Revision ID: 0011
Revises: 0008

The service deletes what it keeps only for a while (DESIGN §14, app/pruning): expired
idempotency records, finished webhook deliveries and the outbox events nothing refers to any
more, closed DSAR tickets past `records.dsar_kept_for` (`dsar_ticket.delete_after`, set by the
worker after closure) and closed breach incidents past `keep_until`. Each batch reads an
index range, never the table: the partial indexes hold only the rows a batch can take.
`webhook_delivery.event_id` also serves the foreign-key check when an event is deleted
(without it PostgreSQL scans the deliveries once per deleted event).

On PostgreSQL the indexes are built CONCURRENTLY (outside a transaction), so the upgrade
does not block writes to these busy tables while it runs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, table, columns, partial predicate or None)
INDEXES: list[tuple[str, str, list[str], str | None]] = [
    ('ix_idempotency_record_created_at', 'idempotency_record', ['created_at'], None),
    ('ix_webhook_delivery_event_id', 'webhook_delivery', ['event_id'], None),
    (
        'ix_webhook_delivery_finished',
        'webhook_delivery',
        ['last_attempt_at'],
        "status IN ('succeeded', 'failed')",
    ),
    (
        'ix_outbox_event_dispatched',
        'outbox_event',
        ['dispatched_at'],
        'dispatched_at IS NOT NULL',
    ),
    (
        'ix_dsar_ticket_unscheduled',
        'dsar_ticket',
        ['closed_at'],
        'closed_at IS NOT NULL AND delete_after IS NULL',
    ),
    ('ix_dsar_ticket_delete_after', 'dsar_ticket', ['delete_after'], 'delete_after IS NOT NULL'),
    (
        'ix_breach_incident_prunable',
        'breach_incident',
        ['keep_until'],
        "status = 'closed' AND keep_until IS NOT NULL",
    ),
]


def _where(predicate: str | None) -> dict[str, object]:
    if predicate is None:
        return {}
    return {'postgresql_where': sa.text(predicate), 'sqlite_where': sa.text(predicate)}


def upgrade() -> None:
    with op.batch_alter_table('dsar_ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delete_after', sa.DateTime(timezone=True), nullable=True))

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

    with op.batch_alter_table('dsar_ticket', schema=None) as batch_op:
        batch_op.drop_column('delete_after')
