"""The mock ERP's generated data is deterministic and contract-valid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from arsync.erp import contract
from arsync.mocks.erp import MAX_FAULT_DELAY_SECONDS, Fault
from arsync.mocks.erp_data import BASE_TIME, MockErpData


def test_records_are_deterministic_and_valid():
    a, b = MockErpData(10, 120, 120, seed=5), MockErpData(10, 120, 120, seed=5)
    assert a.invoice(17) == b.invoice(17)
    assert MockErpData(10, 120, 120, seed=6).invoice(17) != a.invoice(17)
    for entity, model in (
        ("debtors", contract.DebtorPage),
        ("invoices", contract.InvoicePage),
        ("payments", contract.PaymentPage),
    ):
        records, has_more = a.page(entity, 1, 200, None)
        model.model_validate_json(contract.dumps({"schemaVersion": "1", entity: records, "hasMore": has_more}))


def test_edge_cases_are_present():
    data = MockErpData(10, 120, 120)
    listed = {d["erpDebtorId"] for d in data.page("debtors", 1, 100, None)[0]}
    invoices = data.page("invoices", 1, 200, None)[0]
    assert any(i["erpDebtorId"] not in listed for i in invoices)
    known = {i["erpInvoiceId"] for i in invoices}
    assert any(p["erpInvoiceId"] not in known for p in data.page("payments", 1, 200, None)[0])
    assert {i["currency"] for i in invoices} == {"ZAR", "KWD"}


def test_paging_and_modified_since():
    data = MockErpData(10, 25, 0)
    first, more = data.page("invoices", 1, 10, None)
    last, no_more = data.page("invoices", 3, 10, None)
    assert len(first) == 10 and more and len(last) == 5 and not no_more
    assert data.page("invoices", 4, 10, None) == ([], False)
    after = BASE_TIME + timedelta(days=1)
    assert data.page("invoices", 1, 10, after) == ([], False)
    now = datetime.now(UTC)
    data.mutate({"invoices": 3}, now=now)
    changed, _ = data.page("invoices", 1, 10, now - timedelta(seconds=1))
    assert len(changed) == 3
    assert data.page("invoices", 1, 10, now) == ([], False)


def test_a_fault_cannot_hold_a_request_for_ever() -> None:
    assert Fault(endpoint="/invoices/list", delay=MAX_FAULT_DELAY_SECONDS).delay == MAX_FAULT_DELAY_SECONDS
    for field in ("delay", "delay_after"):
        with pytest.raises(ValidationError):
            Fault.model_validate({"endpoint": "/invoices/list", field: 10**9})
