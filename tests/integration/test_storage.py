"""Exact money and UTC datetimes on SQLite and PostgreSQL, through the ORM and the bulk path; read snapshots."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect, make_url, select, text, update
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from arsync import migrate
from arsync.bootstrap import Container
from arsync.db import Base, make_engine, new_id, transaction
from arsync.erp import contract
from arsync.erp.loader import LedgerLoader, bulk_insert, bulk_update, invoices, is_duplicate_key, prepare
from arsync.ledger import reports, schemas
from arsync.ledger import service as ledger
from arsync.ledger.models import Customer, Invoice, InvoiceLine
from arsync.tenancy import service as tenancy
from arsync.tenancy.scope import Scope as TenantScope
from tests.conftest import PG_ADMIN_URL, Scope

VALUES = [
    ("ZAR", Decimal("0.10")),
    ("KWD", Decimal("1150.005")),
    ("USD", Decimal("99999999999.99")),
    ("JPY", Decimal("-5")),
]


def _invoice_row(scope: Scope, customer_id: str, currency: str, amount: Decimal) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "id": new_id("inv"),
        "tenant_id": scope.tenant_id,
        "environment_id": scope.environment_id,
        "customer_id": customer_id,
        "invoice_number": f"N-{currency}",
        "issue_date": date(2026, 1, 15),
        "due_date": date(2026, 2, 15),
        "currency": currency,
        "amount_total": amount,
        "amount_outstanding": amount,
        "status": "DRAFT",
        "erp_status": None,
        "erp_invoice_id": f"E-{currency}",
        "erp_hash": None,
        "created_at": now,
        "updated_at": now,
    }


@pytest.mark.parametrize("path", ["orm", "bulk"])
def test_money_round_trips_exactly(container: Container, scope: Scope, path: str):
    with transaction(container.session_factory) as session:
        customer = Customer(tenant_id=scope.tenant_id, environment_id=scope.environment_id, name="Acme")
        session.add(customer)
        session.flush()
        rows = [_invoice_row(scope, customer.id, currency, amount) for currency, amount in VALUES]
        if path == "orm":
            session.add_all(Invoice(**row) for row in rows)
        else:
            bulk_insert(session, invoices, rows)
    with container.session_factory() as session:
        stored = {i.currency: i for i in session.scalars(select(Invoice))}
    for currency, amount in VALUES:
        assert stored[currency].amount_total == amount
        assert isinstance(stored[currency].amount_total, Decimal)
        assert stored[currency].created_at.tzinfo is not None


def test_a_bulk_update_writes_each_rows_own_values_exactly(container: Container, scope: Scope):
    """Through a staged table and one UPDATE on PostgreSQL, a statement per row on SQLite."""
    with transaction(container.session_factory) as session:
        customer = Customer(tenant_id=scope.tenant_id, environment_id=scope.environment_id, name="Acme")
        session.add(customer)
        session.flush()
        rows = [_invoice_row(scope, customer.id, currency, Decimal(1)) for currency, _ in VALUES]
        bulk_insert(session, invoices, rows)
    later = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    changes = [
        {"id": row["id"], "amount_outstanding": amount, "due_date": date(2027, 1, n + 1), "status": "FINALIZED",
         "updated_at": later}
        for n, (row, (_, amount)) in enumerate(zip(rows, VALUES, strict=True))
    ]  # fmt: skip
    with transaction(container.session_factory) as session:
        bulk_update(session, invoices, changes[:-1])  # the last row is left as it was
        bulk_update(session, invoices, changes[-1:-1])  # nothing to do is fine
    with container.session_factory() as session:
        stored = {i.id: i for i in session.scalars(select(Invoice))}
    for change in changes[:-1]:
        got = stored[str(change["id"])]
        assert (got.amount_outstanding, got.due_date, got.status, got.updated_at, got.amount_total) == (
            change["amount_outstanding"], change["due_date"], "FINALIZED", later, Decimal(1)
        )  # fmt: skip
    untouched = stored[str(changes[-1]["id"])]
    assert (untouched.amount_outstanding, untouched.status) == (Decimal(1), "DRAFT")


def test_too_many_decimals_is_refused_not_rounded(container: Container, scope: Scope):
    with (
        pytest.raises(StatementError, match="more than 4 decimal places"),
        transaction(container.session_factory) as session,
    ):
        customer = Customer(tenant_id=scope.tenant_id, environment_id=scope.environment_id, name="Acme")
        session.add(customer)
        session.flush()
        session.add(Invoice(**_invoice_row(scope, customer.id, "ZAR", Decimal("0.00001"))))
        session.flush()
    with container.session_factory() as session:
        assert session.scalar(select(Customer)) is None, "the failed transaction left nothing behind"


def test_float_money_is_refused(container: Container, scope: Scope):
    with pytest.raises(StatementError, match="must be a Decimal"), transaction(container.session_factory) as session:
        customer = Customer(tenant_id=scope.tenant_id, environment_id=scope.environment_id, name="Acme")
        session.add(customer)
        session.flush()
        session.add(Invoice(**_invoice_row(scope, customer.id, "ZAR", 0.1)))  # type: ignore[arg-type]
        session.flush()


def test_a_read_session_sees_one_snapshot(container: Container):
    """A response or page built from several queries must not mix states from before and after a commit."""
    with transaction(container.session_factory) as session:
        created = tenancy.create_tenant(session, "snap", "prod")
        scope = TenantScope(created.tenant_id, created.environment_id)
        customer = ledger.create_customer(session, scope, schemas.CustomerCreate(name="Before"))
    name_query = select(Customer.name).where(Customer.id == customer.id)
    with container.read_session_factory() as reader:
        assert reader.scalar(name_query) == "Before"
        with transaction(container.session_factory) as writer:
            writer.execute(update(Customer).where(Customer.id == customer.id).values(name="After"))
        assert reader.scalar(name_query) == "Before"
    with container.read_session_factory() as reader:
        assert reader.scalar(name_query) == "After"


def test_write_sessions_stay_atomic_after_read_sessions_share_their_pool(container: Container):
    """Read sessions change a pooled connection's mode; it must be back to normal for the next writer."""
    with transaction(container.session_factory) as session:
        created = tenancy.create_tenant(session, "pool", "prod")
        scope = TenantScope(created.tenant_id, created.environment_id)
        customer = ledger.create_customer(session, scope, schemas.CustomerCreate(name="Kept"))
    for _ in range(3):
        with container.read_session_factory() as reader:
            reader.scalar(select(Customer.name).where(Customer.id == customer.id))
    with pytest.raises(RuntimeError), transaction(container.session_factory) as writer:
        writer.execute(update(Customer).where(Customer.id == customer.id).values(name="Lost"))
        raise RuntimeError("abort after the write")
    with container.read_session_factory() as reader:
        assert reader.scalar(select(Customer.name).where(Customer.id == customer.id)) == "Kept"


def test_the_ledgers_rows_check_their_own_references_but_not_their_scope(container: Container):
    """Migration 0019: the scope is checked once per request or run; what a row's own data
    could break (its customer, its invoice) is still a foreign key, on both databases."""
    with container.engine.connect() as connection:
        found = inspect(connection)
        references = {
            table: sorted(fk["referred_table"] for fk in found.get_foreign_keys(table))
            for table in ("customers", "invoices", "payments", "parked_payments", "invoice_lines", "cash_applications")
        }
    assert references == {
        "customers": [],
        "invoices": ["customers"],
        "payments": ["invoices"],
        "parked_payments": [],
        "invoice_lines": ["invoices"],
        "cash_applications": ["environments", "invoices", "payments", "tenants"],
    }


def test_ids_made_in_one_millisecond_by_several_threads_still_increase():
    """Ordered ids fill primary-key pages; random order inside a millisecond left them half empty."""
    made: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        into.extend(new_id("inv") for _ in range(5000))

    threads = [threading.Thread(target=make, args=(ids,)) for ids in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for ids in made:
        assert ids == sorted(ids)
    every = [identifier for ids in made for identifier in ids]
    assert len(set(every)) == len(every)
    assert all(len(identifier) == len("inv_") + 22 for identifier in every)


def test_sort_indexes_share_one_entry_per_value_on_postgresql(pg_container: Container):
    """Migration 0020: the due-date index no longer ends on the id, so 2,000 invoices due on
    four dates take a few index pages, and a page of the list sorted by due date still reads it.
    (B-tree deduplication is PostgreSQL's.)"""
    container = pg_container
    with transaction(container.session_factory) as session:
        created = tenancy.create_tenant(session, "dedup", "prod")
    scope = Scope(created.tenant_id, created.environment_id, created.api_key)
    with transaction(container.session_factory) as session:
        customer = Customer(tenant_id=scope.tenant_id, environment_id=scope.environment_id, name="Acme")
        session.add(customer)
        session.flush()
        rows = []
        for n in range(2000):
            row = _invoice_row(scope, customer.id, "USD", Decimal("1.00"))
            rows.append(row | {"erp_invoice_id": f"E-{n}", "due_date": date(2026, 2, 1 + n % 4)})
        bulk_insert(session, invoices, rows)
    with container.engine.connect() as connection:
        connection.execute(text("ANALYZE invoices"))
        pages = connection.scalar(text("SELECT pg_relation_size('ix_invoices_scope_due') / 8192"))
        plan = "\n".join(connection.scalars(text(
            "EXPLAIN SELECT * FROM invoices WHERE tenant_id = :t AND environment_id = :e "
            "ORDER BY due_date, id LIMIT 50"
        ), {"t": scope.tenant_id, "e": scope.environment_id}))  # fmt: skip
    assert pages <= 8, f"{pages} pages for four distinct keys"  # ending on the id, it took 47
    assert "ix_invoices_scope_due" in plan and "Incremental Sort" in plan, plan


def test_the_migrations_build_the_schema_the_models_declare(container: Container):
    """What alembic would generate from the models, against the migrated database: nothing,
    apart from the job engine's own tables and the trigram indexes that only migration 0018
    makes (they need a PostgreSQL extension)."""
    migration_only = {"ix_customers_name_trgm", "ix_invoices_number_trgm"}

    def ours(item: object, name: str | None, kind: str, reflected: bool, compare_to: object) -> bool:
        table = getattr(item, "table", item)
        return not str(getattr(table, "name", "")).startswith("procrastinate_") and name not in migration_only

    with container.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": ours})
        assert compare_metadata(context, Base.metadata) == []


def test_an_erp_id_is_unique_per_environment(container: Container, scope: Scope):
    """Migration 0021 keys the ERP ids by environment alone: the tenant follows from it, so the
    same id is still allowed once in each of a tenant's environments and refused twice in one."""
    with transaction(container.session_factory) as session:
        staging = tenancy.create_environment(session, scope.tenant_id, "staging")
    for environment_id in (scope.environment_id, staging.id):
        in_environment = Scope(scope.tenant_id, environment_id, scope.api_key)
        with transaction(container.session_factory) as session:
            customer = Customer(tenant_id=scope.tenant_id, environment_id=environment_id, name="Acme")
            session.add(customer)
            session.flush()
            bulk_insert(session, invoices, [_invoice_row(in_environment, customer.id, "USD", Decimal("5.00"))])
    with pytest.raises(Exception) as refused, transaction(container.session_factory) as session:
        customer = Customer(tenant_id=scope.tenant_id, environment_id=staging.id, name="Again")
        session.add(customer)
        session.flush()
        again = Scope(scope.tenant_id, staging.id, scope.api_key)
        bulk_insert(session, invoices, [_invoice_row(again, customer.id, "USD", Decimal("6.00"))])
    assert is_duplicate_key(refused.value)
    with container.read_session_factory() as reader:
        kept = reader.scalars(select(Invoice.environment_id).where(Invoice.erp_invoice_id == "E-USD")).all()
    assert sorted(kept) == sorted([scope.environment_id, staging.id])


def test_the_aging_report_reads_an_index_of_owed_invoices_alone(pg_container: Container):
    """Migration 0022: paid invoices are not in the aging index, and the report, as arsync sends
    it (values bound, never prepared), is answered from that index without reading the table."""
    container = pg_container
    with transaction(container.session_factory) as session:
        created = tenancy.create_tenant(session, "owed", "prod")
        scope = Scope(created.tenant_id, created.environment_id, created.api_key)
        customer = Customer(tenant_id=scope.tenant_id, environment_id=scope.environment_id, name="Acme")
        session.add(customer)
        session.flush()
        rows = []
        for n in range(3000):
            paid = n % 3 == 0
            row = _invoice_row(scope, customer.id, "USD", Decimal("10.00"))
            rows.append(row | {"erp_invoice_id": f"E-{n}", "status": "PAID" if paid else "FINALIZED",
                               "amount_outstanding": Decimal(0) if paid else Decimal("10.00")})  # fmt: skip
        bulk_insert(session, invoices, rows)
    with container.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE invoices"))  # as autovacuum would: index-only scans need it
    sent: list[tuple[str, object]] = []

    def record(conn: object, cursor: object, statement: str, parameters: object, *_: object) -> None:
        sent.append((statement, parameters))

    event.listen(container.engine, "before_cursor_execute", record)
    try:
        with container.read_session_factory() as session:
            rows_by_currency = reports.aging_by_currency(session, TenantScope(scope.tenant_id, scope.environment_id),
                                                         date(2026, 6, 1))  # fmt: skip
    finally:
        event.remove(container.engine, "before_cursor_execute", record)
    assert [(row.currency, row.invoices, row.total) for row in rows_by_currency] == [("USD", 2000, Decimal("20000.00"))]
    statement, parameters = next((s, p) for s, p in sent if "GROUP BY" in s)
    with container.engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")  # 3,000 rows fit a few pages: ask which index
            plan = "\n".join(row[0] for row in cursor.execute(f"EXPLAIN {statement}", parameters).fetchall())
        entries = connection.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'ix_invoices_scope_owed'"))
    assert "Index Only Scan using ix_invoices_scope_owed" in plan, plan
    assert entries == 2000


def _erp_invoice(outstanding: str, line_amounts: list[str]) -> contract.Invoice:
    return contract.Invoice.model_validate({
        "erpInvoiceId": "INV-7", "invoiceNumber": "INV-7", "erpDebtorId": "DEB-1", "issueDate": date(2026, 1, 5),
        "dueDate": date(2026, 2, 5), "currency": "USD", "amountTotal": Decimal("30.00"),
        "amountOutstanding": Decimal(outstanding), "status": "AUTHORISED",
        "lines": [{"description": f"item {n}", "quantity": 1, "unitPrice": Decimal(amount), "amount": Decimal(amount)}
                  for n, amount in enumerate(line_amounts)],
    })  # fmt: skip


def test_an_invoice_edit_rewrites_its_lines_only_when_they_changed(container: Container, scope: Scope):
    """A payment in the ERP changes what is owed, not the lines: they stay as stored (no
    DELETE), and a changed line replaces the invoice's lines."""
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    def load(invoice: contract.Invoice) -> list[tuple[int, Decimal]]:
        with transaction(container.session_factory) as session:
            loader = LedgerLoader(session, scope.tenant_id, scope.environment_id, datetime.now(UTC))
            loader.load_invoices(prepare("invoices", [invoice]))
        with container.read_session_factory() as reader:
            rows = reader.execute(select(InvoiceLine.position, InvoiceLine.amount).order_by(InvoiceLine.position))
            return [(position, amount) for position, amount in rows]

    assert load(_erp_invoice("30.00", ["10.00", "20.00"])) == [(1, Decimal(10)), (2, Decimal(20))]
    event.listen(container.engine, "before_cursor_execute", record)
    try:
        assert load(_erp_invoice("5.00", ["10.00", "20.00"])) == [(1, Decimal(10)), (2, Decimal(20))]
        assert not [s for s in statements if s.startswith("DELETE FROM invoice_lines")]
        assert load(_erp_invoice("5.00", ["10.00", "15.00", "5.00"])) == [
            (1, Decimal(10)), (2, Decimal(15)), (3, Decimal(5))
        ]  # fmt: skip
    finally:
        event.remove(container.engine, "before_cursor_execute", record)
    with container.read_session_factory() as reader:
        assert reader.scalar(select(Invoice.amount_outstanding)) == Decimal(5)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema yet, for migrating step by step."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'steps.db'}"
        return
    request.getfixturevalue("postgres_url")  # PostgreSQL is there (or the test fails under CI)
    name = f"arsync_steps_{secrets.token_hex(4)}"
    admin = make_engine(PG_ADMIN_URL)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_digests_stored_as_hex_keep_their_value_as_raw_bytes(empty_database: str):
    """Migration 0024 turns each hex digest into its 16 bytes, so the next sync sees no change;
    and back again on downgrade."""
    engine = make_engine(empty_database)
    migrate.upgrade(engine, "0023")
    digest = hashlib.blake2b(b"a record", digest_size=16)
    with engine.begin() as connection:
        created = tenancy.create_tenant(Session(bind=connection), "steps", "prod")
        connection.execute(text(
            "INSERT INTO customers (id, tenant_id, environment_id, name, metadata, status, erp_debtor_id, erp_hash, "
            "created_at, updated_at) VALUES ('cust_1', :t, :e, 'Acme', '{}', 'active', 'DEB-1', :h, :now, :now)"
        ), {"t": created.tenant_id, "e": created.environment_id, "h": digest.hexdigest(),
            "now": datetime.now(UTC)})  # fmt: skip
    migrate.upgrade(engine)
    with engine.connect() as connection:
        assert connection.scalar(select(Customer.erp_hash)) == digest.digest()
    migrate.downgrade(engine, "0023")
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT erp_hash FROM customers")) == digest.hexdigest()
    engine.dispose()
