"""Nomod webhook deliveries, the Nomod service-fee setting, and a push's own idempotency key

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import arsync.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pushes") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=128), nullable=True))
    with op.batch_alter_table("nomod_connections") as batch:
        batch.add_column(sa.Column("allow_service_fee", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "nomod_webhook_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("received_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=True),
        sa.Column("event_type", sa.String(length=100), nullable=True),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("charge_id", sa.String(length=200), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=True),
        sa.Column("invoice_id", sa.String(length=40), nullable=True),
        sa.Column("cash_application_id", sa.String(length=40), nullable=True),
        sa.Column("body", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_nomod_webhook_deliveries_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_nomod_webhook_deliveries_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nomod_webhook_deliveries")),
    )
    op.create_index(
        "ix_nomod_webhook_deliveries_scope",
        "nomod_webhook_deliveries",
        ["tenant_id", "environment_id", "received_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_nomod_webhook_deliveries_scope", table_name="nomod_webhook_deliveries")
    op.drop_table("nomod_webhook_deliveries")
    with op.batch_alter_table("nomod_connections") as batch:
        batch.drop_column("allow_service_fee")
    with op.batch_alter_table("pushes") as batch:
        batch.drop_column("idempotency_key")
