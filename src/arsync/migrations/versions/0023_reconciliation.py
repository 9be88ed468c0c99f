"""reconciliation runs: ledger records the ERP no longer has are marked, not deleted

``erp_deleted_at`` on customers, invoices and payments: set by a reconciliation run when the
ERP stops listing the record, cleared when it lists it again. A marked invoice is not owed, so
the aging index leaves it out too. ``sync_runs.kind`` and ``report``: a reconciliation is a run
of its own kind, and its report is kept with it. ``reconcile_seen``: the ERP ids a running
reconciliation has read, so they are compared in the database rather than held in memory.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from arsync.db import ExactDecimal, UTCDateTime

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEDGER = ("customers", "invoices", "payments")
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Money = ExactDecimal(scale=4, precision=18)
OWED_BEFORE = "status = 'FINALIZED' AND amount_outstanding > 0"
OWED = "status = 'FINALIZED' AND amount_outstanding > 0 AND erp_deleted_at IS NULL"


def _owed_index(where: str) -> None:
    op.drop_index("ix_invoices_scope_owed", table_name="invoices")
    op.create_index(
        "ix_invoices_scope_owed",
        "invoices",
        ["tenant_id", "environment_id", "currency", "due_date"],
        postgresql_include=["amount_outstanding", "customer_id"],
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    for table in LEDGER:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("erp_deleted_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("kind", sa.String(20), nullable=False, server_default="sync"))
        batch.add_column(sa.Column("report", JSONType, nullable=True))
    op.create_table(
        "reconcile_seen",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("entity", sa.String(20), nullable=False),
        sa.Column("erp_id", sa.String(200), nullable=False),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("amount_total", Money, nullable=True),
        sa.Column("amount_outstanding", Money, nullable=True),
        sa.Column("erp_invoice_id", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reconcile_seen"),
    )
    op.create_index("ix_reconcile_seen_run_entity_erp_id", "reconcile_seen", ["run_id", "entity", "erp_id"])
    _owed_index(OWED)


def downgrade() -> None:
    _owed_index(OWED_BEFORE)
    op.drop_index("ix_reconcile_seen_run_entity_erp_id", table_name="reconcile_seen")
    op.drop_table("reconcile_seen")
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("report")
        batch.drop_column("kind")
    for table in LEDGER:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("erp_deleted_at")
