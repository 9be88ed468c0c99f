"""notifications: an environment's webhook and email endpoints, and the log of every delivery

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from arsync.db import UTCDateTime

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _scope_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "environment_id", sa.String(40), sa.ForeignKey("environments.id", ondelete="CASCADE"), nullable=False
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "notification_endpoints",
        sa.Column("id", sa.String(40), primary_key=True),
        *_scope_columns(),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("target", sa.String(2000), nullable=False),
        sa.Column("secret_encrypted", sa.String(4000), nullable=True),
        sa.Column("events", JSONType, nullable=False),
        sa.Column("description", sa.String(200), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_notification_endpoints_scope", "notification_endpoints", ["tenant_id", "environment_id"])
    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        *_scope_columns(),
        sa.Column(
            "endpoint_id",
            sa.String(40),
            sa.ForeignKey("notification_endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_type", sa.String(60), nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(2000), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
    )
    op.create_index(
        "ix_notification_deliveries_scope", "notification_deliveries", ["tenant_id", "environment_id", "created_at"]
    )
    op.create_index("ix_notification_deliveries_endpoint", "notification_deliveries", ["endpoint_id"])


def downgrade() -> None:
    op.drop_table("notification_deliveries")
    op.drop_table("notification_endpoints")
