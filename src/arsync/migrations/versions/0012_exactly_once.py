"""Push attempts that survive a crash, parked ERP payments, and sync-run attempts and runners

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import arsync.db

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pushes") as batch:
        batch.add_column(sa.Column("sending_since", arsync.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("first_sent_at", arsync.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("runner", sa.String(length=200), nullable=True))
    op.create_table(
        "parked_payments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("erp_payment_id", sa.String(length=200), nullable=False),
        sa.Column("erp_invoice_id", sa.String(length=200), nullable=False),
        sa.Column(
            "record", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("created_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_parked_payments_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_parked_payments_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parked_payments")),
    )
    op.create_index(
        "uq_parked_payments_erp_id", "parked_payments", ["tenant_id", "environment_id", "erp_payment_id"], unique=True
    )
    op.create_index("ix_parked_payments_invoice", "parked_payments", ["tenant_id", "environment_id", "erp_invoice_id"])


def downgrade() -> None:
    op.drop_index("ix_parked_payments_invoice", table_name="parked_payments")
    op.drop_index("uq_parked_payments_erp_id", table_name="parked_payments")
    op.drop_table("parked_payments")
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("runner")
        batch.drop_column("attempt")
    with op.batch_alter_table("pushes") as batch:
        batch.drop_column("first_sent_at")
        batch.drop_column("sending_since")
