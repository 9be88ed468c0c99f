"""the aging index holds only finalized invoices with something still owed (PostgreSQL), and the
outstanding-amount sort is indexed per environment

Why: the aging report, the overview, the trend's "owed now" and the top debtors read only owed
invoices (``status = 'FINALIZED' AND amount_outstanding > 0``, reports.owed_invoices), and most
of an AR ledger's invoices are paid. A partial index keeps those out, and the status need not be a key.
arsync never prepares statements (prepare_threshold is off), so each query is planned with its
values and PostgreSQL can prove it matches the index's condition. SQLite, the small embedded
default, keeps a whole index (without the status) as before.

The outstanding-amount sort reads every row it returns from the table anyway, so the tenant is
checked there (as for the ERP ids, migration 0021); its amounts rarely repeat, so unlike the date
sorts (migration 0020) deduplication did not shrink it.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWED = "status = 'FINALIZED' AND amount_outstanding > 0"


def upgrade() -> None:
    op.drop_index("ix_invoices_scope_owed", table_name="invoices")
    op.create_index(
        "ix_invoices_scope_owed",
        "invoices",
        ["tenant_id", "environment_id", "currency", "due_date"],
        postgresql_include=["amount_outstanding", "customer_id"],
        postgresql_where=sa.text(OWED),
    )
    op.drop_index("ix_invoices_scope_outstanding", table_name="invoices")
    op.create_index("ix_invoices_scope_outstanding", "invoices", ["environment_id", "amount_outstanding"])


def downgrade() -> None:
    op.drop_index("ix_invoices_scope_outstanding", table_name="invoices")
    op.create_index("ix_invoices_scope_outstanding", "invoices", ["tenant_id", "environment_id", "amount_outstanding"])
    op.drop_index("ix_invoices_scope_owed", table_name="invoices")
    op.create_index(
        "ix_invoices_scope_owed",
        "invoices",
        ["tenant_id", "environment_id", "status", "currency", "due_date"],
        postgresql_include=["amount_outstanding", "customer_id"],
    )
