"""Hostile and careless input against the served API and UI, on SQLite and PostgreSQL: money
that must be positive, bodies too large or too deep, data a column cannot hold, and the
server's own defences (headers, OAuth state, sign-in throttling)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from arsync.mocks.serving import RunningServer
from tests.api.conftest import Tenant, create_ui_user, sign_in


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    return error


def _customer(tenant: Tenant) -> str:
    answer = tenant.client.post("/api/v1/customers", json={"name": "Hardened Ltd"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _invoice(tenant: Tenant, lines: list[dict[str, Any]], currency: str = "USD") -> httpx.Response:
    return tenant.client.post("/api/v1/invoices", json={
        "customerId": _customer(tenant), "invoiceNumber": f"H-{len(lines)}-{id(lines)}", "issueDate": "2026-03-01",
        "dueDate": "2026-03-31", "currency": currency, "lines": lines,
    })  # fmt: skip


def _finalized_invoice(tenant: Tenant, total: str = "150.00") -> dict[str, Any]:
    created = _invoice(tenant, [{"description": "Work", "quantity": 1, "unitPrice": total}])
    assert created.status_code == 201, created.text
    finalized = tenant.client.post(f"/api/v1/invoices/{created.json()['id']}/finalize")
    assert finalized.status_code == 200, finalized.text
    body: dict[str, Any] = finalized.json()
    return body


# 1. Money that must be positive ------------------------------------------------------------


@pytest.mark.parametrize("amount", ["-25.00", "0", -1, "0.0000"])
def test_a_cash_application_must_be_positive(alice: Tenant, amount: Any) -> None:
    invoice = _finalized_invoice(alice)
    answer = alice.client.post("/api/v1/cash-applications", json={
        "invoiceId": invoice["id"], "amount": amount, "date": "2026-03-15", "reference": "EFT",
    })  # fmt: skip
    assert answer.status_code == 422 and _error(answer)["code"] == "VALIDATION_FAILED", answer.text
    assert alice.client.get(f"/api/v1/invoices/{invoice['id']}").json()["amountOutstanding"] == "150.00"
    assert alice.client.get("/api/v1/cash-applications").json()["items"] == []


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"quantity": 0, "unitPrice": "10"}, "quantity"),
        ({"quantity": -1, "unitPrice": "10"}, "quantity"),
        ({"quantity": 1, "unitPrice": "-500.00"}, "unitPrice"),
        ({"quantity": "1000000000000", "unitPrice": "1"}, "quantity"),  # 10^12: beyond the column
        ({"quantity": 1, "unitPrice": "1000000000000"}, "unitPrice"),
        ({"quantity": "999999999999", "unitPrice": "999"}, "lines"),  # the line amount would not fit
        ({"quantity": 1, "unitPrice": "0"}, "lines"),  # an invoice of nothing
    ],
)
def test_invoice_lines_hold_only_what_the_ledger_can(alice: Tenant, line: dict[str, Any], field: str) -> None:
    answer = _invoice(alice, [{"description": "Work"} | line])
    assert answer.status_code == 422, answer.text
    error = _error(answer)
    assert error["code"] == "VALIDATION_FAILED" and field in str(error["details"]), error
    assert alice.client.get("/api/v1/invoices").json()["items"] == []


def test_the_openapi_states_the_real_money_bounds(api_server: RunningServer) -> None:
    document = httpx.get(api_server.url + "/openapi.json").json()
    schemas = document["components"]["schemas"]
    amount = schemas["CashApplicationCreate"]["properties"]["amount"]
    shapes = amount.get("anyOf", [amount])
    number = next(s for s in shapes if s.get("type") == "number")
    assert number["exclusiveMinimum"] == 0 and number["exclusiveMaximum"] == 10**14, amount
    quantity = next(s for s in schemas["LineIn"]["properties"]["quantity"]["anyOf"] if s.get("type") == "number")
    assert quantity["exclusiveMinimum"] == 0 and quantity["exclusiveMaximum"] == 10**12
    price = next(s for s in schemas["LineIn"]["properties"]["unitPrice"]["anyOf"] if s.get("type") == "number")
    assert price["minimum"] == 0 and "exclusiveMinimum" not in price


def test_the_ui_form_refuses_a_negative_cash_application(
    container: Any, api_server: RunningServer, alice: Tenant
) -> None:
    invoice = _finalized_invoice(alice)
    create_ui_user(container, alice, "alice@example.com")
    browser = sign_in(api_server, "alice@example.com")
    answer = browser.client.post("/cash-applications", data={
        "csrf_token": browser.csrf, "invoice": invoice["invoiceNumber"], "amount": "-5", "date": "2026-03-15",
        "reference": "EFT",
    }, follow_redirects=True)  # fmt: skip
    assert "greater than 0" in answer.text
    assert alice.client.get("/api/v1/cash-applications").json()["items"] == []
    assert alice.client.get(f"/api/v1/invoices/{invoice['id']}").json()["amountOutstanding"] == "150.00"
