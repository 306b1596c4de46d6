"""fulfilment: systems and tasks (DESIGN §13)

Revision ID: 0008
Revises: 0007

A push system's job endpoint is a webhook_subscription marked with `system_key` (hidden from
/v1/webhooks, never a fan-out target), so its jobs use the webhooks' delivery, signing and
retries. The claim reads the partial index of claimable tasks per system.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('fulfilment_system',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('categories', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column('handles', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column('mode', sa.Enum('push', 'pull', name='system_delivery_mode', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('subscription_id', sa.Uuid(), nullable=True),
    sa.Column('task_within', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
    sa.Column('contact_email', sa.String(length=254), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['subscription_id'], ['webhook_subscription.id'], name=op.f('fk_fulfilment_system_subscription_id_webhook_subscription'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fulfilment_system')),
    sa.UniqueConstraint('tenant', 'key', name=op.f('uq_fulfilment_system_tenant_key'))
    )
    op.create_table('fulfilment_task',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('dsar_id', sa.Uuid(), nullable=False),
    sa.Column('system_id', sa.Uuid(), nullable=False),
    sa.Column('system_key', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column('status', sa.Enum('pending', 'in_progress', 'completed', 'not_found', 'failed', 'refused', 'waived', name='task_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('explanation', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('retry_exhausted', sa.Boolean(), nullable=False),
    sa.Column('records_affected', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=1000), nullable=True),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
    sa.Column('proof', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
    sa.Column('result_digest', sa.String(length=64), nullable=True),
    sa.Column('reported_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('overdue_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('purge_after', sa.DateTime(timezone=True), nullable=True),
    sa.Column('data_purged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['dsar_id'], ['dsar_ticket.id'], name=op.f('fk_fulfilment_task_dsar_id_dsar_ticket'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['system_id'], ['fulfilment_system.id'], name=op.f('fk_fulfilment_task_system_id_fulfilment_system')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fulfilment_task')),
    sa.UniqueConstraint('dsar_id', 'system_id', name=op.f('uq_fulfilment_task_dsar_id_system_id'))
    )
    with op.batch_alter_table('fulfilment_task', schema=None) as batch_op:
        batch_op.create_index('ix_fulfilment_task_claimable', ['system_id', 'available_at'], unique=False, postgresql_where=sa.text("status IN ('pending', 'in_progress')"), sqlite_where=sa.text("status IN ('pending', 'in_progress')"))
        batch_op.create_index('ix_fulfilment_task_open_due', ['due_at'], unique=False, postgresql_where=sa.text("overdue_at IS NULL AND status IN ('pending', 'in_progress', 'failed')"), sqlite_where=sa.text("overdue_at IS NULL AND status IN ('pending', 'in_progress', 'failed')"))
        batch_op.create_index('ix_fulfilment_task_purge', ['purge_after'], unique=False, postgresql_where=sa.text('data_purged_at IS NULL'), sqlite_where=sa.text('data_purged_at IS NULL'))
        batch_op.create_index('ix_fulfilment_task_retry', ['available_at'], unique=False, postgresql_where=sa.text("status = 'failed' AND retry_exhausted = false"), sqlite_where=sa.text("status = 'failed' AND retry_exhausted = 0"))
        batch_op.create_index(batch_op.f('ix_fulfilment_task_tenant_created_at_id'), ['tenant', 'created_at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_fulfilment_task_tenant_system_key_created_at_id'), ['tenant', 'system_key', 'created_at', 'id'], unique=False)

    with op.batch_alter_table('webhook_subscription', schema=None) as batch_op:
        batch_op.add_column(sa.Column('system_key', sa.String(length=64), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('webhook_subscription', schema=None) as batch_op:
        batch_op.drop_column('system_key')

    with op.batch_alter_table('fulfilment_task', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fulfilment_task_tenant_system_key_created_at_id'))
        batch_op.drop_index(batch_op.f('ix_fulfilment_task_tenant_created_at_id'))
        batch_op.drop_index('ix_fulfilment_task_retry', postgresql_where=sa.text("status = 'failed' AND retry_exhausted = false"), sqlite_where=sa.text("status = 'failed' AND retry_exhausted = 0"))
        batch_op.drop_index('ix_fulfilment_task_purge', postgresql_where=sa.text('data_purged_at IS NULL'), sqlite_where=sa.text('data_purged_at IS NULL'))
        batch_op.drop_index('ix_fulfilment_task_open_due', postgresql_where=sa.text("overdue_at IS NULL AND status IN ('pending', 'in_progress', 'failed')"), sqlite_where=sa.text("overdue_at IS NULL AND status IN ('pending', 'in_progress', 'failed')"))
        batch_op.drop_index('ix_fulfilment_task_claimable', postgresql_where=sa.text("status IN ('pending', 'in_progress')"), sqlite_where=sa.text("status IN ('pending', 'in_progress')"))

    op.drop_table('fulfilment_task')
    op.drop_table('fulfilment_system')
