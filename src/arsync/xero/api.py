"""Xero's Accounting API records, parsed exactly, and their mapping onto the contract's records.

Amounts are parsed from the JSON text straight into ``Decimal`` by pydantic, never through a
float. Xero writes dates as ``/Date(1767225600000+0000)/``; invoices also carry ``DateString``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from arsync.erp import contract
from arsync.erp.port import NewDebtor

_XERO_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def parse_xero_date(value: str | None) -> date | None:
    """A Xero date in either form: ``/Date(ms±hhmm)/`` or ``2026-01-31T00:00:00``.

    The milliseconds count from the epoch in UTC and ``±hhmm`` is the organisation's offset, so
    the calendar date is the one at that offset (``/Date(1539950400000+1300)/`` is 20 October
    in Auckland, though 19 October in UTC).
    """
    if not value:
        return None
    match = _XERO_DATE.match(value)
    if match:
        moment = datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
        offset = match.group(2)
        if offset:
            sign = -1 if offset[0] == "-" else 1
            moment += sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
        return moment.date()
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
    # True once the contact has sales (ACCREC) invoices; suppliers have it false
    # (xero_accounting.yaml, components.schemas.Contact.IsCustomer).
    IsCustomer: bool | None = None


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
    LineAmountTypes: str | None = None  # Exclusive | Inclusive | NoTax
    SubTotal: Decimal | None = None
    TotalTax: Decimal | None = None
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


def is_customer(contact: Contact) -> bool:
    """Contacts Xero marks as customers; one that does not say is kept (older answers)."""
    return contact.IsCustomer is not False


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
        lines=_lines(record),
    )


TAX_LINE = "Tax"


def _lines(record: Invoice) -> list[contract.Line]:
    """The invoice's lines; with tax on top of them (``LineAmountTypes`` Exclusive) a last line
    carries ``TotalTax``, so the lines add up to ``Total`` as in Xero."""
    lines = [
        contract.Line(
            description=line.Description or "",
            quantity=line.Quantity,
            unit_price=line.UnitAmount,
            amount=line.LineAmount,
        )
        for line in record.LineItems
    ]
    tax = record.TotalTax or Decimal(0)
    if lines and tax and sum(line.amount for line in lines) + tax == record.Total:
        lines.append(contract.Line(description=TAX_LINE, quantity=Decimal(1), unit_price=tax, amount=tax))
    return lines


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


# With ``?unitdp=4`` Xero keeps four decimals of UnitAmount; without it two, and a LineAmount that
# no longer equals Quantity × UnitAmount is refused (xero_accounting.yaml, parameters.unitdp).
UNIT_DECIMALS = 4
UNITDP = {"unitdp": str(UNIT_DECIMALS)}


def _fits(value: Decimal) -> bool:
    return value == value.quantize(Decimal(10) ** -UNIT_DECIMALS)


def invoice_body(
    request: contract.InvoicePushRequest, sales_account_code: str = DEFAULT_SALES_ACCOUNT_CODE
) -> dict[str, Any]:
    """``PUT /Invoices?unitdp=4`` body for a dispatched invoice: ACCREC, amounts exactly as the ledger has
    them. A line whose quantity or unit price has more than four decimals goes as one unit of its
    amount, its quantity and price kept in the description, so Xero never rounds anything."""
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
                "LineItems": [_line_item(line, sales_account_code) for line in request.lines],
            }
        ]
    }


def _line_item(line: contract.Line, sales_account_code: str) -> dict[str, Any]:
    if _fits(line.quantity) and _fits(line.unit_price):
        quantity, unit, description = line.quantity, line.unit_price, line.description
    else:
        quantity, unit = Decimal(1), line.amount
        description = f"{line.description} ({line.quantity.normalize():f} × {line.unit_price.normalize():f})"
    return {"Description": description, "Quantity": quantity, "UnitAmount": unit, "LineAmount": line.amount,
            "AccountCode": sales_account_code}  # fmt: skip


# ContactNumber "is used to identify contacts in external systems (max length = 50)"
# (xero_accounting.yaml, components.schemas.Contact.ContactNumber): it carries arsync's customer id.
CONTACT_NUMBER_MAX = 50
CONTACT_NAME_MAX = 255  # components.schemas.Contact.Name and EmailAddress: max length 255


def contact_body(debtor: NewDebtor) -> dict[str, Any]:
    """``PUT /Contacts`` body for a customer made in arsync (paths./Contacts.put, requestBody example)."""
    if len(debtor.reference) > CONTACT_NUMBER_MAX or not re.fullmatch(r"[A-Za-z0-9_-]+", debtor.reference):
        raise ValueError(f"{debtor.reference!r} cannot be a Xero ContactNumber")
    contact: dict[str, Any] = {"Name": debtor.name[:CONTACT_NAME_MAX], "ContactNumber": debtor.reference}
    if debtor.email:
        contact["EmailAddress"] = debtor.email
    return {"Contacts": [contact]}


def contact_number_filter(reference: str) -> dict[str, str]:
    """``where`` for the contact arsync made for a customer ("Filter by an any element",
    paths./Contacts.get.parameters.where)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", reference):
        raise ValueError(f"{reference!r} cannot be a Xero ContactNumber")
    return {"where": f'ContactNumber=="{reference}"'}


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
