"""reports: a DSAR rejection's reason code, and the index the reports read by

Revision ID: 0007
Revises: 0006

`dsar_ticket.status_reason_code` is set when a ticket is rejected (DESIGN §15; the CCPA
regulations §7102(a) report counts denials by it). The reports (app/reports) select a
tenant's tickets by `received_at` range: (tenant, received_at) serves that range, and on
PostgreSQL it INCLUDEs every column they read (an index-only scan: a ticket row, with its
explanation, is wide).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASON_CODES = (
    "identity_not_verified",
    "manifestly_unfounded",
    "excessive",
    "exemption",
    "no_data",
    "other",
)

# covering on PostgreSQL: the reports read these beside (tenant, received_at), never the row
REPORT_COLUMNS = [
    "policy_key",
    "policy_version",
    "type",
    "status",
    "is_open",
    "due_at",
    "due_sort",
    "closed_at",
    "status_reason_code",
]


def upgrade() -> None:
    with op.batch_alter_table("dsar_ticket", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "status_reason_code",
                sa.Enum(
                    *REASON_CODES,
                    name="dsar_reason_code",
                    native_enum=False,
                    create_constraint=True,
                    length=32,
                ),
                nullable=True,
            )
        )
        batch_op.create_index(
            batch_op.f("ix_dsar_ticket_tenant_received_at"),
            ["tenant", "received_at"],
            unique=False,
            postgresql_include=REPORT_COLUMNS,
        )


def downgrade() -> None:
    with op.batch_alter_table("dsar_ticket", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dsar_ticket_tenant_received_at"))
        # the CHECK first: SQLite's table copy would keep it, naming a dropped column
        batch_op.drop_constraint(batch_op.f("ck_dsar_ticket_dsar_reason_code"), type_="check")
        batch_op.drop_column("status_reason_code")
