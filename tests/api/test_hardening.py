"""Hostile and careless input against the served API and UI, on SQLite and PostgreSQL: money
that must be positive, bodies too large or too deep, data a column cannot hold, and the
server's own defences (headers, OAuth state, sign-in throttling)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from arsync.db import transaction
from arsync.mocks.serving import RunningServer
from arsync.tenancy import service as tenancy
from tests.api.conftest import Tenant, create_ui_user, sign_in
from tests.factories import api_customer, api_invoice, invoice_body


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    return error


def _customer(tenant: Tenant) -> str:
    return api_customer(tenant.client, "Hardened Ltd")


def _invoice(tenant: Tenant, lines: list[dict[str, Any]], currency: str = "USD") -> httpx.Response:
    """The raw answer, for the tests that expect a refusal."""
    number = f"H-{len(lines)}-{id(lines)}"
    return tenant.client.post("/api/v1/invoices", json=invoice_body(_customer(tenant), number, currency=currency,
                                                                   lines=lines))  # fmt: skip


def _finalized_invoice(tenant: Tenant, total: str = "150.00") -> dict[str, Any]:
    lines = [{"description": "Work", "quantity": 1, "unitPrice": total}]
    return api_invoice(tenant.client, _customer(tenant), f"H-{total}-{id(lines)}", currency="USD", lines=lines)


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
    assert "above 0" in answer.text
    assert alice.client.get("/api/v1/cash-applications").json()["items"] == []
    assert alice.client.get(f"/api/v1/invoices/{invoice['id']}").json()["amountOutstanding"] == "150.00"


# 3. Request limits -------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_before_authentication(api_server: RunningServer, alice: Tenant) -> None:
    huge = b"{" + b" " * (5 * 1024 * 1024) + b"}"
    anonymous = httpx.post(api_server.url + "/api/v1/customers", content=huge,
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert anonymous.status_code == 413 and _error(anonymous)["code"] == "PAYLOAD_TOO_LARGE"
    assert _error(anonymous)["details"] == {"limitBytes": 4 * 1024 * 1024}

    # Streamed without a Content-Length, it is cut off at the limit just the same.
    def chunks() -> Any:
        for _ in range(6):
            yield b" " * (1024 * 1024)

    streamed = alice.client.post("/api/v1/customers", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and _error(streamed)["code"] == "PAYLOAD_TOO_LARGE"
    assert alice.client.get("/api/v1/customers").json()["items"] == []


def test_a_webhook_body_has_a_smaller_limit(api_server: RunningServer, alice: Tenant) -> None:
    body = b'{"x": "' + b"a" * (300 * 1024) + b'"}'
    path = f"/api/v1/webhooks/nomod/{alice.tenant_id}/{alice.environment_id}"
    answer = httpx.post(api_server.url + path, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and _error(answer)["details"] == {"limitBytes": 256 * 1024}


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"blob": "x" * (17 * 1024)}, "larger than 16384 bytes"),
        ({"n": 2**64}, "does not fit in 64 bits"),
        ({"deep": __import__("functools").reduce(lambda inner, _: {"a": inner}, range(40), {})}, "nested more"),
        ({"name": "bad\x00name"}, "NUL character"),
    ],
)
def test_metadata_a_column_cannot_hold_is_refused_with_a_field_error(
    alice: Tenant, metadata: dict[str, Any], problem: str
) -> None:
    answer = alice.client.post("/api/v1/customers", json={"name": "Meta Ltd", "metadata": metadata})
    assert answer.status_code == 422, answer.text
    error = _error(answer)
    assert error["code"] == "VALIDATION_FAILED" and problem in error["message"] and "metadata" in error["message"]
    # Nothing was stored, and the list still works for the environment.
    listed = alice.client.get("/api/v1/customers")
    assert listed.status_code == 200 and listed.json()["items"] == []


def test_a_lone_surrogate_and_a_nul_are_refused_in_any_text_field(alice: Tenant) -> None:
    surrogate = alice.client.post(
        "/api/v1/customers", content=b'{"name": "Bad \\ud800 Ltd"}', headers={"Content-Type": "application/json"}
    )
    assert surrogate.status_code == 422 and "lone surrogate" in _error(surrogate)["message"]
    nul = alice.client.post("/api/v1/customers", json={"name": "Nul\x00 Ltd"})
    assert nul.status_code == 422 and "name: " in _error(nul)["message"] and "NUL" in _error(nul)["message"]
    query = alice.client.get("/api/v1/invoices", params={"status": "DRAFT\x00"})
    assert query.status_code == 422 and _error(query)["details"]["fieldErrors"][0]["field"] == "status"
    assert alice.client.get("/api/v1/customers").json()["items"] == []


# 9. Input the API accepted but could not store ------------------------------------------


@pytest.mark.parametrize(
    ("secret", "problem"),
    [("whsec_not base64!", "base64"), ("whsec_", "empty key"), ("sk_nope", "whsec_")],
)
def test_a_webhook_secret_that_cannot_verify_anything_is_refused(alice: Tenant, secret: str, problem: str) -> None:
    answer = alice.client.put("/api/v1/connections/nomod", json={
        "apiKey": "sk_test_abcdefgh", "invoiceSync": {"outbound": False}, "webhookSecret": secret,
    })  # fmt: skip
    assert answer.status_code == 422 and problem in _error(answer)["message"], answer.text


@pytest.mark.parametrize("host", ["0177.0.0.1", "0x7f000001", "2130706433", "127.1"])
def test_a_base_url_with_an_ambiguous_numeric_host_is_refused(alice: Tenant, host: str) -> None:
    answer = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": f"http://{host}:8080"})
    assert answer.status_code == 422 and "four decimal numbers" in _error(answer)["message"], answer.text


def test_a_method_not_allowed_says_which_are(alice: Tenant) -> None:
    answer = alice.client.delete("/api/v1/customers")
    assert answer.status_code == 405 and answer.headers["allow"] and "DELETE" not in answer.headers["allow"]


# 10. Security headers and documentation served locally ------------------------------------


def test_every_response_carries_the_security_headers(api_server: RunningServer, alice: Tenant) -> None:
    for answer in (httpx.get(api_server.url + "/login"), alice.client.get("/api/v1/customers"),
                   httpx.get(api_server.url + "/no-such-page")):  # fmt: skip
        assert answer.headers["x-frame-options"] == "DENY", answer.url
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"
        policy = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self';" in policy
        # Connect Xero posts here and is redirected to Xero's sign-in, which Chromium checks
        # against form-action too: nowhere else is allowed.
        assert "form-action 'self' https://login.xero.com;" in policy


def test_the_api_docs_load_nothing_from_elsewhere(api_server: RunningServer) -> None:
    for path in ("/docs", "/redoc"):
        page = httpx.get(api_server.url + path)
        assert page.status_code == 200
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assert assets and all(a.startswith("/") for a in assets), (path, assets)
        for asset in assets:
            assert httpx.get(api_server.url + asset).status_code == 200, asset


@pytest.mark.parametrize("value", ["0", "1700000000", "2026-3-1", "yesterday"])
def test_a_due_date_filter_must_be_a_written_date(alice: Tenant, value: str) -> None:
    answer = alice.client.get("/api/v1/invoices", params={"dueBefore": value})
    assert answer.status_code == 422 and "YYYY-MM-DD" in _error(answer)["message"], answer.text
    assert alice.client.get("/api/v1/invoices", params={"dueBefore": "2026-03-01"}).status_code == 200


def test_the_new_invoice_form_shows_no_customer_of_another_environment(
    container: Any, api_server: RunningServer, alice: Tenant
) -> None:

    with transaction(container.session_factory) as session:
        other = tenancy.create_environment(session, alice.tenant_id, "staging")
        _, key = tenancy.issue_api_key(session, alice.tenant_id, other.id)
    staging = httpx.Client(base_url=api_server.url, headers=tenancy.api_headers(key, alice.tenant_id, other.id))
    secret_name = "Staging-only Customer GmbH"
    customer_id = staging.post("/api/v1/customers", json={"name": secret_name}).json()["id"]
    create_ui_user(container, alice, "alice@example.com")
    browser = sign_in(api_server, "alice@example.com")  # signed in to prod
    page = browser.client.get("/invoices/new", params={"customer_id": customer_id})
    assert page.status_code == 200 and secret_name not in page.text
    staging.close()


@pytest.mark.parametrize("email", ["a@b@c.d", "a@.b.c", "a@b.c.", "a b@c.d", "ab.c"])
def test_an_email_the_nomod_sync_would_refuse_is_refused_when_saved(alice: Tenant, email: str) -> None:
    """'a@b@c.d' used to pass the API and then fail the customer's Nomod sync: one rule now."""
    answer = alice.client.post("/api/v1/customers", json={"name": "Mail Ltd", "email": email})
    assert answer.status_code == 422 and "email" in _error(answer)["message"], answer.text
