"""Xero's own example answers parse, and map onto the contract as a finance team expects."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import httpx
import orjson
import pytest

from arsync.erp import contract
from arsync.erp.debtors import NAME_TAKEN
from arsync.erp.port import NewDebtor
from arsync.xero import api
from arsync.xero.connector import _xero_message
from tests.fixtures import xero_examples as examples


def test_suppliers_are_not_debtors() -> None:
    page = api.ContactsPage.model_validate_json(orjson.dumps(examples.CONTACTS_PAGE))
    debtors = [api.debtor(c) for c in page.Contacts if api.is_customer(c)]
    assert [d.name for d in debtors] == ["Katherine Warren"]


def test_a_tax_exclusive_invoice_keeps_its_tax_so_lines_add_up() -> None:
    page = api.InvoicesPage.model_validate_json(orjson.dumps(examples.INVOICES_PAGE))
    invoice = api.invoice(page.Invoices[0])
    assert (invoice.amount_total, invoice.amount_outstanding) == (Decimal("115.00"), Decimal("115.00"))
    assert [(line.description, line.amount) for line in invoice.lines] == [
        ("Consulting", Decimal("100.00")),
        (api.TAX_LINE, Decimal("15.00")),
    ]
    assert sum(line.amount for line in invoice.lines) == invoice.amount_total
    assert (invoice.issue_date, invoice.due_date) == (date(2018, 11, 2), date(2018, 11, 7))


def test_the_payment_example_maps_exactly() -> None:
    page = api.PaymentsPage.model_validate_json(orjson.dumps(examples.PAYMENTS_PAGE))
    payment = api.payment(page.Payments[0])
    assert payment == contract.Payment(
        erp_payment_id="6b037c9b-2e5d-4905-84d3-eabfb3438242",
        erp_invoice_id="046d8a6d-1ae1-4b4d-9340-5601bdf41b87",
        amount=Decimal("2.00"),
        payment_date=date(2019, 3, 14),
    )


def test_the_date_offset_is_applied() -> None:
    # 11:00 UTC on 19 October is midnight on 20 October in Auckland (+13:00).
    assert api.parse_xero_date("/Date(1539946800000+1300)/") == date(2018, 10, 20)
    assert api.parse_xero_date("/Date(1539993600000+0000)/") == date(2018, 10, 20)
    assert api.parse_xero_date("/Date(1540008000000-0500)/") == date(2018, 10, 19)
    assert api.parse_xero_date("2018-10-20T00:00:00") == date(2018, 10, 20)


def test_unit_prices_beyond_four_decimals_go_as_one_unit_of_the_line_amount() -> None:
    request = contract.InvoicePushRequest(
        invoice_number="ARS-1", erp_debtor_id="c", issue_date=date(2026, 12, 1), due_date=date(2026, 12, 31),
        currency="USD",
        lines=[contract.Line(description="Fine", quantity=Decimal(3), unit_price=Decimal("12.345"),
                             amount=Decimal("37.04")),
               contract.Line(description="Metered", quantity=Decimal("2.5"), unit_price=Decimal("0.123456"),
                             amount=Decimal("0.31"))],
    )  # fmt: skip
    first, second = api.invoice_body(request)["Invoices"][0]["LineItems"]
    assert (first["Quantity"], first["UnitAmount"], first["LineAmount"]) == (3, Decimal("12.345"), Decimal("37.04"))
    assert (second["Quantity"], second["UnitAmount"], second["LineAmount"]) == (1, Decimal("0.31"), Decimal("0.31"))
    assert "2.5 × 0.123456" in second["Description"]


def test_a_new_contact_is_sent_as_xeros_example_with_the_customer_id_as_its_contact_number() -> None:
    body = api.contact_body(NewDebtor(reference="cust_01J9", name="Foo9987", email="sid32476@blah.com"))
    documented = examples.CONTACTS_CREATE_REQUEST["Contacts"][0]
    assert body["Contacts"][0] == documented | {"ContactNumber": "cust_01J9"}
    assert "EmailAddress" not in api.contact_body(NewDebtor("cust_1", "No Email Ltd", None))["Contacts"][0]
    with pytest.raises(ValueError):
        api.contact_body(NewDebtor('x"==""', "Quote Injection", None))  # it goes into a where filter too
    assert api.contact_number_filter("cust_01J9") == {"where": 'ContactNumber=="cust_01J9"'}


def test_the_created_contact_example_parses_and_is_not_yet_a_customer() -> None:
    page = api.ContactsPage.model_validate_json(orjson.dumps(examples.CONTACTS_CREATED))
    assert [c.ContactID for c in page.Contacts] == ["3ff6d40c-af9a-40a3-89ce-3c1556a25591"]
    # Until its first sales invoice a sync leaves it out; the customer that made it keeps the link.
    assert not api.is_customer(page.Contacts[0])


def test_xeros_duplicate_name_refusal_is_read_in_its_own_words() -> None:
    response = httpx.Response(400, content=orjson.dumps(examples.CONTACT_NAME_TAKEN))
    message = _xero_message(response)
    assert message.startswith("The contact name Buzz Lightyear is already assigned") and NAME_TAKEN in message
