"""Compares arsync's ledger with the mock ERP's data set."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import orjson

from arsync.bootstrap import Container
from arsync.ledger.export import write_ledger
from arsync.mocks.erp_data import MockErpData


def export_ledger(container: Container, tenant_id: str, environment_id: str) -> dict[str, list[dict[str, Any]]]:
    buffer = io.BytesIO()
    with container.session_factory() as session:
        write_ledger(session, tenant_id, environment_id, buffer)
    parsed: dict[str, list[dict[str, Any]]] = orjson.loads(buffer.getvalue())
    return parsed


def assert_ledger_matches_erp(container: Container, tenant_id: str, environment_id: str, data: MockErpData) -> None:
    """Every ERP record is in the ledger exactly once, with the ERP's values."""
    ledger = export_ledger(container, tenant_id, environment_id)
    stats = data.stats()

    invoices = {row["erpInvoiceId"]: row for row in ledger["invoices"]}
    assert len(invoices) == len(ledger["invoices"]), "duplicate invoices in the ledger"
    expected_invoices = [data.invoice(i) for i in range(stats["invoices"])]
    assert set(invoices) == {e["erpInvoiceId"] for e in expected_invoices}
    for expected in expected_invoices:
        got = invoices[expected["erpInvoiceId"]]
        assert Decimal(got["amountTotal"]) == expected["amountTotal"]
        assert Decimal(got["amountOutstanding"]) == expected["amountOutstanding"]
        assert got["erpStatus"] == expected["status"]
        assert got["currency"] == expected["currency"]
        assert [Decimal(line["amount"]) for line in got["lines"]] == [line["amount"] for line in expected["lines"]]

    customers = {row["erpDebtorId"]: row for row in ledger["customers"]}
    assert len(customers) == len(ledger["customers"]), "duplicate customers in the ledger"
    listed = {data.debtor(i)["erpDebtorId"]: data.debtor(i) for i in range(stats["debtors"])}
    referenced = {e["erpDebtorId"] for e in expected_invoices}
    assert set(customers) == set(listed) | referenced
    for erp_id, debtor in listed.items():
        assert customers[erp_id]["name"] == debtor["name"]

    payments = {row["erpPaymentId"]: row for row in ledger["payments"]}
    assert len(payments) == len(ledger["payments"]), "duplicate payments in the ledger"
    expected_payments = [data.payment(i) for i in range(stats["payments"])]
    matched = [p for p in expected_payments if p["erpInvoiceId"] in invoices]
    assert set(payments) == {p["erpPaymentId"] for p in matched}
    for expected in matched:
        assert Decimal(payments[expected["erpPaymentId"]]["amount"]) == expected["amount"]
