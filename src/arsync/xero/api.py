"""Xero's Accounting API records, parsed exactly, and their mapping onto the contract's records.

Amounts are parsed from the JSON text straight into ``Decimal`` by pydantic, never through a
float. Xero writes dates as ``/Date(1767225600000+0000)/``; invoices also carry ``DateString``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from arsync.erp import contract

_XERO_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def parse_xero_date(value: str | None) -> date | None:
    """A Xero date in either form: ``/Date(ms+0000)/`` or ``2026-01-31T00:00:00``."""
    if not value:
        return None
    match = _XERO_DATE.match(value)
    if match:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC).date()
    return date.fromisoformat(value[:10])


class XeroModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ContactRef(XeroModel):
    ContactID: str
    Name: str | None = None


class InvoiceRef(XeroModel):
    InvoiceID: str


class LineItem(XeroModel):
    Description: str | None = None
    Quantity: Decimal = Decimal(1)
    UnitAmount: Decimal = Decimal(0)
    LineAmount: Decimal = Decimal(0)


class Contact(XeroModel):
    ContactID: str
    Name: str
    EmailAddress: str | None = None


class Invoice(XeroModel):
    InvoiceID: str
    InvoiceNumber: str | None = None
    Type: str
    Contact: ContactRef
    Date: str | None = None
    DateString: str | None = None
    DueDate: str | None = None
    DueDateString: str | None = None
    Status: str
    CurrencyCode: str
    Total: Decimal
    AmountDue: Decimal
    LineItems: list[LineItem] = Field(default_factory=list)


class Payment(XeroModel):
    PaymentID: str
    Invoice: InvoiceRef
    Amount: Decimal
    Date: str
    Status: str | None = None


class Pagination(XeroModel):
    page: int
    pageCount: int


class ContactsPage(XeroModel):
    Contacts: list[Contact] = Field(default_factory=list)
    pagination: Pagination | None = None


class InvoicesPage(XeroModel):
    Invoices: list[Invoice] = Field(default_factory=list)
    pagination: Pagination | None = None


class PaymentsPage(XeroModel):
    Payments: list[Payment] = Field(default_factory=list)
    pagination: Pagination | None = None


class Tenant(XeroModel):
    tenantId: str
    tenantName: str | None = None
    tenantType: str | None = None


# Onto the contract ------------------------------------------------------------------------------


def debtor(contact: Contact) -> contract.Debtor:
    return contract.Debtor(erp_debtor_id=contact.ContactID, name=contact.Name, email=contact.EmailAddress or None)


def invoice(record: Invoice) -> contract.Invoice:
    issued = parse_xero_date(record.DateString or record.Date)
    if issued is None:
        raise ValueError(f"invoice {record.InvoiceID} has no date")
    due = parse_xero_date(record.DueDateString or record.DueDate) or issued
    return contract.Invoice(
        erp_invoice_id=record.InvoiceID,
        # A draft may have no number yet; its id stands in so the ledger row is still unique.
        invoice_number=record.InvoiceNumber or record.InvoiceID,
        erp_debtor_id=record.Contact.ContactID,
        debtor_name=record.Contact.Name,
        issue_date=issued,
        due_date=due,
        currency=record.CurrencyCode,
        amount_total=record.Total,
        amount_outstanding=record.AmountDue,
        status=record.Status,
        lines=[
            contract.Line(
                description=line.Description or "",
                quantity=line.Quantity,
                unit_price=line.UnitAmount,
                amount=line.LineAmount,
            )
            for line in record.LineItems
        ],
    )


def payment(record: Payment) -> contract.Payment:
    paid_on = parse_xero_date(record.Date)
    assert paid_on is not None
    return contract.Payment(
        erp_payment_id=record.PaymentID,
        erp_invoice_id=record.Invoice.InvoiceID,
        amount=record.Amount,
        payment_date=paid_on,
    )


# From the contract ------------------------------------------------------------------------------


# "Sales" in Xero's standard chart of accounts. Xero refuses AUTHORISED invoice lines without an
# account code ("Account code must be specified").
DEFAULT_SALES_ACCOUNT_CODE = "200"


def invoice_body(
    request: contract.InvoicePushRequest, sales_account_code: str = DEFAULT_SALES_ACCOUNT_CODE
) -> dict[str, Any]:
    """``PUT /Invoices`` body for a dispatched invoice: ACCREC, amounts exactly as the ledger has them."""
    return {
        "Invoices": [
            {
                "Type": "ACCREC",
                "Contact": {"ContactID": request.erp_debtor_id},
                "InvoiceNumber": request.invoice_number,
                "Date": request.issue_date.isoformat(),
                "DueDate": request.due_date.isoformat(),
                "CurrencyCode": request.currency,
                "Status": request.status,
                "LineAmountTypes": "NoTax",
                "LineItems": [
                    {
                        "Description": line.description,
                        "Quantity": line.quantity,
                        "UnitAmount": line.unit_price,
                        "LineAmount": line.amount,
                        "AccountCode": sales_account_code,
                    }
                    for line in request.lines
                ],
            }
        ]
    }


def payment_body(request: contract.PaymentPushRequest) -> dict[str, Any]:
    return {
        "Payments": [
            {
                "Invoice": {"InvoiceID": request.erp_invoice_id},
                "Account": {"Code": request.bank_account_code},
                "Date": request.payment_date.isoformat(),
                "Amount": request.amount,
            }
        ]
    }


def has_more(pagination: Pagination | None, page: int, returned: int, page_size: int) -> bool:
    """Xero reports the page count; older answers without it are full until a short page."""
    if pagination is not None:
        return page < pagination.pageCount
    return returned >= page_size
