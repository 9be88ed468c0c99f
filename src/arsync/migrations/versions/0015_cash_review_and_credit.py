"""Cash applications say where the money came from and why they wait, carry its currency and what was kept as the
customer's credit; a payment link records the amount it asks for

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import arsync.db

MONEY = arsync.db.ExactDecimal(scale=4, precision=18)

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cash_applications") as batch:
        batch.add_column(sa.Column("source", sa.String(length=30), nullable=False, server_default="cash_application"))
        batch.add_column(sa.Column("currency", sa.String(length=3), nullable=True))
        batch.add_column(sa.Column("review_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("credited_amount", MONEY, nullable=True))
    with op.batch_alter_table("entity_integration_mappings") as batch:
        batch.add_column(sa.Column("amount", MONEY, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("entity_integration_mappings") as batch:
        batch.drop_column("amount")
    with op.batch_alter_table("cash_applications") as batch:
        batch.drop_column("credited_amount")
        batch.drop_column("review_reason")
        batch.drop_column("currency")
        batch.drop_column("source")
