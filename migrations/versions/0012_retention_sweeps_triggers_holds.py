"""retention: daily sweeps, per-subject triggers and legal holds (DESIGN §14)

Revision ID: 0012
Revises: 0011

Retention work is done by fulfilment tasks: a task may have no ticket (`dsar_id` null), points
at the sweep or subject expiry it acts for (`retention_ref`, unique per system), and may be
`held` (postponed by a legal hold). One sweep per (system, category, local day) and one
expiry per (event, category) by unique constraints.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

OLD_STATUSES = "'pending', 'in_progress', 'completed', 'not_found', 'failed', 'refused', 'waived'"
NEW_STATUSES = OLD_STATUSES + ", 'held'"

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('legal_hold',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('subject_id', sa.String(length=200), nullable=True),
    sa.Column('categories', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
    sa.Column('reason', sa.String(length=1000), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('released_by', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_legal_hold'))
    )
    with op.batch_alter_table('legal_hold', schema=None) as batch_op:
        batch_op.create_index('ix_legal_hold_active', ['tenant', 'subject_id'], unique=False, postgresql_where=sa.text('released_at IS NULL'), sqlite_where=sa.text('released_at IS NULL'))
        batch_op.create_index('ix_legal_hold_until', ['until'], unique=False, postgresql_where=sa.text('released_at IS NULL AND until IS NOT NULL'), sqlite_where=sa.text('released_at IS NULL AND until IS NOT NULL'))
        batch_op.create_index(batch_op.f('ix_legal_hold_tenant_created_at_id'), ['tenant', 'created_at', 'id'], unique=False)

    op.create_table('retention_event',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('subject_id', sa.String(length=200), nullable=False),
    sa.Column('policy_key', sa.String(length=64), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_retention_event'))
    )
    with op.batch_alter_table('retention_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_retention_event_tenant_subject_id_policy_key_recorded_at'), ['tenant', 'subject_id', 'policy_key', 'recorded_at'], unique=False)

    op.create_table('retention_expiry',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('subject_id', sa.String(length=200), nullable=False),
    sa.Column('policy_key', sa.String(length=64), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('then', sa.String(length=32), nullable=False),
    sa.Column('explanation', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column('tasks_created_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('superseded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['retention_event.id'], name=op.f('fk_retention_expiry_event_id_retention_event')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_retention_expiry')),
    sa.UniqueConstraint('event_id', 'category', name=op.f('uq_retention_expiry_event_id_category'))
    )
    with op.batch_alter_table('retention_expiry', schema=None) as batch_op:
        batch_op.create_index('ix_retention_expiry_due', ['expires_at'], unique=False, postgresql_where=sa.text('tasks_created_at IS NULL AND superseded_at IS NULL'), sqlite_where=sa.text('tasks_created_at IS NULL AND superseded_at IS NULL'))
        batch_op.create_index(batch_op.f('ix_retention_expiry_tenant_subject_id_policy_key'), ['tenant', 'subject_id', 'policy_key'], unique=False)

    op.create_table('retention_sweep',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('policy_key', sa.String(length=64), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=False),
    sa.Column('system_id', sa.Uuid(), nullable=False),
    sa.Column('system_key', sa.String(length=64), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('cutoff', sa.DateTime(timezone=True), nullable=False),
    sa.Column('then', sa.String(length=32), nullable=False),
    sa.Column('holds', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column('explanation', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['system_id'], ['fulfilment_system.id'], name=op.f('fk_retention_sweep_system_id_fulfilment_system')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_retention_sweep')),
    sa.UniqueConstraint('system_id', 'category', 'day', name=op.f('uq_retention_sweep_system_id_category_day'))
    )
    with op.batch_alter_table('retention_sweep', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_retention_sweep_tenant_created_at_id'), ['tenant', 'created_at', 'id'], unique=False)

    with op.batch_alter_table('fulfilment_task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retention_ref', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('category', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('retention', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True))
        batch_op.add_column(sa.Column('held_by', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True))
        batch_op.alter_column('dsar_id',
               existing_type=sa.Uuid(),
               nullable=True)
        batch_op.create_index('ix_fulfilment_task_held', ['available_at'], unique=False, postgresql_where=sa.text("status = 'held'"), sqlite_where=sa.text("status = 'held'"))
        batch_op.create_unique_constraint(batch_op.f('uq_fulfilment_task_retention_ref_system_id'), ['retention_ref', 'system_id'])
        batch_op.drop_constraint(batch_op.f('ck_fulfilment_task_task_status'), type_='check')
        batch_op.create_check_constraint('task_status', sa.text(f"status IN ({NEW_STATUSES})"))



def downgrade() -> None:
    # the retention tasks have no ticket: they go with their tables
    op.execute("DELETE FROM fulfilment_task WHERE dsar_id IS NULL")
    op.execute("UPDATE fulfilment_task SET status = 'pending' WHERE status = 'held'")
    with op.batch_alter_table('fulfilment_task', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_fulfilment_task_task_status'), type_='check')
        batch_op.create_check_constraint('task_status', sa.text(f"status IN ({OLD_STATUSES})"))
        batch_op.drop_constraint(batch_op.f('uq_fulfilment_task_retention_ref_system_id'), type_='unique')
        batch_op.drop_index('ix_fulfilment_task_held', postgresql_where=sa.text("status = 'held'"), sqlite_where=sa.text("status = 'held'"))
        batch_op.alter_column('dsar_id',
               existing_type=sa.Uuid(),
               nullable=False)
        batch_op.drop_column('held_by')
        batch_op.drop_column('retention')
        batch_op.drop_column('category')
        batch_op.drop_column('retention_ref')

    with op.batch_alter_table('retention_sweep', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_retention_sweep_tenant_created_at_id'))

    op.drop_table('retention_sweep')
    with op.batch_alter_table('retention_expiry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_retention_expiry_tenant_subject_id_policy_key'))
        batch_op.drop_index('ix_retention_expiry_due', postgresql_where=sa.text('tasks_created_at IS NULL AND superseded_at IS NULL'), sqlite_where=sa.text('tasks_created_at IS NULL AND superseded_at IS NULL'))

    op.drop_table('retention_expiry')
    with op.batch_alter_table('retention_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_retention_event_tenant_subject_id_policy_key_recorded_at'))

    op.drop_table('retention_event')
    with op.batch_alter_table('legal_hold', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_legal_hold_tenant_created_at_id'))
        batch_op.drop_index('ix_legal_hold_until', postgresql_where=sa.text('released_at IS NULL AND until IS NOT NULL'), sqlite_where=sa.text('released_at IS NULL AND until IS NOT NULL'))
        batch_op.drop_index('ix_legal_hold_active', postgresql_where=sa.text('released_at IS NULL'), sqlite_where=sa.text('released_at IS NULL'))

    op.drop_table('legal_hold')
