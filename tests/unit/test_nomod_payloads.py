"""What arsync sends Nomod: only documented fields, amounts equal to the invoice, limits checked first."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from arsync.errors import NomodApiError, NomodError
from arsync.ledger.models import Invoice, InvoiceLine
from arsync.nomod.payloads import customer_payload, invoice_payload, link_payload

DUE = date.today() + timedelta(days=14)


def _invoice(
    total: str, lines: list[tuple[str, str, str]], *, number: str = "AR-1", due: date = DUE
) -> tuple[Invoice, list[InvoiceLine]]:
    invoice = Invoice(id="inv_1", invoice_number=number, currency="KWD", due_date=due,
                      amount_total=Decimal(total), amount_outstanding=Decimal(total))  # fmt: skip
    rows = [
        InvoiceLine(
            invoice_id="inv_1",
            position=n,
            description=f"line {n}",
            quantity=Decimal(q),
            unit_price=Decimal(u),
            amount=Decimal(a),
        )
        for n, (q, u, a) in enumerate(lines)
    ]
    return invoice, rows


def _billed(items: list[dict[str, object]]) -> Decimal:
    return sum((Decimal(str(i["amount"])) * int(str(i["quantity"])) for i in items), Decimal(0))


def test_a_customer_without_phone_or_last_name_sends_neither() -> None:
    assert customer_payload("cust_1", "Cher", "cher@example.com", None) == {
        "first_name": "Cher",
        "email": "cher@example.com",
    }
    payload = customer_payload("cust_1", "Ada Lovelace", "ada@example.com", "+971 50 012-3456")
    assert payload == {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
                       "phone_number": "+971500123456"}  # fmt: skip


def test_a_phone_longer_than_nomod_allows_is_a_clear_error() -> None:
    with pytest.raises(NomodError) as raised:
        customer_payload("cust_9", "Ada", "ada@example.com", "+97150012345678901")
    assert isinstance(raised.value, NomodApiError) and not raised.value.transient
    assert "cust_9: phone_number" in str(raised.value.detail) and "at most 15" in str(raised.value.detail)


def test_lines_that_add_up_go_as_items() -> None:
    invoice, lines = _invoice("4.875", [("3", "1.234", "3.702"), ("0.5", "2.345", "1.173")])
    items = invoice_payload(invoice, lines, "nm_cust", allow_service_fee=False)["items"]
    assert items[0] == {"name": "line 0", "amount": "1.234", "quantity": 3}
    assert _billed(items) == invoice.amount_total


def test_a_tax_exclusive_invoice_is_billed_for_its_total() -> None:
    # Lines 100.000 + tax 5.000: billing the lines alone would leave out the tax.
    invoice, lines = _invoice("105.000", [("2", "50.000", "100.000")])
    payload = invoice_payload(invoice, lines, "nm_cust", allow_service_fee=False)
    assert payload["items"] == [{"name": "Invoice AR-1", "amount": "105.000", "quantity": 1}]


def test_quantities_nomod_does_not_take_become_one_item_of_the_line_amount() -> None:
    invoice, lines = _invoice("1000.000", [("1000", "1.000", "1000.000")])
    (item,) = invoice_payload(invoice, lines, "nm_cust", allow_service_fee=False)["items"]
    assert (item["amount"], item["quantity"]) == ("1000.000", 1)


def test_the_service_fee_setting_is_always_sent() -> None:
    invoice, lines = _invoice("10.000", [("1", "10.000", "10.000")])
    assert invoice_payload(invoice, lines, "c", allow_service_fee=False)["allow_service_fee"] is False
    assert link_payload(invoice, allow_service_fee=True)["allow_service_fee"] is True
    assert link_payload(invoice, allow_service_fee=False)["note"] == "arsync invoice inv_1 for 10.000 KWD"


def test_a_link_asks_for_what_is_outstanding_and_says_so_in_its_note() -> None:
    invoice, _ = _invoice("250.000", [("1", "250.000", "250.000")])
    invoice.amount_outstanding = Decimal("150.000")
    payload = link_payload(invoice, allow_service_fee=False)
    assert payload["items"] == [{"name": "Invoice AR-1", "amount": "150.000", "quantity": 1}]
    assert payload["note"].endswith("for 150.000 KWD")


@pytest.mark.parametrize(
    ("number", "due", "words"),
    [
        ("X" * 31, DUE, "invoice_number"),
        ("AR-1", date.today() - timedelta(days=1), "due before today"),
    ],
)
def test_nomods_invoice_limits_are_checked_before_calling(number: str, due: date, words: str) -> None:
    invoice, lines = _invoice("10.000", [("1", "10.000", "10.000")], number=number, due=due)
    with pytest.raises(NomodError) as raised:
        invoice_payload(invoice, lines, "c", allow_service_fee=False)
    assert words in str(raised.value.detail) and not raised.value.transient
