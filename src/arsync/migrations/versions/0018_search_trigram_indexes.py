"""searching the ledger by customer name or invoice number reads trigram indexes on PostgreSQL,
instead of every customer and invoice of the scope

``lower(column) LIKE '%text%'`` (how the lists search) can use a GIN index of ``pg_trgm``
trigrams over ``lower(column)``; a B-tree cannot serve a pattern that starts with ``%``.
``pg_trgm`` ships with PostgreSQL (contrib) and is a trusted extension since PostgreSQL 13,
so the database's owner may create it. Where it cannot be created, searches still work, by
reading the rows, and the migration says so instead of failing.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

import logging
from collections.abc import Sequence

from alembic import op
from sqlalchemy.exc import DBAPIError

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGRAM_INDEXES = {
    "ix_customers_name_trgm": ("customers", "name"),
    "ix_invoices_number_trgm": ("invoices", "invoice_number"),
}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    try:
        with bind.begin_nested():
            op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DBAPIError as error:
        logging.getLogger("alembic").warning(
            "pg_trgm is not available (%s); searches by name or number will read every row of the scope",
            str(error.orig).strip(),
        )
        return
    for name, (table, column) in TRIGRAM_INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON {table} USING gin (lower({column}) gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in TRIGRAM_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
