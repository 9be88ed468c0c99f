"""ledger lists: one index per table on (tenant, environment, id), the order lists page in

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("customers", "invoices", "payments")


def upgrade() -> None:
    for table in TABLES:
        op.create_index(f"ix_{table}_scope_id", table, ["tenant_id", "environment_id", "id"])


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_scope_id", table_name=table)
