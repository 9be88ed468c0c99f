"""the ledger's bulk tables (customers, invoices, payments, parked payments) no longer check
their tenant and environment with a foreign key on every row

Why it is safe: a row's (tenant_id, environment_id) is never typed in. The API and the UI take
it from the key or session that was checked for the request; a sync takes it from its run, whose
own foreign keys checked it when the run was created, and the run holds its connection for as
long as it writes. arsync never deletes a tenant or an environment, so nothing relied on the
cascades either. What remains checked per row is what a row's own data could break: each
invoice's customer, each payment's and line's invoice, and the ERP ids' uniqueness.

Why: each was two index lookups (in tenants and in environments) for every row a sync writes,
a million of them on a first sync. Measured, it is a small part of PostgreSQL's work per row:
a full sync of 1.05M records went from 112.6 to 109.6 s.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("customers", "invoices", "payments", "parked_payments")
SCOPE = {"tenant_id": "tenants", "environment_id": "environments"}


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for column, parent in SCOPE.items():
                batch.drop_constraint(f"fk_{table}_{column}_{parent}", type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for column, parent in SCOPE.items():
                batch.create_foreign_key(f"fk_{table}_{column}_{parent}", parent, [column], ["id"], ondelete="CASCADE")
