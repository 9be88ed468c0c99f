"""the ledger's ERP content digests are stored as their 16 raw bytes, not 32 hex characters

Why: the digest is only compared, never read by a person, and in hex it took 33 bytes of every
customer, invoice and payment row instead of 17. The digests keep their values, so no record
looks changed to the next sync.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("customers", "invoices", "payments")
BATCH = 10_000


def _convert_sqlite(table: str, to_bytes: bool) -> None:
    """SQLite keeps any value in any column: rewrite each digest (its SQLite has no unhex before 3.41)."""
    connection = op.get_bind()
    rows = connection.execute(sa.text(f'SELECT id, erp_hash FROM "{table}" WHERE erp_hash IS NOT NULL')).all()
    update = sa.text(f'UPDATE "{table}" SET erp_hash = :digest WHERE id = :id')
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        connection.execute(update, [
            {"id": row.id, "digest": bytes.fromhex(row.erp_hash) if to_bytes else bytes(row.erp_hash).hex()}
            for row in chunk
        ])  # fmt: skip


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in TABLES:
        if postgresql:
            op.execute(f"ALTER TABLE \"{table}\" ALTER COLUMN erp_hash TYPE bytea USING decode(erp_hash, 'hex')")
            continue
        # Values first: the rebuilt table's copy casts them, and a cast reads hex text as bytes.
        _convert_sqlite(table, to_bytes=True)
        with op.batch_alter_table(table) as batch:
            batch.alter_column("erp_hash", type_=sa.LargeBinary(16), existing_type=sa.String(32))


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in TABLES:
        if postgresql:
            op.execute(f"ALTER TABLE \"{table}\" ALTER COLUMN erp_hash TYPE varchar(32) USING encode(erp_hash, 'hex')")
            continue
        _convert_sqlite(table, to_bytes=False)
        with op.batch_alter_table(table) as batch:
            batch.alter_column("erp_hash", type_=sa.String(32), existing_type=sa.LargeBinary(16))
