"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import arsync.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
    )
    op.create_table(
        "environments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_environments_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_environments_tenant_id_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=20), nullable=False),
        sa.Column("created_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", arsync.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_api_keys_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_api_keys_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "customers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=50), nullable=True),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column(
            "metadata", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("erp_debtor_id", sa.String(length=200), nullable=True),
        sa.Column("erp_hash", sa.String(length=32), nullable=True),
        sa.Column("created_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_customers_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_customers_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index("ix_customers_scope_name", ["tenant_id", "environment_id", "name"], unique=False)
        batch_op.create_index("uq_customers_erp_id", ["tenant_id", "environment_id", "erp_debtor_id"], unique=True)

    op.create_table(
        "erp_connections",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("transport", sa.String(length=20), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("base_url", sa.String(length=2000), nullable=False),
        sa.Column("secret_encrypted", sa.String(length=4000), nullable=False),
        sa.Column("secret_hint", sa.String(length=40), nullable=False),
        sa.Column("bank_account_code", sa.String(length=50), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.String(length=2000), nullable=True),
        sa.Column("status_changed_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "last_error", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column("sync_watermark", arsync.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_erp_connections_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_erp_connections_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erp_connections")),
        sa.UniqueConstraint(
            "tenant_id",
            "environment_id",
            "transport",
            name=op.f("uq_erp_connections_tenant_id_environment_id_transport"),
        ),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("invoice_number", sa.String(length=200), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_total", arsync.db.ExactDecimal(scale=4, precision=18), nullable=False),
        sa.Column("amount_outstanding", arsync.db.ExactDecimal(scale=4, precision=18), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("erp_status", sa.String(length=40), nullable=True),
        sa.Column("erp_invoice_id", sa.String(length=200), nullable=True),
        sa.Column("erp_hash", sa.String(length=32), nullable=True),
        sa.Column("created_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_invoices_customer_id_customers"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_invoices_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_invoices_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index("ix_invoices_customer", ["customer_id"], unique=False)
        batch_op.create_index("uq_invoices_erp_id", ["tenant_id", "environment_id", "erp_invoice_id"], unique=True)

    op.create_table(
        "sync_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("connection_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("full", sa.Boolean(), nullable=False),
        sa.Column("modified_since", arsync.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", arsync.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "stats", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "warnings", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("warnings_omitted", sa.Integer(), nullable=False),
        sa.Column(
            "error", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["erp_connections.id"],
            name=op.f("fk_sync_runs_connection_id_erp_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_sync_runs_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_sync_runs_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.create_index("ix_sync_runs_connection_started", ["connection_id", "started_at"], unique=False)
        batch_op.create_index(
            "uq_sync_runs_one_running",
            ["connection_id"],
            unique=True,
            sqlite_where=sa.text("status = 'RUNNING'"),
            postgresql_where=sa.text("status = 'RUNNING'"),
        )

    op.create_table(
        "invoice_lines",
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quantity", arsync.db.ExactDecimal(scale=6, precision=18), nullable=False),
        sa.Column("unit_price", arsync.db.ExactDecimal(scale=6, precision=18), nullable=False),
        sa.Column("amount", arsync.db.ExactDecimal(scale=4, precision=18), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_lines_invoice_id_invoices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("invoice_id", "position", name=op.f("pk_invoice_lines")),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("amount", arsync.db.ExactDecimal(scale=4, precision=18), nullable=False),
        sa.Column("payment_date", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=30), nullable=False),
        sa.Column("erp_payment_id", sa.String(length=200), nullable=True),
        sa.Column("erp_hash", sa.String(length=32), nullable=True),
        sa.Column("created_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_payments_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_payments_invoice_id_invoices"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_payments_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index("ix_payments_invoice", ["invoice_id"], unique=False)
        batch_op.create_index("uq_payments_erp_id", ["tenant_id", "environment_id", "erp_payment_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("uq_payments_erp_id")
        batch_op.drop_index("ix_payments_invoice")

    op.drop_table("payments")
    op.drop_table("invoice_lines")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_sync_runs_one_running",
            sqlite_where=sa.text("status = 'RUNNING'"),
            postgresql_where=sa.text("status = 'RUNNING'"),
        )
        batch_op.drop_index("ix_sync_runs_connection_started")

    op.drop_table("sync_runs")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index("uq_invoices_erp_id")
        batch_op.drop_index("ix_invoices_customer")

    op.drop_table("invoices")
    op.drop_table("erp_connections")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("uq_customers_erp_id")
        batch_op.drop_index("ix_customers_scope_name")

    op.drop_table("customers")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_tenant_id"))

    op.drop_table("api_keys")
    op.drop_table("environments")
    op.drop_table("tenants")
