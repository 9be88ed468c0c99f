"""The one place tests build customers and invoices, over the API or through the ledger service."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from arsync.db import transaction
from arsync.ledger import schemas
from arsync.ledger import service as ledger
from arsync.ledger.models import Customer, Invoice
from arsync.tenancy.scope import Scope

ISSUED = date(2026, 3, 1)
DUE = date(2026, 3, 31)
ONE_LINE = [{"description": "Consulting", "quantity": "3", "unitPrice": "250.10"}]


def invoice_body(
    customer_id: str,
    number: str,
    *,
    currency: str = "ZAR",
    lines: list[dict[str, Any]] | None = None,
    issue_date: date = ISSUED,
    due_date: date = DUE,
) -> dict[str, Any]:
    """``POST /api/v1/invoices``'s body."""
    return {
        "customerId": customer_id,
        "invoiceNumber": number,
        "issueDate": issue_date.isoformat(),
        "dueDate": due_date.isoformat(),
        "currency": currency,
        "lines": ONE_LINE if lines is None else lines,
    }


def api_customer(client: httpx.Client, name: str = "Acme Ltd", email: str | None = None) -> str:
    answer = client.post("/api/v1/customers", json={"name": name, "email": email})
    assert answer.status_code == 201, answer.text
    customer_id: str = answer.json()["id"]
    return customer_id


def api_invoice(
    client: httpx.Client, customer_id: str, number: str, *, finalize: bool = True, **body: Any
) -> dict[str, Any]:
    """An invoice created (and by default finalized) over the API; its body as the API last answered."""
    created = client.post("/api/v1/invoices", json=invoice_body(customer_id, number, **body))
    assert created.status_code == 201, created.text
    invoice: dict[str, Any] = created.json()
    if finalize:
        finalized = client.post(f"/api/v1/invoices/{invoice['id']}/finalize")
        assert finalized.status_code == 200, finalized.text
        invoice = finalized.json()
    return invoice


def ledger_invoice(
    session: Session,
    scope: Scope,
    customer_id: str,
    number: str,
    *,
    currency: str = "ZAR",
    description: str = "Work",
    quantity: Decimal = Decimal(1),
    unit_price: Decimal = Decimal(1000),
    finalize: bool = True,
) -> Invoice:
    """An invoice of one line created (and by default finalized) through the ledger service."""
    invoice = ledger.create_invoice(
        session,
        scope,
        schemas.InvoiceCreate(
            customer_id=customer_id,
            invoice_number=number,
            issue_date=ISSUED,
            due_date=DUE,
            currency=currency,
            lines=[schemas.LineIn(description=description, quantity=quantity, unit_price=unit_price)],
        ),
    )
    if finalize:
        ledger.finalize_invoice(session, scope, invoice.id)
    return invoice


def link_to_erp(session_factory: sessionmaker[Session], customer_id: str, erp_debtor_id: str) -> None:
    """Link a customer to an ERP debtor as a sync would have (the API cannot set the ERP's id), so
    its invoices can be dispatched."""
    with transaction(session_factory) as session:
        customer = session.get(Customer, customer_id)
        assert customer is not None
        customer.erp_debtor_id = erp_debtor_id
