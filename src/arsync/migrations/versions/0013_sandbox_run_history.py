"""Developer Sandbox runs kept per tenant, with one row per check result

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import arsync.db

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sandbox_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        sa.Column("allow_writes", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("started_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", arsync.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("runner", sa.String(length=200), nullable=True),
        sa.Column(
            "warnings", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("suite_run_id", sa.String(length=20), nullable=True),
        sa.Column(
            "latency", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("must_failed", sa.Integer(), nullable=False),
        sa.Column("should_warnings", sa.Integer(), nullable=False),
        sa.Column("share_token", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_sandbox_runs_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_runs")),
        sa.UniqueConstraint("share_token", name=op.f("uq_sandbox_runs_share_token")),
    )
    with op.batch_alter_table("sandbox_runs", schema=None) as batch_op:
        batch_op.create_index("ix_sandbox_runs_tenant_started", ["tenant_id", "started_at"], unique=False)

    op.create_table(
        "sandbox_check_results",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("verdict", sa.String(length=10), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column(
            "document", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sandbox_runs.id"],
            name=op.f("fk_sandbox_check_results_run_id_sandbox_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "position", name=op.f("pk_sandbox_check_results")),
    )


def downgrade() -> None:
    op.drop_table("sandbox_check_results")
    with op.batch_alter_table("sandbox_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_sandbox_runs_tenant_started")

    op.drop_table("sandbox_runs")
