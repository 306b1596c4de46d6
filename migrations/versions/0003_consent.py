"""consent ledger

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('consent_event',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('policy_key', sa.String(length=64), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=False),
    sa.Column('subject_id', sa.String(length=200), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('action', sa.Enum('granted', 'denied', 'withdrawn', name='consent_action', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('source', sa.String(length=50), nullable=True),
    sa.Column('proof', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
    sa.Column('gpc', sa.Boolean(), nullable=False),
    sa.Column('erased', sa.Boolean(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_event'))
    )
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consent_event_tenant_occurred_at_id'), ['tenant', 'occurred_at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_consent_event_tenant_subject_id_occurred_at_id'), ['tenant', 'subject_id', 'occurred_at', 'id'], unique=False)

    op.create_table('consent_state',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('subject_id', sa.String(length=200), nullable=False),
    sa.Column('policy_key', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('state', sa.Enum('granted', 'denied', 'withdrawn', name='consent_state_value', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('tenant', 'subject_id', 'policy_key', 'purpose', name=op.f('pk_consent_state'))
    )
    op.create_table('subject_erasure',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('pseudonym', sa.String(length=200), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('consent_events', sa.Integer(), nullable=False),
    sa.Column('consent_states', sa.Integer(), nullable=False),
    sa.Column('dsar_tickets', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subject_erasure'))
    )
    with op.batch_alter_table('subject_erasure', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subject_erasure_tenant_at'), ['tenant', 'at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('subject_erasure', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subject_erasure_tenant_at'))

    op.drop_table('subject_erasure')
    op.drop_table('consent_state')
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consent_event_tenant_subject_id_occurred_at_id'))
        batch_op.drop_index(batch_op.f('ix_consent_event_tenant_occurred_at_id'))

    op.drop_table('consent_event')
