"""ledger lists sort by date, due date and amounts, and the aging report reads what is owed,
from indexes: one per sort column within a (tenant, environment), ending on the id as every
sort does, and one over what finalized invoices owe (covering on PostgreSQL)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SORTS = {
    "ix_invoices_scope_issued": ("invoices", "issue_date"),
    "ix_invoices_scope_due": ("invoices", "due_date"),
    "ix_invoices_scope_outstanding": ("invoices", "amount_outstanding"),
    "ix_payments_scope_date": ("payments", "payment_date"),
}


def upgrade() -> None:
    for name, (table, column) in SORTS.items():
        op.create_index(name, table, ["tenant_id", "environment_id", column, "id"])
    op.create_index(
        "ix_invoices_scope_owed",
        "invoices",
        ["tenant_id", "environment_id", "status", "currency", "due_date"],
        postgresql_include=["amount_outstanding", "customer_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_invoices_scope_owed", table_name="invoices")
    for name, (table, _) in SORTS.items():
        op.drop_index(name, table_name=table)
