"""Every route of the platform API, over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
from decimal import Decimal
from typing import Any

import httpx

from arsync.bootstrap import Container
from arsync.mocks.erp import MockErpState, create_mock_erp_app
from arsync.mocks.erp_data import MockErpData
from arsync.mocks.serving import RunningServer, serve_in_thread
from tests.api.conftest import Tenant, until
from tests.conftest import MockErp
from tests.factories import link_to_erp


def customer(tenant: Tenant, **fields: Any) -> dict[str, Any]:
    response = tenant.client.post("/api/v1/customers", json={"name": "Acme Ltd", "email": "ar@acme.example"} | fields)
    assert response.status_code == 201, response.text
    return response.json()


def invoice(tenant: Tenant, customer_id: str, number: str = "AS-1", currency: str = "KWD") -> dict[str, Any]:
    body = {
        "customerId": customer_id,
        "invoiceNumber": number,
        "issueDate": "2026-03-01",
        "dueDate": "2026-03-31",
        "currency": currency,
        "lines": [
            {"description": "Services", "quantity": 2, "unitPrice": "575.0025"},
            {"description": "Setup", "quantity": "1", "unitPrice": 0.1},
        ],
    }
    response = tenant.client.post("/api/v1/invoices", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), body
    return str(body["error"]["code"])


def test_health_and_openapi(api_server: RunningServer):
    assert httpx.get(f"{api_server.url}/api/v1/health").json()["status"] == "ok"
    spec = httpx.get(f"{api_server.url}/openapi.json").json()
    assert "/api/v1/connections/{connection_id}/sync" in spec["paths"]
    assert httpx.get(f"{api_server.url}/docs").status_code == 200


def test_auth_rules(api_server: RunningServer, alice: Tenant, bob: Tenant):
    url = f"{api_server.url}/api/v1/customers"
    missing = httpx.get(url)
    assert missing.status_code == 401 and error_code(missing) == "UNAUTHORIZED"
    wrong = httpx.get(url, headers=alice.headers | {"Authorization": "Bearer ark_nope"})
    assert wrong.status_code == 401
    no_scope = httpx.get(url, headers={"Authorization": f"Bearer {alice.api_key}"})
    assert no_scope.status_code == 401
    crossed = httpx.get(
        url, headers=alice.headers | {"X-Tenant-ID": bob.tenant_id, "X-Environment-ID": bob.environment_id}
    )
    assert crossed.status_code == 403 and error_code(crossed) == "FORBIDDEN"
    other_env = httpx.get(url, headers=alice.headers | {"X-Environment-ID": bob.environment_id})
    assert other_env.status_code == 403


def test_api_keys_issue_list_revoke(api_server: RunningServer, alice: Tenant):
    created = alice.client.post("/api/v1/api-keys")
    assert created.status_code == 201
    new_key = created.json()["apiKey"]
    headers = alice.headers | {"Authorization": f"Bearer {new_key}"}
    assert httpx.get(f"{api_server.url}/api/v1/customers", headers=headers).status_code == 200
    listed = alice.client.get("/api/v1/api-keys").json()
    assert len(listed) == 2 and all("apiKey" not in k and new_key not in str(k) for k in listed)
    revoked = alice.client.post(f"/api/v1/api-keys/{created.json()['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revokedAt"]
    assert httpx.get(f"{api_server.url}/api/v1/customers", headers=headers).status_code == 401


def test_customers(alice: Tenant):
    acme = customer(alice, metadata={"segment": "enterprise"}, externalId="X-1")
    customer(alice, name="Globex", email="billing@globex.example")
    assert acme["id"].startswith("cust_") and acme["metadata"] == {"segment": "enterprise"}

    page = alice.client.get("/api/v1/customers", params={"limit": 1}).json()
    assert len(page["items"]) == 1 and page["hasMore"] is True and page["page"] == 1
    assert [c["name"] for c in alice.client.get("/api/v1/customers", params={"name": "glob"}).json()["items"]] == [
        "Globex"
    ]
    by_email = alice.client.get("/api/v1/customers", params={"email": "AR@acme.example"}).json()["items"]
    assert [c["id"] for c in by_email] == [acme["id"]]

    patched = alice.client.patch(f"/api/v1/customers/{acme['id']}", json={"phone": "+27123456789"}).json()
    assert patched["phone"] == "+27123456789" and patched["name"] == "Acme Ltd"
    assert alice.client.get(f"/api/v1/customers/{acme['id']}").json()["phone"] == "+27123456789"
    # The list writes its items without models: each must be byte for byte what GET returns.
    for listed in alice.client.get("/api/v1/customers").json()["items"]:
        assert listed == alice.client.get(f"/api/v1/customers/{listed['id']}").json()

    bad = alice.client.post("/api/v1/customers", json={"name": "X", "email": "not-an-email"})
    assert bad.status_code == 422 and error_code(bad) == "VALIDATION_FAILED"
    assert bad.json()["error"]["details"]["fieldErrors"][0]["field"] == "email"
    assert "Invalid email format" in bad.json()["error"]["message"]
    typo = alice.client.post("/api/v1/customers", json={"name": "X", "emial": "a@b.example"})
    assert typo.status_code == 422 and "emial" in typo.text

    integrations = alice.client.get(f"/api/v1/customers/{acme['id']}/integrations").json()
    assert integrations == {"customer_id": acme["id"], "integrations": {}}
    assert alice.client.get("/api/v1/customers/cust_missing").status_code == 404


def test_invoice_lifecycle_and_exact_money(alice: Tenant, container: Container):
    owner = customer(alice)
    draft = invoice(alice, owner["id"])
    # 2 × 575.0025 = 1150.005 exactly (KWD has 3 decimals); 1 × 0.1 = 0.100
    assert [line["amount"] for line in draft["lines"]] == ["1150.005", "0.100"]
    assert draft["amountTotal"] == "1150.105" and draft["amountOutstanding"] == "1150.105"
    assert draft["status"] == "DRAFT"

    duplicate = alice.client.post(
        "/api/v1/invoices",
        json={"customerId": owner["id"], "invoiceNumber": "AS-1", "issueDate": "2026-03-01", "dueDate": "2026-03-31",
              "currency": "KWD", "lines": [{"description": "x", "quantity": 1, "unitPrice": 1}]},
    )  # fmt: skip
    assert duplicate.status_code == 409 and error_code(duplicate) == "DUPLICATE_INVOICE_NUMBER"

    big_line = {"description": "Big", "quantity": 1, "unitPrice": "99999999999.99"}
    updated = alice.client.patch(f"/api/v1/invoices/{draft['id']}", json={"lines": [big_line], "currency": "USD"})
    assert updated.status_code == 200 and updated.json()["amountTotal"] == "99999999999.99"

    bad_dates = alice.client.patch(f"/api/v1/invoices/{draft['id']}", json={"dueDate": "2026-01-01"})
    assert bad_dates.status_code == 422 and "dueDate" in bad_dates.json()["error"]["message"]
    assert alice.client.post(f"/api/v1/invoices/{draft['id']}/dispatch").status_code == 409

    finalized = alice.client.post(f"/api/v1/invoices/{draft['id']}/finalize").json()
    assert finalized["status"] == "FINALIZED"
    locked = alice.client.patch(f"/api/v1/invoices/{draft['id']}", json={"invoiceNumber": "AS-9"})
    assert locked.status_code == 409 and error_code(locked) == "INVALID_STATE"
    not_in_erp = alice.client.post(f"/api/v1/invoices/{draft['id']}/dispatch")
    assert not_in_erp.status_code == 409 and error_code(not_in_erp) == "PREREQUISITE_MISSING"
    assert "dispatch" not in finalized["allowedActions"]
    link_to_erp(container.session_factory, owner["id"], "DEB-1")
    assert "dispatch" in alice.client.get(f"/api/v1/invoices/{draft['id']}").json()["allowedActions"]
    dispatched = alice.client.post(f"/api/v1/invoices/{draft['id']}/dispatch").json()
    assert dispatched["dispatchedAt"] is not None
    again = alice.client.post(f"/api/v1/invoices/{draft['id']}/dispatch").json()
    assert again["dispatchedAt"] == dispatched["dispatchedAt"]

    listed = alice.client.get("/api/v1/invoices", params={"status": "FINALIZED", "customerId": owner["id"]}).json()
    assert [i["id"] for i in listed["items"]] == [draft["id"]]
    assert alice.client.get("/api/v1/invoices", params={"dueBefore": "2026-03-30"}).json()["items"] == []
    assert alice.client.get("/api/v1/invoices", params={"status": "NOPE"}).status_code == 422

    other = invoice(alice, owner["id"], number="AS-2")
    voided = alice.client.post(f"/api/v1/invoices/{other['id']}/void").json()
    assert voided["status"] == "VOIDED"
    assert alice.client.post(f"/api/v1/invoices/{other['id']}/finalize").status_code == 409


def test_cash_application_lowers_outstanding_exactly(alice: Tenant):
    owner = customer(alice)
    inv = invoice(alice, owner["id"])
    alice.client.post(f"/api/v1/invoices/{inv['id']}/finalize")
    first = alice.client.post(
        "/api/v1/cash-applications",
        json={"invoiceId": inv["id"], "amount": "1000.005", "date": "2026-03-15", "reference": "EFT 1"},
    ).json()
    assert first["status"] == "PENDING"
    approved = alice.client.post(f"/api/v1/cash-applications/{first['id']}/approve").json()
    assert approved["status"] == "APPROVED" and approved["paymentId"].startswith("pay_")
    assert alice.client.get(f"/api/v1/invoices/{inv['id']}").json()["amountOutstanding"] == "150.100"
    twice = alice.client.post(f"/api/v1/cash-applications/{first['id']}/approve")
    assert twice.status_code == 409 and error_code(twice) == "INVALID_STATE"
    assert alice.client.get(f"/api/v1/invoices/{inv['id']}").json()["amountOutstanding"] == "150.100"

    # More than is outstanding is refused when it is recorded, not only at approval.
    over = alice.client.post(
        "/api/v1/cash-applications",
        json={"invoiceId": inv["id"], "amount": 150.101, "date": "2026-03-16", "reference": "EFT 2"},
    )
    assert over.status_code == 409 and error_code(over) == "OVER_APPLICATION"
    assert "exceeds the outstanding 150.100 KWD" in over.json()["error"]["message"]

    # Two that each fit but not together: the second is refused when recorded, as the first waits.
    def record(amount: str, reference: str) -> httpx.Response:
        body = {"invoiceId": inv["id"], "amount": amount, "date": "2026-03-16", "reference": reference}
        return alice.client.post("/api/v1/cash-applications", json=body)

    first_of_two = record("100", "EFT 2a").json()
    refused = record("100", "EFT 2b")
    assert refused.status_code == 409 and error_code(refused) == "OVER_APPLICATION"
    assert "already waiting for approval" in refused.json()["error"]["message"]
    alice.client.post(f"/api/v1/cash-applications/{first_of_two['id']}/approve")
    assert alice.client.get(f"/api/v1/invoices/{inv['id']}").json()["amountOutstanding"] == "50.100"
    set_aside = record("50", "EFT 2c").json()
    assert alice.client.get(f"/api/v1/cash-applications/{set_aside['id']}").json()["status"] == "PENDING"
    rejected = alice.client.post(f"/api/v1/cash-applications/{set_aside['id']}/reject").json()
    assert rejected["status"] == "REJECTED" and rejected["paymentId"] is None
    again = alice.client.post(f"/api/v1/cash-applications/{set_aside['id']}/approve")
    assert again.status_code == 409 and error_code(again) == "INVALID_STATE"

    rest = alice.client.post(
        "/api/v1/cash-applications",
        json={"invoiceId": inv["id"], "amount": "50.1", "date": "2026-03-17", "reference": "EFT 3"},
    ).json()
    alice.client.post(f"/api/v1/cash-applications/{rest['id']}/approve")
    paid = alice.client.get(f"/api/v1/invoices/{inv['id']}").json()
    assert paid["status"] == "PAID" and Decimal(paid["amountOutstanding"]) == 0

    payments = alice.client.get("/api/v1/payments", params={"invoiceId": inv["id"]}).json()["items"]
    # Amounts carry the invoice currency's decimals, as on the invoice: 150.100, not 150.1.
    assert inv["currency"] == "KWD" and rest["amount"] == "50.100" and rest["currency"] == "KWD"
    assert sorted((p["amount"], p["currency"]) for p in payments) == [
        ("100.000", "KWD"),
        ("1000.005", "KWD"),
        ("50.100", "KWD"),
    ]
    assert all(p["source"] == "cash_application" for p in payments)
    assert alice.client.get(f"/api/v1/payments/{payments[0]['id']}").json()["id"] == payments[0]["id"]
    rejected = alice.client.get("/api/v1/cash-applications", params={"status": "REJECTED"}).json()["items"]
    assert [a["id"] for a in rejected] == [set_aside["id"]]
    assert alice.client.get("/api/v1/cash-applications", params={"status": "PENDING"}).json()["items"] == []
    decimals = alice.client.post(
        "/api/v1/cash-applications",
        json={"invoiceId": inv["id"], "amount": "1.0001", "date": "2026-03-17", "reference": "x"},
    )
    assert decimals.status_code in (409, 422)


def test_connection_sync_and_runs(alice: Tenant, mock_erp: MockErp):
    slash = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url + "/"})
    assert slash.status_code == 422 and "must not end with a slash" in slash.json()["error"]["message"]
    metadata = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": "http://169.254.169.254/latest"})
    assert metadata.status_code == 422 and "169.254.169.254: a link-local" in metadata.json()["error"]["message"]
    assert metadata.json()["error"]["details"]["field"] == "baseUrl"
    assert alice.client.get("/api/v1/connections").json() == []

    saved = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url, "bankAccountCode": "090"})
    assert saved.status_code == 200
    connection = saved.json()
    key = connection["apiKey"]
    assert key.startswith("ask_") and connection["status"] == "ACTIVE" and connection["keyHint"].endswith(key[-4:])
    shown = alice.client.get(f"/api/v1/connections/{connection['id']}").json()
    assert "apiKey" not in shown and key not in str(shown)
    path = f"/api/v1/connections/{connection['id']}"
    assert alice.client.patch(path, json={"bankAccountCode": "091"}).json()["bankAccountCode"] == "091"
    # A sales account code is a fact a REST connection has no use for (409); a blank code is a bad value (422).
    for body, field, status in (
        ({"salesAccountCode": "200"}, "salesAccountCode", 409),
        ({"bankAccountCode": " "}, "bankAccountCode", 422),
    ):
        refused = alice.client.patch(path, json=body)
        assert refused.status_code == status and refused.json()["error"]["details"]["field"] == field
    assert alice.client.patch(path, json={"bankAccountCode": "090"}).json()["bankAccountCode"] == "090"
    resaved = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url}).json()
    assert resaved["id"] == connection["id"] and resaved["apiKey"] is None

    started = alice.client.post(f"/api/v1/connections/{connection['id']}/sync")
    assert started.status_code == 202 and started.json()["id"].startswith("run_")
    run_id = started.json()["id"]
    run = until(alice.client, f"/api/v1/sync-runs/{run_id}", lambda body: body["status"] != "RUNNING")
    assert run["status"] == "SUCCEEDED" and run["counts"]["invoices"]["created"] == 230
    runs = alice.client.get("/api/v1/sync-runs", params={"connectionId": connection["id"]}).json()
    assert [r["id"] for r in runs["items"]] == [run_id]

    mock_erp.data.delete("invoices", [0])
    started = alice.client.post(f"/api/v1/connections/{connection['id']}/reconcile")
    assert started.status_code == 202 and started.json()["kind"] == "reconcile"
    run = until(alice.client, f"/api/v1/sync-runs/{started.json()['id']}", lambda body: body["status"] != "RUNNING")
    assert run["status"] == "SUCCEEDED" and run["full"] is True
    assert run["report"]["entities"]["invoices"]["missingInErp"] == 1 and run["report"]["ledgerEqualsErp"] is True
    ghost = alice.client.get("/api/v1/invoices", params={"q": "INV-0000001"}).json()["items"]
    assert [i["erpDeletedAt"] is not None for i in ghost] == [True]
    mock_erp.data.restore("invoices", [0])

    imported = alice.client.get("/api/v1/invoices", params={"limit": 1}).json()["items"][0]
    assert imported["erpInvoiceId"] is not None
    owned = alice.client.post(f"/api/v1/invoices/{imported['id']}/void")
    assert owned.status_code == 409 and error_code(owned) == "ERP_OWNED"

    rotated = alice.client.post(f"/api/v1/connections/{connection['id']}/rotate-key").json()
    assert rotated["apiKey"] != key and rotated["status"] == "PENDING"
    mock_erp.state.token = rotated["apiKey"]
    assert alice.client.post(f"/api/v1/connections/{connection['id']}/health").json()["status"] == "ACTIVE"
    mock_erp.state.token = key
    failed = alice.client.post(f"/api/v1/connections/{connection['id']}/health").json()
    assert failed["status"] == "FAILED" and "401" in failed["statusReason"]

    assert alice.client.delete(f"/api/v1/connections/{connection['id']}").status_code == 204
    assert alice.client.get(f"/api/v1/connections/{connection['id']}").status_code == 404
    assert alice.client.get("/api/v1/customers").json()["items"], "synced records stay"


def test_error_shapes(api_server: RunningServer, alice: Tenant):
    unknown = alice.client.get("/api/v1/nowhere")
    assert unknown.status_code == 404 and error_code(unknown) == "NOT_FOUND"
    broken = alice.client.post("/api/v1/customers", content=b'{"name": ', headers={"content-type": "application/json"})
    assert broken.status_code == 400 and error_code(broken) == "INVALID_JSON"
    wrong_method = alice.client.delete("/api/v1/customers")
    assert wrong_method.status_code == 405 and error_code(wrong_method) == "METHOD_NOT_ALLOWED"


def test_a_new_address_replaces_a_working_connection_only_once_it_passes_the_health_check(
    alice: Tenant, mock_erp: MockErp
) -> None:
    working = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url}).json()
    assert working["status"] == "ACTIVE"
    with socket.socket() as sock:  # a port that was free a moment ago: nothing answers there
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    typo = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": dead})
    assert typo.status_code == 422 and typo.json()["error"]["details"]["field"] == "baseUrl"
    assert f"the working connection to {mock_erp.url} was kept" in typo.json()["error"]["message"]
    kept = alice.client.get(f"/api/v1/connections/{working['id']}").json()
    assert (kept["baseUrl"], kept["status"]) == (mock_erp.url, "ACTIVE")

    with serve_in_thread(create_mock_erp_app(MockErpState(MockErpData(debtors=2, invoices=2, payments=1)))) as moved:
        answer = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": moved.url})
        assert answer.status_code == 200, answer.text
        assert (answer.json()["baseUrl"], answer.json()["status"]) == (moved.url, "ACTIVE")
