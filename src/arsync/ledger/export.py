"""Streams a (tenant, environment)'s ledger as one JSON object, batch by batch.

The output is ``{"customers": […], "invoices": […], "payments": […]}`` with ERP ids. Rows are
read with server-side batching and written as they come, so memory stays flat however large
the ledger is. Money is written as exact decimal strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import orjson
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from arsync.ledger.models import Customer, Invoice, InvoiceLine, Payment
from arsync.money import format_amount

BATCH = 1000


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def customer_json(c: Any) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "email": c.email,
        "phone": c.phone,
        "externalId": c.external_id,
        "metadata": c.metadata,
        "status": c.status,
        "erpDebtorId": c.erp_debtor_id,
        "createdAt": _iso(c.created_at),
    }


def invoice_json(i: Any, lines: list[Any]) -> dict[str, Any]:
    return {
        "id": i.id,
        "customerId": i.customer_id,
        "invoiceNumber": i.invoice_number,
        "issueDate": _iso(i.issue_date),
        "dueDate": _iso(i.due_date),
        "currency": i.currency,
        "amountTotal": format_amount(i.amount_total, i.currency),
        "amountOutstanding": format_amount(i.amount_outstanding, i.currency),
        "status": i.status,
        "erpStatus": i.erp_status,
        "erpInvoiceId": i.erp_invoice_id,
        "lines": [
            {
                "description": line.description,
                "quantity": format(line.quantity, "f"),
                "unitPrice": format(line.unit_price, "f"),
                "amount": format_amount(line.amount, i.currency),
            }
            for line in lines
        ],
    }


def payment_json(p: Any, currency: str, erp_invoice_id: str | None) -> dict[str, Any]:
    return {
        "id": p.id,
        "invoiceId": p.invoice_id,
        "erpInvoiceId": erp_invoice_id,
        "amount": format_amount(p.amount, currency),
        "currency": currency,
        "paymentDate": _iso(p.payment_date),
        "source": p.source,
        "erpPaymentId": p.erp_payment_id,
    }


def _batches(session: Session, statement: Select[Any]) -> Iterator[list[Any]]:
    """Core rows in batches of ``BATCH``, streamed from the database."""
    result = session.connection().execution_options(yield_per=BATCH).execute(statement)
    for partition in result.partitions():
        yield list(partition)


def iter_customers(session: Session, tenant_id: str, environment_id: str) -> Iterator[dict[str, Any]]:
    table = Customer.__table__
    statement = (
        select(table)
        .where(table.c.tenant_id == tenant_id, table.c.environment_id == environment_id)
        .order_by(table.c.id)
    )
    for batch in _batches(session, statement):
        for customer in batch:
            yield customer_json(customer)


def iter_invoices(session: Session, tenant_id: str, environment_id: str) -> Iterator[dict[str, Any]]:
    table, line_table = Invoice.__table__, InvoiceLine.__table__
    statement = (
        select(table)
        .where(table.c.tenant_id == tenant_id, table.c.environment_id == environment_id)
        .order_by(table.c.id)
    )
    for invoices in _batches(session, statement):
        lines: dict[str, list[Any]] = {}
        for line in session.execute(
            select(line_table)
            .where(line_table.c.invoice_id.in_([i.id for i in invoices]))
            .order_by(line_table.c.invoice_id, line_table.c.position)
        ):
            lines.setdefault(line.invoice_id, []).append(line)
        for invoice in invoices:
            yield invoice_json(invoice, lines.get(invoice.id, []))


def iter_payments(session: Session, tenant_id: str, environment_id: str) -> Iterator[dict[str, Any]]:
    table, invoice_table = Payment.__table__, Invoice.__table__
    statement = (
        select(table, invoice_table.c.currency, invoice_table.c.erp_invoice_id.label("invoice_erp_id"))
        .join(invoice_table, invoice_table.c.id == table.c.invoice_id)
        .where(table.c.tenant_id == tenant_id, table.c.environment_id == environment_id)
        .order_by(table.c.id)
    )
    for batch in _batches(session, statement):
        for payment in batch:
            yield payment_json(payment, payment.currency, payment.invoice_erp_id)


def write_ledger(session: Session, tenant_id: str, environment_id: str, out: IO[bytes]) -> dict[str, int]:
    """Write the ledger JSON to ``out``; returns the number of records per section."""
    sections = {
        "customers": iter_customers(session, tenant_id, environment_id),
        "invoices": iter_invoices(session, tenant_id, environment_id),
        "payments": iter_payments(session, tenant_id, environment_id),
    }
    counts: dict[str, int] = {}
    out.write(b"{")
    for position, (section, records) in enumerate(sections.items()):
        out.write((b"," if position else b"") + f'"{section}":['.encode())
        count = 0
        for record in records:
            out.write((b"," if count else b"") + orjson.dumps(record))
            count += 1
        out.write(b"]")
        counts[section] = count
    out.write(b"}\n")
    return counts
