"""Pushes and "Sync now" through the HTTP API, with the server's own worker running jobs.

On SQLite the jobs run on the in-process runner; on PostgreSQL on the Procrastinate worker
that ``arsync serve`` starts.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from arsync.bootstrap import Container
from arsync.mocks.erp import Fault
from tests.api.conftest import Tenant
from tests.api.conftest import until as _until
from tests.conftest import MockErp
from tests.factories import api_invoice, link_to_erp


def _synced_connection(alice: Tenant, mock_erp: MockErp) -> str:
    connection_id: str = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url}).json()["id"]
    run = alice.client.post(f"/api/v1/connections/{connection_id}/sync").json()
    _until(alice.client, f"/api/v1/sync-runs/{run['id']}", lambda r: r["status"] != "RUNNING")
    return connection_id


def _invoice(alice: Tenant, customer_id: str, number: str) -> dict[str, Any]:
    return api_invoice(alice.client, customer_id, number)


def test_dispatch_and_approval_push_to_the_erp(alice: Tenant, mock_erp: MockErp) -> None:
    _synced_connection(alice, mock_erp)
    linked = alice.client.get("/api/v1/customers", params={"limit": 1, "erpDebtorId": "DEB-000001"}).json()["items"]
    assert linked and linked[0]["erpDebtorId"] == "DEB-000001"
    invoice = _invoice(alice, linked[0]["id"], "AR-API-1")

    dispatched = alice.client.post(f"/api/v1/invoices/{invoice['id']}/dispatch")
    assert dispatched.status_code == 200 and dispatched.json()["push"]["kind"] == "invoice"
    shown = _until(alice.client, f"/api/v1/invoices/{invoice['id']}", lambda i: i["push"]["status"] != "PENDING")
    assert shown["push"]["status"] == "SUCCEEDED" and shown["push"]["attempts"] == 1
    assert shown["erpInvoiceId"] == shown["push"]["erpId"] and shown["erpInvoiceId"].startswith("INV-ERP-")
    assert mock_erp.data.stats()["pushedInvoices"] == 1

    application = alice.client.post(
        "/api/v1/cash-applications",
        json={"invoiceId": invoice["id"], "amount": "100.05", "date": "2026-03-20", "reference": "EFT"},
    ).json()
    payment_id = alice.client.post(f"/api/v1/cash-applications/{application['id']}/approve").json()["paymentId"]
    payment = _until(alice.client, f"/api/v1/payments/{payment_id}", lambda p: p["push"]["status"] != "PENDING")
    assert payment["push"]["status"] == "SUCCEEDED" and payment["erpPaymentId"] == payment["push"]["erpId"]

    listed = alice.client.get("/api/v1/pushes", params={"status": "SUCCEEDED"}).json()
    assert {p["kind"] for p in listed["items"]} == {"invoice", "payment"} and listed["hasMore"] is False
    one = alice.client.get(f"/api/v1/pushes/{listed['items'][0]['id']}").json()
    assert one == listed["items"][0]


def test_a_failed_push_shows_why_and_can_be_retried(alice: Tenant, mock_erp: MockErp, container: Container) -> None:
    _synced_connection(alice, mock_erp)
    gone = alice.client.post("/api/v1/customers", json={"name": "Removed from the ERP"}).json()
    link_to_erp(container.session_factory, gone["id"], "DEB-DELETED-IN-THE-ERP")
    invoice = _invoice(alice, gone["id"], "AR-API-2")
    push_id = alice.client.post(f"/api/v1/invoices/{invoice['id']}/dispatch").json()["push"]["id"]
    failed = _until(alice.client, f"/api/v1/pushes/{push_id}", lambda p: p["status"] != "PENDING")
    assert failed["status"] == "FAILED" and "Unknown debtor" in failed["lastError"]["message"], failed

    retried = alice.client.post(f"/api/v1/pushes/{push_id}/retry")
    assert retried.status_code == 202 and retried.json()["status"] == "PENDING"
    again = _until(alice.client, f"/api/v1/pushes/{push_id}", lambda p: p["status"] != "PENDING")
    assert again["status"] == "FAILED" and again["manualRetries"] == 1 and again["attempts"] == 1

    assert mock_erp.data.stats()["pushedInvoices"] == 0


def test_retrying_a_push_that_is_not_failed_is_a_conflict(alice: Tenant, mock_erp: MockErp) -> None:
    _synced_connection(alice, mock_erp)
    customer = alice.client.get("/api/v1/customers", params={"erpDebtorId": "DEB-000002"}).json()["items"][0]
    invoice = _invoice(alice, customer["id"], "AR-API-3")
    push_id = alice.client.post(f"/api/v1/invoices/{invoice['id']}/dispatch").json()["push"]["id"]
    _until(alice.client, f"/api/v1/pushes/{push_id}", lambda p: p["status"] == "SUCCEEDED")
    conflict = alice.client.post(f"/api/v1/pushes/{push_id}/retry")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "INVALID_STATE"
    assert alice.client.get("/api/v1/pushes", params={"status": "bogus"}).status_code == 422


def test_twenty_concurrent_sync_now_calls_start_exactly_one_run(alice: Tenant, mock_erp: MockErp) -> None:
    connection_id = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url}).json()["id"]
    # The run stays RUNNING long enough for every call to land while it goes, even when twenty
    # SQLite writers queue for the database lock on a loaded machine.
    mock_erp.state.set_faults([Fault(endpoint="/debtors/list", page=1, delay=8, times=1)])

    def sync_now(_: int) -> httpx.Response:
        with httpx.Client(base_url=str(alice.client.base_url), headers=alice.headers, timeout=30) as client:
            return client.post(f"/api/v1/connections/{connection_id}/sync")

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(sync_now, range(20)))
    assert {r.status_code for r in responses} == {202}
    run_ids = {r.json()["id"] for r in responses}
    assert len(run_ids) == 1, run_ids
    (run_id,) = run_ids
    finished = _until(alice.client, f"/api/v1/sync-runs/{run_id}", lambda r: r["status"] != "RUNNING")
    assert finished["status"] == "SUCCEEDED"
    runs = alice.client.get("/api/v1/sync-runs", params={"connectionId": connection_id}).json()["items"]
    assert [r["id"] for r in runs] == [run_id]
