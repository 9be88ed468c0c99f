"""A connection may sync on its own schedule instead of the server's, and remembers the last of
its slots it was started for

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import arsync.db

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("erp_connections") as batch:
        batch.add_column(sa.Column("sync_cron", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("schedule_slot_at", arsync.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("erp_connections") as batch:
        batch.drop_column("schedule_slot_at")
        batch.drop_column("sync_cron")
