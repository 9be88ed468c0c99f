"""Invoice and payment lists on SQLite and PostgreSQL: a page late in a list is read from its end,
and must hold exactly the rows that reading from the start gives, in every sort and direction;
searching by name or number matches what it says and nothing else."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from itertools import product
from typing import Any, get_args

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.ledger import schemas
from arsync.ledger import service as ledger
from arsync.ledger.listing import Direction, InvoiceQuery, InvoiceSort, PaymentQuery, PaymentSort
from arsync.schemas import PageParams
from arsync.tenancy.scope import Scope
from tests.conftest import Scope as TenantScope

ISSUED = date(2026, 10, 1)
LIMIT = 3


def _ledger(session: Session, scope: Scope) -> None:
    """Eleven invoices of three customers, with equal dates and amounts (ties the id must break),
    seven of them part paid, two of those twice on one day."""
    customers = [
        ledger.create_customer(session, scope, schemas.CustomerCreate(name=name)).id
        for name in ("Acme 100% Ltd", "Bravo_Trading", "Acme Holdings")
    ]
    for n in range(11):
        invoice = ledger.create_invoice(session, scope, schemas.InvoiceCreate(
            customer_id=customers[n % 3], invoice_number=f"N-{n % 4}-{n}", issue_date=ISSUED + timedelta(days=n // 3),
            due_date=ISSUED + timedelta(days=30 + n // 4), currency=("USD", "EUR")[n % 2],
            lines=[schemas.LineIn(description="Goods", quantity=Decimal(1), unit_price=Decimal(100 + 10 * (n % 3)))],
        ))  # fmt: skip
        ledger.finalize_invoice(session, scope, invoice.id)
        for part in range(1 + n % 2 if n < 7 else 0):
            application = ledger.create_cash_application(session, scope, schemas.CashApplicationCreate(
                invoice_id=invoice.id, amount=Decimal(5 + part), date=ISSUED + timedelta(days=n // 2),
                reference=f"bank {n}-{part}"))  # fmt: skip
            ledger.approve_cash_application(session, scope, application.id)


def _every_page(session: Session, scope: Scope, lister: Any, query: Any, total: int) -> list[str]:
    ids: list[str] = []
    pages = -(-total // LIMIT)
    for page in range(1, pages + 1):
        rows, more = lister(session, scope, PageParams(page=page, limit=LIMIT), query, total=total)
        assert len(rows) == min(LIMIT, total - LIMIT * (page - 1))
        assert more == (page < pages), (query, page)
        ids += [row.id for row in rows]
    return ids


def _forward(session: Session, scope: Scope, lister: Any, query: Any) -> list[str]:
    ids, page, more = [], 1, True
    while more:
        rows, more = lister(session, scope, PageParams(page=page, limit=LIMIT), query)
        ids += [row.id for row in rows]
        page += 1
    return ids


@pytest.mark.parametrize(
    ("lister", "query_of", "sorts"),
    [
        (ledger.list_invoices, InvoiceQuery, get_args(InvoiceSort)),
        (ledger.list_payments, PaymentQuery, get_args(PaymentSort)),
    ],
    ids=["invoices", "payments"],
)
def test_a_late_page_read_from_the_end_holds_what_reading_from_the_start_gives(
    container: Container, scope: TenantScope, lister: Any, query_of: Any, sorts: tuple[str, ...]
) -> None:
    here = Scope(scope.tenant_id, scope.environment_id)
    with transaction(container.session_factory) as session:
        _ledger(session, here)
    with container.session_factory() as session:
        for sort, direction in product(sorts, get_args(Direction)):
            query = query_of(sort=sort, direction=direction)
            from_the_start = _forward(session, here, lister, query)
            total = query.totals(session, here).count
            assert total == len(from_the_start) == len(set(from_the_start)) > LIMIT * 2
            assert _every_page(session, here, lister, query, total) == from_the_start, (sort, direction)
        filtered = query_of(sort="id", direction="desc", currency="EUR")
        total = filtered.totals(session, here).count
        assert _every_page(session, here, lister, filtered, total) == _forward(session, here, lister, filtered)


def test_searching_matches_names_and_numbers_literally(container: Container, scope: TenantScope) -> None:
    here = Scope(scope.tenant_id, scope.environment_id)
    with transaction(container.session_factory) as session:
        _ledger(session, here)

    def customers_of(search: str) -> set[str]:
        with container.session_factory() as session:
            rows, _ = ledger.list_invoices(session, here, PageParams(page=1, limit=50), InvoiceQuery(search=search))
            return {ledger.get_customer(session, here, row.customer_id).name for row in rows}

    def numbers_of(search: str) -> list[str]:
        with container.session_factory() as session:
            query = InvoiceQuery(search=search, sort="number")
            rows, _ = ledger.list_invoices(session, here, PageParams(page=1, limit=50), query)
            return [row.invoice_number for row in rows]

    assert customers_of("acme") == {"Acme 100% Ltd", "Acme Holdings"}
    assert customers_of("100%") == {"Acme 100% Ltd"}  # % and _ are letters here, not wildcards
    assert customers_of("o_t") == {"Bravo_Trading"}
    assert customers_of("0% l") == {"Acme 100% Ltd"}
    assert customers_of("%") == {"Acme 100% Ltd"}
    assert numbers_of("n-3-") == ["N-3-3", "N-3-7"]
    assert numbers_of("nobody") == []
    with container.session_factory() as session:
        payments, _ = ledger.list_payments(session, here, PageParams(page=1, limit=50), PaymentQuery(search="bravo"))
        paid = {ledger.get_invoice(session, here, p.invoice_id).customer_id for p in payments}
        assert payments and {ledger.get_customer(session, here, c).name for c in paid} == {"Bravo_Trading"}


def test_postgresql_searches_read_trigram_indexes(pg_container: Container) -> None:
    with pg_container.engine.connect() as connection:
        indexes: dict[str, str] = dict(
            connection.execute(
                text("SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE :pattern"),
                {"pattern": "ix_%_trgm"},
            ).all()
        )
    assert set(indexes) == {"ix_customers_name_trgm", "ix_invoices_number_trgm"}
    assert all("gin_trgm_ops" in definition and "lower(" in definition for definition in indexes.values())
