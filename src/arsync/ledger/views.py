"""Read models that show an invoice or payment with what other features know of it.

An invoice read carries its ERP push and its Nomod state, so this sits above the ledger, the
ERP pushes and Nomod; the API and the UI both read through it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from arsync.erp.models import Push
from arsync.erp.push import pushes_by_invoice, pushes_by_payment
from arsync.erp.schemas import PushRead, push_read
from arsync.ledger import reports, repository, schemas
from arsync.ledger import service as ledger
from arsync.ledger.models import CashApplication, Customer, Invoice, InvoiceStatus, Payment
from arsync.ledger.schemas import LineRead
from arsync.money import format_amount
from arsync.nomod import repository as nomod_repository
from arsync.nomod.schemas import InvoiceNomodRead, invoice_nomod_read
from arsync.schemas import ApiModel


class InvoiceRead(ApiModel):
    id: str
    customer_id: str
    invoice_number: str
    issue_date: date
    due_date: date
    currency: str
    amount_total: str = Field(description="Exact decimal string with the currency's decimals, e.g. 1150.005")
    amount_outstanding: str = Field(description="Exact decimal string with the currency's decimals")
    status: InvoiceStatus
    allowed_actions: list[Literal["finalize", "dispatch", "void", "applyCash"]] = Field(
        description="What the ledger would accept for this invoice now; the UI offers exactly these. Dispatch "
        "needs the customer linked to an ERP debtor"
    )
    erp_status: str | None
    erp_invoice_id: str | None
    erp_deleted_at: datetime | None = Field(description=schemas.ERP_DELETED)
    dispatched_at: datetime | None
    push: PushRead | None = Field(description="The push to the ERP, once the invoice is dispatched")
    nomod: InvoiceNomodRead | None = Field(
        default=None, description="Its Nomod invoice sync and payment URL, once it has been near Nomod"
    )
    lines: list[LineRead]
    created_at: datetime
    updated_at: datetime


class PaymentRead(ApiModel):
    id: str
    invoice_id: str
    currency: str = Field(description="The invoice's currency")
    amount: str = Field(description="Exact decimal string with the currency's decimals")
    payment_date: date
    source: str
    erp_payment_id: str | None
    erp_deleted_at: datetime | None = Field(description=schemas.ERP_DELETED)
    push: PushRead | None = Field(description="The push to the ERP, for payments from approved cash applications")
    created_at: datetime


def customer_read(customer: Customer) -> schemas.CustomerRead:
    values = {field: getattr(customer, column.key) for field, column in repository.CUSTOMER_READ_SOURCE.items()}
    return schemas.CustomerRead(**values | {"metadata": values["metadata"] or {}})


def customer_wire(row: Row[Any]) -> dict[str, Any]:
    """A row of ``repository.CUSTOMER_READ_COLUMNS`` as CustomerRead's JSON object."""
    item = dict(zip(schemas.CUSTOMER_WIRE_KEYS, row, strict=True))
    item["metadata"] = item["metadata"] or {}
    return item


def invoice_reads(session: Session, invoices: list[Invoice]) -> list[InvoiceRead]:
    lines = ledger.invoice_lines(session, [i.id for i in invoices])
    pushes = pushes_by_invoice(session, [i.id for i in invoices if i.dispatched_at is not None])
    nomod = nomod_repository.invoice_states(session, [i.id for i in invoices if i.status != InvoiceStatus.DRAFT])
    in_erp = ledger.customers_in_erp(session, {i.customer_id for i in invoices if i.can_dispatch})
    return [
        InvoiceRead(
            id=i.id,
            customer_id=i.customer_id,
            invoice_number=i.invoice_number,
            issue_date=i.issue_date,
            due_date=i.due_date,
            currency=i.currency,
            amount_total=format_amount(i.amount_total, i.currency),
            amount_outstanding=format_amount(i.amount_outstanding, i.currency),
            status=i.status,
            allowed_actions=[a for a in i.allowed_actions if a != "dispatch" or i.customer_id in in_erp],
            erp_status=i.erp_status,
            erp_invoice_id=i.erp_invoice_id,
            erp_deleted_at=i.erp_deleted_at,
            dispatched_at=i.dispatched_at,
            push=push_read(pushes[i.id]) if i.id in pushes else None,
            nomod=invoice_nomod_read(*nomod[i.id]) if i.id in nomod else None,
            lines=[
                LineRead(
                    description=line.description,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    amount=format_amount(line.amount, i.currency),
                )
                for line in lines[i.id]
            ],
            created_at=i.created_at,
            updated_at=i.updated_at,
        )
        for i in invoices
    ]


def _currencies(session: Session, invoice_ids: set[str]) -> dict[str, str]:
    """Each invoice's currency: payments and cash applications are in their invoice's."""
    if not invoice_ids:
        return {}
    rows = session.execute(select(Invoice.id, Invoice.currency).where(Invoice.id.in_(invoice_ids)))
    return {invoice_id: currency for invoice_id, currency in rows}


def payment_reads(session: Session, payments: list[Payment]) -> list[PaymentRead]:
    pushes = pushes_by_payment(session, [p.id for p in payments if p.source != "erp"])
    currencies = _currencies(session, {p.invoice_id for p in payments})
    return [payment_read(p, currencies[p.invoice_id], pushes.get(p.id)) for p in payments]


def payment_read(payment: Payment, currency: str, push: Push | None) -> PaymentRead:
    return PaymentRead(
        id=payment.id,
        invoice_id=payment.invoice_id,
        currency=currency,
        amount=format_amount(payment.amount, currency),
        payment_date=payment.payment_date,
        source=payment.source,
        erp_payment_id=payment.erp_payment_id,
        erp_deleted_at=payment.erp_deleted_at,
        push=push_read(push) if push else None,
        created_at=payment.created_at,
    )


def cash_application_reads(session: Session, applications: list[CashApplication]) -> list[schemas.CashApplicationRead]:
    currencies = _currencies(session, {a.invoice_id for a in applications})
    return [cash_application_read(a, currencies[a.invoice_id]) for a in applications]


def cash_application_read(application: CashApplication, currency: str) -> schemas.CashApplicationRead:
    currency = application.currency or currency
    credited = application.credited_amount
    return schemas.CashApplicationRead(
        id=application.id,
        invoice_id=application.invoice_id,
        currency=currency,
        amount=format_amount(application.amount, currency),
        credited_amount=format_amount(credited, currency) if credited is not None else None,
        review_reason=application.review_reason,
        date=application.application_date,
        reference=application.reference,
        status=application.status,
        payment_id=application.payment_id,
        created_at=application.created_at,
        approved_at=application.approved_at,
    )


def aging_row_read(row: reports.AgingRow) -> schemas.AgingRowRead:
    buckets = {name: format_amount(amount, row.currency) for name, amount in row.buckets.items()}
    return schemas.AgingRowRead(
        currency=row.currency, customer_id=row.customer_id, customer_name=row.customer_name,
        buckets=buckets,
        total=format_amount(row.total, row.currency), invoices=row.invoices,
    )  # fmt: skip


def aging_read(report: reports.Aging) -> schemas.AgingRead:
    return schemas.AgingRead(
        as_of=report.as_of,
        by_currency=[aging_row_read(row) for row in report.by_currency],
        by_customer=[aging_row_read(row) for row in report.by_customer],
        open_balances=report.open_balances,
        customers_in=report.customers_in,
    )


def customer_balance_read(
    customer_id: str, as_of: date, balances: list[reports.Balance]
) -> schemas.CustomerBalanceRead:
    return schemas.CustomerBalanceRead(
        customer_id=customer_id,
        as_of=as_of,
        balances=[
            schemas.BalanceRead(
                currency=b.currency,
                outstanding=format_amount(b.outstanding, b.currency),
                overdue=format_amount(b.overdue, b.currency),
                credit=format_amount(b.credit, b.currency),
                open_invoices=b.open_invoices,
            )
            for b in balances
        ],
    )
