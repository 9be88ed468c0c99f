"""nomod invoice sync state; one arsync record per provider object

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import arsync.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "integration_syncs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("entity_type", sa.String(length=20), nullable=False),
        sa.Column("entity_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "last_error", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column("next_attempt_at", arsync.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_integration_syncs_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_integration_syncs_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integration_syncs")),
        sa.UniqueConstraint(
            "tenant_id", "environment_id", "entity_type", "entity_id", "provider", name="uq_integration_syncs_entity"
        ),
    )
    op.create_index(
        "uq_integration_mappings_provider_id",
        "entity_integration_mappings",
        ["tenant_id", "environment_id", "provider", "entity_type", "provider_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_integration_mappings_provider_id", table_name="entity_integration_mappings")
    op.drop_table("integration_syncs")
