"""The contract models: strict versions, exact money, validated dates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from arsync import money
from arsync.erp import contract

INVOICE = {
    "erpInvoiceId": "INV-1001",
    "invoiceNumber": "INV-1001",
    "erpDebtorId": "DEB-001",
    "debtorName": "Acme Ltd",
    "issueDate": "2026-01-15",
    "dueDate": "2026-02-15",
    "currency": "ZAR",
    "amountTotal": 1150,
    "amountOutstanding": 1150,
    "status": "AUTHORISED",
    "lines": [{"description": "Consulting", "quantity": 10, "unitPrice": 100, "amount": 1000}],
}


def page(**invoice_changes: object) -> bytes:
    return json.dumps({"schemaVersion": "1", "invoices": [INVOICE | invoice_changes], "hasMore": False}).encode()


def test_seed_example_parses():
    parsed = contract.InvoicePage.model_validate_json(page())
    assert parsed.invoices[0].amount_total == Decimal("1150")
    assert parsed.invoices[0].lines[0].unit_price == Decimal("100")


def test_json_numbers_become_exact_decimals():
    raw = page(currency="KWD", amountTotal=1150.005, amountOutstanding=0.1)
    assert b'"amountTotal": 1150.005' in raw
    parsed = contract.InvoicePage.model_validate_json(raw)
    assert parsed.invoices[0].amount_total == Decimal("1150.005")
    assert parsed.invoices[0].amount_outstanding == Decimal("0.1")
    assert contract.dumps(parsed).count(b'"amountTotal":1150.005') == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"currency": "ZAR", "amountTotal": 10.005}, "amountTotal"),
        ({"issueDate": "2026-02-30"}, "issueDate"),
        ({"issueDate": "15/01/2026"}, "issueDate"),
        ({"currency": "rand"}, "currency"),
        ({"amountTotal": "NaN"}, "amountTotal"),
        ({"amountTotal": True}, "amountTotal"),
        ({"amountTotal": 1e20}, "amountTotal"),
        ({"erpInvoiceId": ""}, "erpInvoiceId"),
    ],
)
def test_invalid_records_are_rejected_naming_the_field(changes: dict[str, object], field: str):
    with pytest.raises(ValidationError) as caught:
        contract.InvoicePage.model_validate_json(page(**changes))
    assert field in str(caught.value)


def test_schema_version_must_be_one():
    with pytest.raises(ValidationError):
        contract.DebtorPage.model_validate_json(b'{"schemaVersion":"2","debtors":[],"hasMore":false}')
    with pytest.raises(ValidationError):
        contract.DebtorPage.model_validate_json(b'{"debtors":[],"hasMore":false}')


def test_modified_since_is_iso_utc_with_milliseconds():
    request = contract.ListRequest(page=1, limit=10, modified_since=datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC))
    assert json.loads(contract.dumps(request))["modifiedSince"] == "2026-01-01T12:00:00.123Z"
    with pytest.raises(ValidationError):
        contract.ListRequest.model_validate_json(b'{"schemaVersion":"1","modifiedSince":"2026-01-01T00:00:00"}')


def test_error_body_codes():
    body = contract.ErrorBody.model_validate_json(
        b'{"schemaVersion":"1","error":"bad","code":"VALIDATION_FAILED",'
        b'"details":{"fieldErrors":[{"field":"page","message":"must be >= 1"}]}}'
    )
    assert body.details is not None and body.details.field_errors[0].field == "page"
    assert set(contract.HTTP_STATUS_FOR_CODE) == set(contract.ERROR_CODES)
    with pytest.raises(ValidationError):
        contract.ErrorBody.model_validate_json(b'{"schemaVersion":"1","error":"x","code":"NOPE"}')


def test_exported_schema_file_is_current():
    committed = Path(__file__).parents[2] / "schemas" / "nudge-rest-v1.schema.json"
    assert json.loads(committed.read_text()) == contract.json_schema(), "run: arsync contract schema --output " + str(
        committed
    )


@given(
    currency=st.sampled_from(["JPY", "ZAR", "KWD"]),
    digits=st.integers(min_value=0, max_value=10**9),
    places=st.integers(min_value=0, max_value=3),
    zeros=st.integers(min_value=0, max_value=3),
    where=st.sampled_from(["amountTotal", "amountOutstanding", "line"]),
)
def test_an_amount_is_accepted_exactly_when_its_decimals_fit_the_currency(
    currency: str, digits: int, places: int, zeros: int, where: str
):
    """Trailing zeros do not count (JPY takes 100.00); checked as written first, then exactly."""
    written = f"{Decimal(digits).scaleb(-places):f}" + ("0" * zeros if places else ("." + "0" * zeros if zeros else ""))
    amount = Decimal(written)
    placeholder = "AMOUNT"  # replaced by the number as written, so JSON carries its trailing zeros
    if where == "line":
        changes: dict[str, object] = {"lines": [{"description": "x", "quantity": 1, "unitPrice": 1,
                                                 "amount": placeholder}]}  # fmt: skip
    else:
        changes = {where: placeholder}
    record = INVOICE | {"currency": currency} | changes
    body = json.dumps({"schemaVersion": "1", "invoices": [record], "hasMore": False})
    body = body.replace(f'"{placeholder}"', written)
    fits = money.decimal_places(amount) <= money.exponent(currency)
    try:
        contract.InvoicePage.model_validate_json(body.encode())
        accepted = True
    except ValidationError as refused:
        assert "decimals" in str(refused)
        accepted = False
    assert accepted == fits, written
