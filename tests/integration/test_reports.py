"""Receivables over time, worked back from today, on SQLite and PostgreSQL: each month's figures
are checked against the invoices and payments made for the test, month by month."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.ledger import reports, schemas
from arsync.ledger import service as ledger
from arsync.ledger.models import Invoice
from arsync.tenancy.scope import Scope
from tests.conftest import Scope as TenantScope

TODAY = date(2026, 12, 3)


def _invoice(
    session: Session, scope: Scope, customer_id: str, number: str, issued: date, amount: str, currency: str = "USD"
) -> Invoice:
    invoice = ledger.create_invoice(session, scope, schemas.InvoiceCreate(
        customer_id=customer_id, invoice_number=number, issue_date=issued, due_date=issued + timedelta(days=30),
        currency=currency, lines=[schemas.LineIn(description="Goods", quantity=Decimal(1), unit_price=Decimal(amount))],
    ))  # fmt: skip
    ledger.finalize_invoice(session, scope, invoice.id)
    return invoice


def _paid(session: Session, scope: Scope, invoice_id: str, amount: str, on: date) -> None:
    application = ledger.create_cash_application(session, scope, schemas.CashApplicationCreate(
        invoice_id=invoice_id, amount=Decimal(amount), date=on, reference=f"bank {on}"))  # fmt: skip
    ledger.approve_cash_application(session, scope, application.id)


def test_owed_at_each_months_end_invoiced_collected_and_dso(container: Container, scope: TenantScope) -> None:
    here = Scope(scope.tenant_id, scope.environment_id)
    with transaction(container.session_factory) as session:
        big = ledger.create_customer(session, here, schemas.CustomerCreate(name="Big Buyer")).id
        small = ledger.create_customer(session, here, schemas.CustomerCreate(name="Small Buyer")).id
        september = _invoice(session, here, big, "S-1", date(2026, 9, 15), "1000.00")
        october = _invoice(session, here, small, "O-1", date(2026, 10, 2), "300.00")
        _invoice(session, here, big, "N-1", date(2026, 11, 20), "500.00")
        _invoice(session, here, big, "EUR-1", date(2026, 11, 20), "999.00", currency="EUR")  # another currency
        draft = ledger.create_invoice(session, here, schemas.InvoiceCreate(
            customer_id=big, invoice_number="D-1", issue_date=date(2026, 11, 1), due_date=date(2026, 12, 1),
            currency="USD", lines=[schemas.LineIn(description="Not yet", quantity=Decimal(1), unit_price=Decimal(7))],
        ))  # fmt: skip
        assert draft.status == "DRAFT"  # not invoiced yet, so in no figure
        _paid(session, here, september.id, "400.00", date(2026, 10, 10))
        _paid(session, here, october.id, "300.00", date(2026, 12, 1))

    with container.session_factory() as session:
        months = reports.trend(session, here, "USD", TODAY, months=4)
        dso = reports.days_sales_outstanding(session, here, "USD", TODAY)
        top = reports.top_debtors(session, here, "USD")
    assert [(m.first_day, m.invoiced, m.collected, m.outstanding) for m in months] == [
        (date(2026, 9, 1), Decimal("1000.00"), Decimal(0), Decimal("1000.00")),
        (date(2026, 10, 1), Decimal("300.00"), Decimal("400.00"), Decimal("900.00")),
        (date(2026, 11, 1), Decimal("500.00"), Decimal(0), Decimal("1400.00")),
        (date(2026, 12, 1), Decimal(0), Decimal("300.00"), Decimal("1100.00")),  # today: the ledger's own figure
    ]
    # Owed now 1,100.00; invoiced in the 90 days after 4 September: 1,000.00 + 300.00 + 500.00.
    assert dso == Decimal("55.0")
    assert [(name, owed) for _, name, owed in top] == [("Big Buyer", Decimal("1100.00"))]


def test_nothing_invoiced_lately_has_no_dso(container: Container, scope: TenantScope) -> None:
    here = Scope(scope.tenant_id, scope.environment_id)
    with transaction(container.session_factory) as session:
        customer = ledger.create_customer(session, here, schemas.CustomerCreate(name="Old Debt Ltd")).id
        _invoice(session, here, customer, "OLD-1", date(2025, 1, 5), "80.00")
    with container.session_factory() as session:
        assert reports.days_sales_outstanding(session, here, "USD", TODAY) is None
        months = reports.trend(session, here, "USD", TODAY)
    assert len(months) == 12 and all(m.outstanding == Decimal("80.00") for m in months)
