"""native ERP connections: the connected organisation, and OAuth authorizations in progress

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import arsync.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("erp_connections") as batch:
        batch.add_column(sa.Column("external_tenant_id", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("external_tenant_name", sa.String(length=500), nullable=True))
    op.create_table(
        "oauth_states",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("code_verifier_encrypted", sa.String(length=4000), nullable=False),
        sa.Column("bank_account_code", sa.String(length=50), nullable=True),
        sa.Column("tokens_encrypted", sa.String(length=8000), nullable=True),
        sa.Column(
            "organisations",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", arsync.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_oauth_states_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_oauth_states_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_oauth_states")),
    )


def downgrade() -> None:
    op.drop_table("oauth_states")
    with op.batch_alter_table("erp_connections") as batch:
        batch.drop_column("external_tenant_name")
        batch.drop_column("external_tenant_id")
