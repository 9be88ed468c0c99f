"""What arsync sends Nomod: customers, invoices and payment links, checked against Nomod's limits."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from arsync.db import utcnow
from arsync.errors import NomodApiError, NomodError
from arsync.ledger.models import Invoice, InvoiceLine
from arsync.money import exponent, format_amount


def split_name(name: str) -> tuple[str, str | None]:
    """``first_name`` and ``last_name`` for Nomod: the first word, and the rest."""
    first, _, rest = name.strip().partition(" ")
    return first, rest.strip() or None


# Nomod's documented field limits (API reference: create-contact, invoices/create, generate-link).
NAME_MAX = 150
PHONE_MAX = 15
INVOICE_NUMBER_MAX = 30
TITLE_MAX = 50
NOTE_MAX = 280
ITEM_NAME_MAX = 200
QUANTITY_MAX = 999  # "typically 1-999" (flexprice's Nomod client)
_PHONE_PUNCTUATION = str.maketrans("", "", " -.()/")


def _too_long(what: str, record_id: str, field: str, value: str, limit: int) -> NomodError:
    return NomodApiError(
        detail=f"{what} {record_id}: {field} {value!r} has {len(value)} characters; Nomod allows at most {limit}",
    )


def customer_payload(customer_id: str, name: str, email: str, phone: str | None) -> dict[str, Any]:
    """``POST /v1/customers``: only documented fields, and only those with a value (Nomod types them
    as strings; how it treats JSON null is unknown)."""
    first_name, last_name = split_name(name)
    if len(first_name) > NAME_MAX:
        raise _too_long("customer", customer_id, "first_name", first_name, NAME_MAX)
    payload: dict[str, Any] = {"first_name": first_name, "email": email}
    if last_name:
        if len(last_name) > NAME_MAX:
            raise _too_long("customer", customer_id, "last_name", last_name, NAME_MAX)
        payload["last_name"] = last_name
    number = (phone or "").strip().translate(_PHONE_PUNCTUATION)
    if number:
        if len(number) > PHONE_MAX:
            raise _too_long("customer", customer_id, "phone_number", number, PHONE_MAX)
        payload["phone_number"] = number
    return payload


def invoice_payload(
    invoice: Invoice, lines: list[InvoiceLine], nomod_customer_id: str, *, allow_service_fee: bool
) -> dict[str, Any]:
    """``POST /v1/invoices`` for a finalized invoice, checked against Nomod's limits first."""
    if len(invoice.invoice_number) > INVOICE_NUMBER_MAX:
        raise _too_long("invoice", invoice.id, "invoice_number", invoice.invoice_number, INVOICE_NUMBER_MAX)
    today = utcnow().date()
    if invoice.due_date < today:
        # Nomod answers invalid_due_date for a due date before the invoice's start (today).
        raise NomodApiError(
            detail=f"invoice {invoice.id} was due on {invoice.due_date.isoformat()}; Nomod refuses invoices due "
            "before today, so ask for a payment link instead",
        )
    return {
        "customer": nomod_customer_id,
        "currency": invoice.currency,
        "items": _items(invoice, lines),
        "due_date": invoice.due_date.isoformat(),
        "invoice_number": invoice.invoice_number,
        "note": _note(invoice),
        "allow_service_fee": allow_service_fee,
    }


def link_payload(invoice: Invoice, *, allow_service_fee: bool) -> dict[str, Any]:
    """``POST /v1/links`` for what is outstanding on an invoice."""
    title = f"Invoice {invoice.invoice_number}"[:TITLE_MAX]
    amount = format_amount(invoice.amount_outstanding, invoice.currency)
    return {
        "title": title,
        "currency": invoice.currency,
        "items": [{"name": title, "amount": amount, "quantity": 1}],
        # The amount tells this link from an earlier one for the same invoice that asked for more.
        "note": f"{_note(invoice)} for {amount} {invoice.currency}"[:NOTE_MAX],
        "allow_service_fee": allow_service_fee,
    }


def _note(invoice: Invoice) -> str:
    """Names the arsync invoice, so a create whose answer was lost can be found again."""
    return f"arsync invoice {invoice.id}"[:NOTE_MAX]


def object_id(value: Any) -> str | None:
    """An id Nomod writes either bare or as an object with ``id``."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def _items(invoice: Invoice, lines: list[InvoiceLine]) -> list[dict[str, Any]]:
    """Nomod items that add up to the invoice total exactly.

    A line whose quantity is a whole number and whose unit price fits the currency goes as is;
    any other line goes as its (already rounded) amount × 1, so Nomod never rounds anything.
    Credit lines cannot be items, so an invoice with one goes as a single item of its total.
    """
    places = exponent(invoice.currency)
    whole_invoice = [
        {
            "name": f"Invoice {invoice.invoice_number}",
            "amount": format_amount(invoice.amount_total, invoice.currency),
            "quantity": 1,
        }
    ]
    # An invoice whose lines do not add up to its total (tax on top, say) is billed as one item of
    # the total, so Nomod asks for exactly what the invoice says.
    if (
        not lines
        or any(line.amount <= 0 for line in lines)
        or sum(line.amount for line in lines) != invoice.amount_total
    ):
        return whole_invoice
    items = []
    for line in lines:
        whole = line.quantity == line.quantity.to_integral_value() and 1 <= line.quantity <= QUANTITY_MAX
        unit_fits = line.unit_price == line.unit_price.quantize(Decimal(10) ** -places)
        if whole and unit_fits and line.unit_price * line.quantity == line.amount:
            items.append(
                {
                    "name": line.description[:ITEM_NAME_MAX] or f"Invoice {invoice.invoice_number}",
                    "amount": format_amount(line.unit_price.quantize(Decimal(10) ** -places), invoice.currency),
                    "quantity": int(line.quantity),
                }
            )
        else:
            name = f"{line.description[:160]} ({line.quantity.normalize():f} × {line.unit_price.normalize():f})"
            items.append({"name": name, "amount": format_amount(line.amount, invoice.currency), "quantity": 1})
    return items
