"""the ledger's bulk tables (customers, invoices, payments, parked payments) no longer check
their tenant and environment with a foreign key on every row

Why it is safe: a row's (tenant_id, environment_id) is never typed in. The API and the UI take
it from the key or session that was checked for the request; a sync takes it from its run, whose
own foreign keys checked it when the run was created, and the run holds its connection for as
long as it writes. arsync never deletes a tenant or an environment, so nothing relied on the
cascades either. What remains checked per row is what a row's own data could break: each
invoice's customer, each payment's and line's invoice, and the ERP ids' uniqueness.

Why: on a first sync these checks were most of what PostgreSQL spent per row (two index
lookups in tenants and environments for each of a million rows).

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
