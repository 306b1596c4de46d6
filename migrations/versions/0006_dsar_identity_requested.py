"""dsar_ticket.identity_requested_at: when the controller asked for identity information

Revision ID: 0006
Revises: 0005

The GDPR and UK GDPR presets start a ticket's clock at the receipt of the identity
information the controller asked for (UK GDPR Art. 12A "relevant time"; EDPB 01/2022);
recomputing a deadline later (an extension) needs to know that it was asked for. Existing
tickets never went through the new rule: NULL is the truth for them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'dsar_ticket', sa.Column('identity_requested_at', sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table('dsar_ticket') as batch:  # SQLite drops columns by copying
        batch.drop_column('identity_requested_at')
