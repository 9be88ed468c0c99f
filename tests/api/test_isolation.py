"""Tenant isolation: every route and method, driven from the OpenAPI document.

Alice owns data. Bob, with his own key, tries every route against Alice's ids, once with
his own tenant headers and once with Alice's. He must get 401, 403 or 404, and no response
may ever contain Alice's data.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from arsync.bootstrap import Container
from arsync.mocks.serving import RunningServer
from arsync.nomod import signing
from tests.api.conftest import Tenant, until
from tests.conftest import MockErp
from tests.factories import link_to_erp

BODIES: dict[str, dict[str, Any]] = {
    "/api/v1/customers/{customer_id}": {"name": "Stolen"},
    "/api/v1/invoices/{invoice_id}": {"invoiceNumber": "STOLEN"},
    "/api/v1/customers/{customer_id}/merge": {"debtorCustomerId": "cust_anything"},
}


@pytest.fixture
def alice_data(alice: Tenant, mock_erp: MockErp, container: Container) -> dict[str, str]:
    c = alice.client.post(
        "/api/v1/customers", json={"name": "Alice Secret Customer", "email": "secret@alice.example"}
    ).json()
    inv = alice.client.post(
        "/api/v1/invoices",
        json={
            "customerId": c["id"],
            "invoiceNumber": "ALICE-SECRET-1",
            "issueDate": "2026-01-01",
            "dueDate": "2026-02-01",
            "currency": "ZAR",
            "lines": [{"description": "Secret work", "quantity": 1, "unitPrice": 10}],
        },
    ).json()
    alice.client.post(f"/api/v1/invoices/{inv['id']}/finalize")
    link_to_erp(container.session_factory, c["id"], "DEB-ALICE-SECRET")
    pushed = alice.client.post(f"/api/v1/invoices/{inv['id']}/dispatch").json()["push"]
    cap = alice.client.post(
        "/api/v1/cash-applications", json={"invoiceId": inv["id"], "amount": 5, "date": "2026-01-05", "reference": "r"}
    ).json()
    alice.client.post(f"/api/v1/cash-applications/{cap['id']}/approve")
    payment = alice.client.get("/api/v1/payments").json()["items"][0]
    conn = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url}).json()
    run = alice.client.post(f"/api/v1/connections/{conn['id']}/sync").json()
    until(alice.client, f"/api/v1/sync-runs/{run['id']}", lambda body: body["status"] != "RUNNING")
    key = alice.client.get("/api/v1/api-keys").json()[0]
    nomod = alice.client.put(
        "/api/v1/connections/nomod",
        json={"apiKey": "sk_test_alice_secret", "invoiceSync": {"outbound": False}, "baseUrl": "http://127.0.0.1:9",
              "webhookSecret": signing.new_secret()},
    )  # fmt: skip
    assert nomod.status_code == 200, nomod.text
    endpoint = alice.client.post(
        "/api/v1/notification-endpoints", json={"kind": "webhook", "url": "https://alice.example/hooks/secret"}
    ).json()
    return {
        "tenant_id": alice.tenant_id,
        "environment_id": alice.environment_id,
        "customer_id": c["id"],
        "invoice_id": inv["id"],
        "application_id": cap["id"],
        "payment_id": payment["id"],
        "connection_id": conn["id"],
        "run_id": run["id"],
        "key_id": key["id"],
        "push_id": pushed["id"],
        "endpoint_id": endpoint["id"],
    }


def _routes(server: RunningServer) -> list[tuple[str, str]]:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    return [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if path != "/api/v1/health"
    ]


def test_no_route_leaks_across_tenants(
    api_server: RunningServer, alice: Tenant, bob: Tenant, alice_data: dict[str, str]
):
    secrets = [*alice_data.values(), "Alice Secret Customer", "ALICE-SECRET-1", "secret@alice.example",
               "sk_test_alice_secret"]  # fmt: skip
    routes = _routes(api_server)
    assert len(routes) >= 25
    checked = 0
    for method, template in routes:
        path = re.sub(r"\{(\w+)\}", lambda m: alice_data[m.group(1)], template)
        body = BODIES.get(template, {})
        for headers in (
            bob.headers,
            bob.headers | {"X-Tenant-ID": alice.tenant_id, "X-Environment-ID": alice.environment_id},
        ):
            response = httpx.request(
                method,
                f"{api_server.url}{path}",
                headers=headers,
                json=body if method in {"POST", "PUT", "PATCH"} else None,
            )
            text = response.text
            # Echoing the id Bob sent is no leak; anything else of Alice's is.
            leaked = [s for s in secrets if s in text and s not in path]
            assert not leaked, f"{method} {template} leaked {leaked}: {text[:300]}"
            if "{" in template:
                assert response.status_code in (401, 403, 404), f"{method} {template} -> {response.status_code}"
            else:
                # 409: Bob acting in his own scope on something not set up there (Xero not configured).
                assert response.status_code in (200, 201, 202, 401, 403, 404, 409, 422), (
                    f"{method} {template} -> {response.status_code}"
                )
            checked += 1
    assert checked == 2 * len(routes)

    # Alice's data is untouched by all of that.
    assert alice.client.get(f"/api/v1/customers/{alice_data['customer_id']}").json()["name"] == "Alice Secret Customer"
    assert alice.client.get(f"/api/v1/connections/{alice_data['connection_id']}").status_code == 200
    assert alice.client.get(f"/api/v1/invoices/{alice_data['invoice_id']}").json()["invoiceNumber"] == "ALICE-SECRET-1"
