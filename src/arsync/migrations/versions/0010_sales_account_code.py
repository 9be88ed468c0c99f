"""The revenue account native ERP connections post invoice lines to

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("erp_connections") as batch:
        batch.add_column(sa.Column("sales_account_code", sa.String(length=50), nullable=True))
    with op.batch_alter_table("oauth_states") as batch:
        batch.add_column(sa.Column("sales_account_code", sa.String(length=50), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oauth_states") as batch:
        batch.drop_column("sales_account_code")
    with op.batch_alter_table("erp_connections") as batch:
        batch.drop_column("sales_account_code")
