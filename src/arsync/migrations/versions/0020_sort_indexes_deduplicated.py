"""the ledger's sort indexes end on the sorted column, not on the id, so that PostgreSQL stores
each (tenant, environment, value) once with the list of its rows

Why: B-tree deduplication (PostgreSQL 13 and later, on by default) folds entries with equal keys
into one entry and a list of row pointers, but the id made every key unique, so each index held
a hundred-odd bytes per row. Dates repeat (an AR ledger has a few hundred distinct due dates for
half a million invoices), and measured on 500k invoices the due-date index went from 98 MB to
3.9 MB. The lists still sort by (column, id): the planner reads the index in column order and
sorts each run of equal values by id (an incremental sort), which keeps a page of 50 as cheap as
before. SQLite has no deduplication; the shorter keys do no harm there.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SORTS = {
    "ix_invoices_scope_issued": ("invoices", "issue_date"),
    "ix_invoices_scope_due": ("invoices", "due_date"),
    "ix_invoices_scope_outstanding": ("invoices", "amount_outstanding"),
    "ix_payments_scope_date": ("payments", "payment_date"),
}


def _rebuild(trailing: list[str]) -> None:
    for name, (table, column) in SORTS.items():
        op.drop_index(name, table_name=table)
        op.create_index(name, table, ["tenant_id", "environment_id", column, *trailing])


def upgrade() -> None:
    _rebuild([])


def downgrade() -> None:
    _rebuild(["id"])
