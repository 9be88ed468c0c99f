"""outbound pushes and the job engine

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21

On PostgreSQL this also installs the job engine's tables and functions (Procrastinate's
schema, from the pinned package version). SQLite uses the in-process runner and needs none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from procrastinate.schema import SchemaManager
from sqlalchemy.dialects import postgresql

import arsync.db

# Everything Procrastinate's schema created: its tables, then its functions and types.
DROP_JOB_ENGINE = """
DO $$
DECLARE r record;
BEGIN
    DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs,
        procrastinate_workers CASCADE;
    FOR r IN SELECT oid::regprocedure AS fn FROM pg_proc WHERE proname LIKE 'procrastinate%' LOOP
        EXECUTE 'DROP FUNCTION IF EXISTS ' || r.fn || ' CASCADE';
    END LOOP;
    FOR r IN SELECT typname FROM pg_type WHERE typname LIKE 'procrastinate%' AND typtype IN ('c', 'e') LOOP
        EXECUTE 'DROP TYPE IF EXISTS ' || quote_ident(r.typname) || ' CASCADE';
    END LOOP;
END;
$$;
"""

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _run_script(sql: str) -> None:
    """Run a multi-statement SQL script as is: no parameters, so ``%`` in it stays literal."""
    cursor = op.get_bind().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _run_script(SchemaManager.get_schema())
    op.create_table(
        "pushes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("connection_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("manual_retries", sa.Integer(), nullable=False),
        sa.Column(
            "last_error", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column("erp_id", sa.String(length=200), nullable=True),
        sa.Column("next_attempt_at", arsync.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", arsync.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("succeeded_at", arsync.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_pushes_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_pushes_invoice_id_invoices"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_pushes_payment_id_payments"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_pushes_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pushes")),
    )
    with op.batch_alter_table("pushes", schema=None) as batch_op:
        batch_op.create_index("ix_pushes_scope_status", ["tenant_id", "environment_id", "status"], unique=False)
        batch_op.create_index(
            "uq_pushes_invoice",
            ["invoice_id"],
            unique=True,
            sqlite_where=sa.text("kind = 'invoice'"),
            postgresql_where=sa.text("kind = 'invoice'"),
        )
        batch_op.create_index("uq_pushes_payment", ["payment_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("pushes", schema=None) as batch_op:
        batch_op.drop_index("uq_pushes_payment")
        batch_op.drop_index(
            "uq_pushes_invoice", sqlite_where=sa.text("kind = 'invoice'"), postgresql_where=sa.text("kind = 'invoice'")
        )
        batch_op.drop_index("ix_pushes_scope_status")

    op.drop_table("pushes")
    if op.get_bind().dialect.name == "postgresql":
        _run_script(DROP_JOB_ENGINE)
