"""Nomod through the HTTP API, against the mock Nomod and the mock ERP over loopback, on SQLite and PostgreSQL.

The server runs its own jobs (the in-process queue on SQLite, its Procrastinate worker on
PostgreSQL), so invoice syncs and pushes happen the way they do in production.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select, text

from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.ledger.models import Customer
from arsync.mocks.nomod import MockNomodState, NomodFault, create_mock_nomod_app
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.nomod import signing
from arsync.nomod.models import EntityIntegrationMapping
from tests.api.conftest import Tenant, create_ui_user, sign_in, until
from tests.conftest import MockErp, clean_container, make_settings
from tests.factories import api_customer, api_invoice

NOMOD_KEY = "sk_test_api_suite"
_until = partial(until, timeout=30)


@pytest.fixture
def container(database_url: str, tmp_path: Path) -> Iterator[Container]:
    """As the shared one, with quick job retries so transient failures play out within a test."""
    settings = make_settings(database_url, tmp_path, push_backoff_seconds=0.05, push_max_attempts=3)
    with clean_container(settings) as app:
        yield app


@pytest.fixture
def nomod() -> Iterator[MockNomodState]:
    state = MockNomodState(api_key=NOMOD_KEY)
    with serve_in_thread(create_mock_nomod_app(state)) as server:
        state.base_url = server.url
        yield state


def _connect(alice: Tenant, nomod: MockNomodState, *, outbound: bool, api_server: RunningServer | None = None) -> None:
    secret = signing.new_secret()
    body = {"apiKey": NOMOD_KEY, "invoiceSync": {"outbound": outbound}, "baseUrl": nomod.base_url,
            "webhookSecret": secret}  # fmt: skip
    response = alice.client.put("/api/v1/connections/nomod", json=body)
    assert response.status_code == 200, response.text
    if api_server is not None:
        nomod.webhook_url = f"{api_server.url}/api/v1/webhooks/nomod/{alice.tenant_id}/{alice.environment_id}"
        nomod.webhook_secret = secret


def _customer_from_the_erp(container: Container, alice: Tenant, name: str, email: str) -> str:
    """A customer whose email the API would refuse, as a sync stores an ERP debtor's as sent."""
    customer_id = _customer(alice, name, None)
    with transaction(container.session_factory) as session:
        row = session.get(Customer, customer_id)
        assert row is not None
        row.email = email
    return customer_id


def _customer(alice: Tenant, name: str = "Ada Lovelace", email: str | None = "ada@example.com") -> str:
    return api_customer(alice.client, name, email)


def _invoice(
    alice: Tenant,
    customer_id: str,
    number: str,
    *,
    currency: str = "ZAR",
    lines: list[dict[str, Any]] | None = None,
    finalize: bool = True,
) -> dict[str, Any]:
    """Issued today and due in 30 days: Nomod refuses invoices due before today."""
    return api_invoice(alice.client, customer_id, number, finalize=finalize, currency=currency, lines=lines,
                       issue_date=date.today(), due_date=date.today() + timedelta(days=30))  # fmt: skip


def _nomod_settled(alice: Tenant, invoice_id: str) -> dict[str, Any]:
    """The invoice once its Nomod sync is SYNCED or FAILED."""
    settled = _until(
        alice.client,
        f"/api/v1/invoices/{invoice_id}",
        lambda i: (i.get("nomod") or {}).get("status") in ("SYNCED", "FAILED"),
    )
    return settled


def _mappings(container: Container) -> int:
    with container.session_factory() as session:
        return session.scalar(select(func.count()).select_from(EntityIntegrationMapping)) or 0


# The connection -----------------------------------------------------------------------------


def test_the_connection_is_saved_masked_and_encrypted(
    container: Container, alice: Tenant, nomod: MockNomodState
) -> None:
    assert alice.client.get("/api/v1/connections/nomod").status_code == 404
    link_local = alice.client.put(
        "/api/v1/connections/nomod",
        json={"apiKey": NOMOD_KEY, "invoiceSync": {"outbound": True}, "baseUrl": "http://169.254.169.254:8080"},
    )
    assert link_local.status_code == 422 and link_local.json()["error"]["details"]["field"] == "baseUrl"
    assert alice.client.get("/api/v1/connections/nomod").status_code == 404
    _connect(alice, nomod, outbound=True)
    shown = alice.client.get("/api/v1/connections/nomod")
    assert shown.status_code == 200
    body = shown.json()
    assert NOMOD_KEY not in shown.text and body["apiKeyHint"].startswith("sk_")
    assert body["invoiceSync"] == {"outbound": True} and body["status"] == "ACTIVE" and body["webhookSecretSet"]
    assert body["webhookPath"] == f"/api/v1/webhooks/nomod/{alice.tenant_id}/{alice.environment_id}"
    with container.engine.connect() as connection:
        stored = connection.execute(text("SELECT api_key_encrypted, webhook_secret_encrypted FROM nomod_connections"))
        row = stored.one()
    assert NOMOD_KEY not in row[0] and "whsec_" not in row[1]

    # baseUrl omitted keeps the current one; outbound can be switched off.
    again = alice.client.put(
        "/api/v1/connections/nomod", json={"apiKey": NOMOD_KEY, "invoiceSync": {"outbound": False}}
    )
    assert again.json()["baseUrl"] == nomod.base_url and again.json()["invoiceSync"] == {"outbound": False}

    for bad, field in (
        ({"apiKey": "pk_test_123456", "invoiceSync": {"outbound": True}}, "apiKey"),
        ({"apiKey": NOMOD_KEY, "invoiceSync": {"outbound": True}, "baseUrl": "ftp://x"}, "baseUrl"),
        ({"apiKey": NOMOD_KEY, "invoiceSync": {"outbound": True}, "webhookSecret": "plain"}, "webhookSecret"),
        ({"apiKey": NOMOD_KEY}, "invoiceSync"),
    ):
        refused = alice.client.put("/api/v1/connections/nomod", json=bad)
        assert refused.status_code == 422, refused.text
        assert field in refused.text and NOMOD_KEY not in refused.text


# Customer sync, as the seed's test plan walks it --------------------------------------------


def test_customer_sync_follows_the_invoice_sync_test_plan(
    container: Container, alice: Tenant, nomod: MockNomodState
) -> None:
    _connect(alice, nomod, outbound=True)
    # Create a customer: nothing is synced yet, and editing it syncs nothing either.
    customer_id = _customer(alice)
    assert alice.client.patch(f"/api/v1/customers/{customer_id}", json={"phone": "+971500000000"}).status_code == 200
    assert nomod.stats()["customers"] == 0
    assert alice.client.get(f"/api/v1/customers/{customer_id}/integrations").json() == {
        "customer_id": customer_id,
        "integrations": {},
    }
    # Finalizing an invoice syncs the customer, then the invoice.
    first = _nomod_settled(alice, _invoice(alice, customer_id, "NM-1")["id"])
    assert first["nomod"]["status"] == "SYNCED", first["nomod"]
    assert nomod.stats()["customers"] == 1 and nomod.stats()["invoices"] == 1
    (nomod_customer,) = nomod.customers.values()
    assert (nomod_customer["first_name"], nomod_customer["last_name"]) == ("Ada", "Lovelace")
    # Only Nomod's documented contact fields, and only those with a value (phone normalised).
    sent = orjson.loads(next(r["body"] for r in nomod.requests if r["path"] == "/v1/customers"))
    assert sent == {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
                    "phone_number": "+971500000000"}  # fmt: skip
    customer = alice.client.get(f"/api/v1/customers/{customer_id}").json()
    assert customer["metadata"]["nomod_customer_id"] == nomod_customer["id"]
    assert customer["metadata"]["nomod_sync_timestamp"]
    nomod_invoice = nomod.invoices[first["nomod"]["nomodInvoiceId"]]
    assert nomod_invoice["customer"]["id"] == nomod_customer["id"] and nomod_invoice["invoice_number"] == "NM-1"
    assert nomod_invoice["service_fee"] == "0"  # allow_service_fee is sent, off by default
    assert first["nomod"]["paymentUrl"] == nomod_invoice["url"]

    # A second invoice uses the existing Nomod customer.
    second = _nomod_settled(alice, _invoice(alice, customer_id, "NM-2")["id"])
    assert second["nomod"]["status"] == "SYNCED"
    assert nomod.stats()["customers"] == 1 and nomod.stats()["invoices"] == 2
    integrations = alice.client.get(f"/api/v1/customers/{customer_id}/integrations").json()
    assert integrations["integrations"]["nomod"]["nomod_customer_id"] == nomod_customer["id"]
    assert {i["invoice_number"] for i in integrations["integrations"]["nomod"]["invoices"]} == {"NM-1", "NM-2"}


def test_with_outbound_off_finalizing_sends_nothing(alice: Tenant, nomod: MockNomodState) -> None:
    _connect(alice, nomod, outbound=False)
    invoice = _invoice(alice, _customer(alice), "OFF-1")
    time.sleep(0.3)
    assert alice.client.get(f"/api/v1/invoices/{invoice['id']}").json()["nomod"] is None
    assert nomod.stats() == {"customers": 0, "invoices": 0, "links": 0, "charges": 0, "webhooksDelivered": 0}


def test_twenty_concurrent_finalizations_make_one_nomod_customer(
    container: Container, alice: Tenant, nomod: MockNomodState
) -> None:
    _connect(alice, nomod, outbound=True)
    nomod.faults = [NomodFault(path="/v1/customers", delay=0.3, times=1)]  # widen the race
    customer_id = _customer(alice)
    drafts = [_invoice(alice, customer_id, f"RACE-{n:02d}", finalize=False) for n in range(20)]
    with ThreadPoolExecutor(20) as pool:
        statuses = list(
            pool.map(lambda i: alice.client.post(f"/api/v1/invoices/{i['id']}/finalize").status_code, drafts)
        )
    assert statuses == [200] * 20
    settled = [_nomod_settled(alice, draft["id"]) for draft in drafts]
    assert {s["nomod"]["status"] for s in settled} == {"SYNCED"}
    assert nomod.stats()["customers"] == 1
    assert nomod.stats()["invoices"] == 20
    assert len({n["customer"]["id"] for n in nomod.invoices.values()}) == 1
    assert _mappings(container) == 21  # one customer, twenty invoices


# Payment links --------------------------------------------------------------------------------


def test_payment_link_reuses_the_nomod_invoice_or_creates_one_link(alice: Tenant, nomod: MockNomodState) -> None:
    _connect(alice, nomod, outbound=False)
    customer_id = _customer(alice)
    draft = _invoice(alice, customer_id, "PL-0", finalize=False)
    refused = alice.client.post(f"/api/v1/invoices/{draft['id']}/payment-link")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "INVALID_STATE"
    assert alice.client.post("/api/v1/invoices/inv_missing/payment-link").status_code == 404

    invoice = _invoice(alice, customer_id, "PL-1")
    first = alice.client.post(f"/api/v1/invoices/{invoice['id']}/payment-link")
    assert first.status_code == 200, first.text
    link = first.json()
    assert link["kind"] == "link" and link["url"] == nomod.links[link["nomodId"]]["url"]
    assert nomod.links[link["nomodId"]]["amount"] == "750.30"
    assert nomod.stats()["customers"] == 1  # a payment link syncs the customer too
    again = alice.client.post(f"/api/v1/invoices/{invoice['id']}/payment-link").json()
    assert again == link and nomod.stats()["links"] == 1
    stored = alice.client.get(f"/api/v1/invoices/{invoice['id']}").json()["nomod"]
    assert stored["paymentUrl"] == link["url"] and stored["nomodLinkId"] == link["nomodId"]

    # With outbound on, the link of a synced invoice is the Nomod invoice's own page.
    alice.client.put("/api/v1/connections/nomod", json={"apiKey": NOMOD_KEY, "invoiceSync": {"outbound": True}})
    synced = _nomod_settled(alice, _invoice(alice, customer_id, "PL-2")["id"])
    page = alice.client.post(f"/api/v1/invoices/{synced['id']}/payment-link").json()
    assert page["kind"] == "invoice" and page["url"] == synced["nomod"]["paymentUrl"]
    assert nomod.stats()["links"] == 1


# Errors: each stable message, with its code, where it is shown, and whether it is retried ------


def _payment_link_error(alice: Tenant, customer_id: str, number: str) -> tuple[int, dict[str, Any]]:
    invoice = _invoice(alice, customer_id, number)
    response = alice.client.post(f"/api/v1/invoices/{invoice['id']}/payment-link")
    error: dict[str, Any] = response.json()["error"]
    return response.status_code, error


def test_each_customer_error_is_returned_and_shown_on_the_customer(
    container: Container, alice: Tenant, nomod: MockNomodState
) -> None:
    _connect(alice, nomod, outbound=False)
    nomod.create_customer({"first_name": "Someone", "email": "taken@example.com"})
    cases = [
        ("No Email Ltd", None, 422, "NOMOD_MISSING_FIELDS", "Missing required fields"),
        ("Bad Email Ltd", "ann@corp@example.com", 422, "NOMOD_INVALID_EMAIL", "Invalid email format"),
        ("Taken Ltd", "taken@example.com", 409, "NOMOD_EMAIL_EXISTS", "Email already exists"),
    ]
    customer_ids = []
    for n, (name, email, status, code, message) in enumerate(cases):
        if email is not None and "@corp@" in email:
            customer_id = _customer_from_the_erp(container, alice, name, email)
        else:
            customer_id = _customer(alice, name, email)
        customer_ids.append(customer_id)
        got_status, error = _payment_link_error(alice, customer_id, f"ERR-{n}")
        assert (got_status, error["code"], error["message"]) == (status, code, message)
        shown = alice.client.get(f"/api/v1/customers/{customer_id}/integrations").json()["integrations"]["nomod"]
        assert shown["nomod_customer_id"] is None and shown["status"] == "FAILED"
        assert (shown["error"]["code"], shown["error"]["message"]) == (code, message)
    # Validation failures never reached Nomod; the duplicate did, and Nomod refused it.
    created = [r for r in nomod.requests if r["path"] == "/v1/customers" and r["method"] == "POST"]
    assert len(created) == 1 and "taken@example.com" in created[0]["body"]
    assert _mappings(container) == 0 and nomod.stats()["links"] == 0

    # Fixing the email and asking again works, and clears the error.
    bad_email_id = customer_ids[1]
    assert alice.client.patch(f"/api/v1/customers/{bad_email_id}", json={"email": "ann@example.com"}).is_success
    fixed = alice.client.post(f"/api/v1/invoices/{_find_invoice(alice, 'ERR-1')}/payment-link")
    assert fixed.status_code == 200, fixed.text
    shown = alice.client.get(f"/api/v1/customers/{bad_email_id}/integrations").json()["integrations"]["nomod"]
    assert shown["status"] == "SYNCED" and shown["error"] is None and shown["nomod_customer_id"]


def test_invoice_sync_errors_are_shown_on_the_invoice_and_only_transient_ones_retried(
    container: Container, api_server: RunningServer, alice: Tenant, nomod: MockNomodState
) -> None:
    _connect(alice, nomod, outbound=True)
    # Permanent: the customer's email is refused; one attempt, then FAILED with the message.
    bad_id = _customer_from_the_erp(container, alice, "Bad Email Ltd", "ann@corp@example.com")
    failed = _nomod_settled(alice, _invoice(alice, bad_id, "SYNC-ERR-1")["id"])["nomod"]
    assert (failed["status"], failed["attempts"]) == ("FAILED", 1)
    assert (failed["error"]["code"], failed["error"]["message"]) == ("NOMOD_INVALID_EMAIL", "Invalid email format")

    # "Customer not found": Nomod no longer has the mapped customer.
    gone_id = _customer(alice, "Gone Ltd", "gone@example.com")
    assert _nomod_settled(alice, _invoice(alice, gone_id, "SYNC-OK-1")["id"])["nomod"]["status"] == "SYNCED"
    nomod.customers.clear()
    lost = _nomod_settled(alice, _invoice(alice, gone_id, "SYNC-ERR-2")["id"])["nomod"]
    assert (lost["status"], lost["attempts"], lost["error"]["code"]) == ("FAILED", 1, "NOMOD_CUSTOMER_NOT_FOUND")
    assert lost["error"]["message"] == "Customer not found"

    # Transient: Nomod answers 503 to every try; the job retries, then gives up with the message.
    nomod.faults = [NomodFault(path="/v1/invoices", status=503)]
    ok_id = _customer(alice, "Patient Ltd", "patient@example.com")
    waiting_id = _invoice(alice, ok_id, "SYNC-ERR-3")["id"]
    retried = _nomod_settled(alice, waiting_id)["nomod"]
    assert (retried["status"], retried["attempts"]) == ("FAILED", 3)  # push_max_attempts in this suite
    assert (retried["error"]["code"], retried["error"]["message"]) == ("NOMOD_API_ERROR", "Nomod API error")
    assert retried["error"]["httpStatus"] == 503
    # The web page also says what Nomod answered, beyond the stable message.
    create_ui_user(container, alice, "alice@example.com")
    browser = sign_in(api_server, "alice@example.com")
    page = browser.client.get(f"/invoices/{waiting_id}").text
    browser.client.close()
    assert "Nomod API error (HTTP 503, NOMOD_API_ERROR)." in page and retried["error"]["detail"] in page
    # A 503 on a create may follow a commit: the create was sent once, and each later try looked
    # for it in Nomod's list first (also 503 here) instead of creating it blindly again.
    assert retried["error"]["detail"].startswith("GET /v1/invoices: HTTP 503") and retried["error"]["uncertain"]
    posts = [r for r in nomod.requests if r["method"] == "POST" and "SYNC-ERR-3" in r["body"]]
    assert len(posts) == 1
    # After the outage, a manual retry sends it.
    nomod.faults = []
    invoice_id = _find_invoice(alice, "SYNC-ERR-3")
    assert alice.client.post(f"/api/v1/invoices/{invoice_id}/nomod-sync").status_code == 202
    assert _nomod_settled(alice, invoice_id)["nomod"]["status"] == "SYNCED"
    again = alice.client.post(f"/api/v1/invoices/{invoice_id}/nomod-sync")
    assert again.status_code == 409 and again.json()["error"]["code"] == "INVALID_STATE"


def _nomod_customer_id(alice: Tenant, customer_id: str) -> str | None:
    integrations = alice.client.get(f"/api/v1/customers/{customer_id}/integrations").json()["integrations"]
    return integrations["nomod"]["nomod_customer_id"] if "nomod" in integrations else None


def test_a_customer_deleted_in_nomod_can_be_unlinked_and_synced_again(
    container: Container, api_server: RunningServer, alice: Tenant, nomod: MockNomodState
) -> None:
    _connect(alice, nomod, outbound=True)
    by_api, by_page = _customer(alice, "Gone Ltd", "gone@example.com"), _customer(alice, "Left Ltd", "left@example.com")
    stuck = {}
    for customer_id, number in ((by_api, "GONE"), (by_page, "LEFT")):
        assert _nomod_settled(alice, _invoice(alice, customer_id, f"{number}-1")["id"])["nomod"]["status"] == "SYNCED"
    old_ids = {_nomod_customer_id(alice, by_api), _nomod_customer_id(alice, by_page)}
    nomod.customers.clear()  # deleted in Nomod
    for customer_id, number in ((by_api, "GONE"), (by_page, "LEFT")):
        stuck[customer_id] = _invoice(alice, customer_id, f"{number}-2")["id"]
        assert _nomod_settled(alice, stuck[customer_id])["nomod"]["error"]["code"] == "NOMOD_CUSTOMER_NOT_FOUND"

    unlinked = alice.client.delete(f"/api/v1/customers/{by_api}/integrations/nomod")
    assert unlinked.status_code == 200 and unlinked.json() == {"customer_id": by_api, "integrations": {}}
    again = alice.client.delete(f"/api/v1/customers/{by_api}/integrations/nomod")
    assert again.status_code == 409 and again.json()["error"]["code"] == "INVALID_STATE"
    assert "nomod_customer_id" not in alice.client.get(f"/api/v1/customers/{by_api}").json()["metadata"]

    create_ui_user(container, alice, "alice@example.com")
    browser = sign_in(api_server, "alice@example.com")
    assert "Unlink from Nomod" in browser.client.get(f"/customers/{by_page}").text
    done = browser.client.post(
        f"/customers/{by_page}/nomod-unlink", data={"csrf_token": browser.csrf}, follow_redirects=True
    )
    browser.client.close()
    assert "Unlinked from Nomod." in done.text and "Unlink from Nomod" not in done.text
    assert _nomod_customer_id(alice, by_page) is None

    # Sent again, each stuck invoice makes a new Nomod customer and goes through.
    for customer_id in (by_api, by_page):
        assert alice.client.post(f"/api/v1/invoices/{stuck[customer_id]}/nomod-sync").status_code == 202
        assert _nomod_settled(alice, stuck[customer_id])["nomod"]["status"] == "SYNCED"
    new_ids = {_nomod_customer_id(alice, by_api), _nomod_customer_id(alice, by_page)}
    assert None not in new_ids and not new_ids & old_ids and set(nomod.customers) == new_ids


def _find_invoice(alice: Tenant, number: str) -> str:
    items = alice.client.get("/api/v1/invoices", params={"limit": 500}).json()["items"]
    (invoice_id,) = [i["id"] for i in items if i["invoiceNumber"] == number]
    return str(invoice_id)


def test_a_rejected_key_is_a_nomod_api_error_and_fails_the_connection(alice: Tenant, nomod: MockNomodState) -> None:
    _connect(alice, nomod, outbound=False)
    nomod.api_key = "sk_test_rotated_elsewhere"
    status, error = _payment_link_error(alice, _customer(alice), "KEY-1")
    assert (status, error["code"], error["message"]) == (502, "NOMOD_API_ERROR", "Nomod API error")
    assert NOMOD_KEY not in str(error)
    connection = alice.client.get("/api/v1/connections/nomod").json()
    assert connection["status"] == "FAILED" and "key" in connection["statusReason"]


# The paid webhook -----------------------------------------------------------------------------


@pytest.fixture(params=["event", "flat"])
def paid(
    request: pytest.FixtureRequest,
    container: Container,
    alice: Tenant,
    nomod: MockNomodState,
    mock_erp: MockErp,
    api_server: RunningServer,
) -> dict[str, Any]:
    """A KWD invoice for an ERP-linked customer (who has no phone number): synced to Nomod, pushed
    to the ERP, then paid in Nomod, whose webhook comes in each of the two shapes seen in the wild."""
    nomod.webhook_shape = request.param
    connection = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url}).json()
    run = alice.client.post(f"/api/v1/connections/{connection['id']}/sync").json()
    _until(alice.client, f"/api/v1/sync-runs/{run['id']}", lambda r: r["status"] != "RUNNING", timeout=60)
    _connect(alice, nomod, outbound=True, api_server=api_server)
    linked = alice.client.get("/api/v1/customers", params={"erpDebtorId": "DEB-000001"}).json()["items"][0]
    lines = [
        {"description": "Licences", "quantity": "3", "unitPrice": "1.234"},
        {"description": "Support, half hour", "quantity": "0.5", "unitPrice": "2.345"},
    ]
    invoice = _invoice(alice, linked["id"], "KWD-1", currency="KWD", lines=lines)
    assert invoice["amountTotal"] == "4.875"  # 3.702 + 1.1725 rounded half-up to 1.173
    synced = _nomod_settled(alice, invoice["id"])
    assert synced["nomod"]["status"] == "SYNCED", synced["nomod"]
    alice.client.post(f"/api/v1/invoices/{invoice['id']}/dispatch")
    _until(alice.client, f"/api/v1/invoices/{invoice['id']}", lambda i: i["push"]["status"] == "SUCCEEDED")
    link = alice.client.post(f"/api/v1/invoices/{invoice['id']}/payment-link").json()
    payment = httpx.post(f"{nomod.base_url}/_mock/pay", json={"invoiceId": link["nomodId"]}, timeout=30).json()
    assert payment["delivery"]["status"] == 200, payment
    return {"invoice_id": invoice["id"], "nomod_invoice_id": link["nomodId"], "delivery": payment["delivery"],
            "charge": payment["charge"], "mock_erp": mock_erp, "shape": request.param}  # fmt: skip


def test_kwd_amounts_go_to_nomod_exactly(alice: Tenant, nomod: MockNomodState, paid: dict[str, Any]) -> None:
    sent = next(r for r in nomod.requests if r["path"] == "/v1/invoices")
    items = orjson.loads(sent["body"])["items"]
    assert [(i["amount"], i["quantity"]) for i in items] == [("1.234", 3), ("1.173", 1)]
    assert '"1.234"' in sent["body"] and "1.2340000" not in sent["body"]  # strings, never floats
    assert nomod.invoices[paid["nomod_invoice_id"]]["amount"] == "4.875"
    assert paid["charge"]["total"] == "4.875" and paid["charge"]["currency"] == "KWD"
    sent_customer = orjson.loads(next(r["body"] for r in nomod.requests if r["path"] == "/v1/customers"))
    assert "phone_number" not in sent_customer and "metadata" not in sent_customer


def test_a_paid_webhook_records_the_payment_and_pushes_it(
    alice: Tenant, nomod: MockNomodState, paid: dict[str, Any]
) -> None:
    invoice = _until(alice.client, f"/api/v1/invoices/{paid['invoice_id']}", lambda i: i["status"] == "PAID")
    assert invoice["amountOutstanding"] == "0.000"
    (payment,) = alice.client.get("/api/v1/payments", params={"invoiceId": paid["invoice_id"]}).json()["items"]
    assert payment["source"] == "nomod" and payment["amount"] == "4.875"
    pushed = _until(alice.client, f"/api/v1/payments/{payment['id']}", lambda p: p["push"]["status"] != "PENDING")
    assert pushed["push"]["status"] == "SUCCEEDED", pushed["push"]
    erp_payment = next(p for p in paid["mock_erp"].data._pushed_payments if p["erpPaymentId"] == pushed["erpPaymentId"])
    assert str(erp_payment["amount"]) == "4.875"
    (application,) = alice.client.get("/api/v1/cash-applications", params={"status": "APPROVED"}).json()["items"]
    assert application["paymentId"] == payment["id"] and paid["charge"]["id"] in application["reference"]
    # The delivery log shows it, whichever shape it came in.
    (logged,) = alice.client.get("/api/v1/webhooks/nomod/deliveries").json()["items"]
    assert (logged["outcome"], logged["chargeId"], logged["invoiceId"], logged["verified"]) == (
        "recorded", paid["charge"]["id"], paid["invoice_id"], True,
    )  # fmt: skip
    assert logged["eventType"] == ("charge.completed" if paid["shape"] == "event" else None)


def test_a_webhook_redelivered_five_times_records_one_payment(
    alice: Tenant, api_server: RunningServer, paid: dict[str, Any]
) -> None:
    url = f"{api_server.url}/api/v1/webhooks/nomod/{alice.tenant_id}/{alice.environment_id}"
    delivery = paid["delivery"]
    headers = delivery["headers"] | {"content-type": "application/json"}

    def redeliver(_: int) -> httpx.Response:
        return httpx.post(url, content=delivery["body"].encode(), headers=headers, timeout=30)

    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(redeliver, range(5)))
    assert [r.status_code for r in responses] == [200] * 5
    assert {r.json()["status"] for r in responses} == {"duplicate"}
    payments = alice.client.get("/api/v1/payments", params={"invoiceId": paid["invoice_id"]}).json()["items"]
    assert len(payments) == 1
    assert len(alice.client.get("/api/v1/cash-applications").json()["items"]) == 1


def test_forged_stale_or_tampered_webhooks_are_rejected(
    alice: Tenant, nomod: MockNomodState, api_server: RunningServer
) -> None:
    _connect(alice, nomod, outbound=False, api_server=api_server)
    assert nomod.webhook_secret is not None
    url = f"{api_server.url}/api/v1/webhooks/nomod/{alice.tenant_id}/{alice.environment_id}"
    charge = nomod.pay(None, nomod.create_link({"title": "x", "currency": "AED", "items": [
        {"name": "x", "amount": "10.00", "quantity": 1}]})["id"])  # fmt: skip
    body = orjson.dumps({"type": "charge.paid", "data": {"id": charge["id"]}})
    attempts = {
        "forged": signing.signed_headers(signing.new_secret(), "msg_1", body),
        "stale": signing.signed_headers(nomod.webhook_secret, "msg_2", body, timestamp=int(time.time()) - 301),
        "future": signing.signed_headers(nomod.webhook_secret, "msg_3", body, timestamp=int(time.time()) + 360),
        "unsigned": {},
    }
    for name, headers in attempts.items():
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code == 401, (name, response.text)
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
    signed = signing.signed_headers(nomod.webhook_secret, "msg_4", body)
    tampered = body.replace(charge["id"].encode(), b"another-charge")
    assert httpx.post(url, content=tampered, headers=signed).status_code == 401
    assert not any(r["path"].startswith("/v1/charges") for r in nomod.requests)  # nothing was even looked up

    # Correctly signed, but the charge is not for anything arsync made: accepted, and shown as
    # needing attention in the delivery log with the reason; nothing is recorded.
    accepted = httpx.post(url, content=body, headers=signed)
    assert accepted.status_code == 200 and accepted.json()["status"] == "needs_attention"
    assert alice.client.get("/api/v1/payments").json()["items"] == []
    log = alice.client.get("/api/v1/webhooks/nomod/deliveries").json()["items"]
    assert [d["outcome"] for d in log] == ["needs_attention"] + ["rejected"] * 5
    assert "cannot be matched" in log[0]["reason"] and log[0]["chargeId"] == charge["id"]
    assert not any(d["verified"] for d in log[1:]) and "signature" in log[-1]["reason"]
    attention = alice.client.get("/api/v1/webhooks/nomod/deliveries", params={"outcome": "needs_attention"})
    assert [d["id"] for d in attention.json()["items"]] == [log[0]["id"]]
    other = f"{api_server.url}/api/v1/webhooks/nomod/ten_nobody/env_nobody"
    assert httpx.post(other, content=body, headers=signed).status_code == 404


def test_five_simultaneous_first_deliveries_record_one_payment(
    alice: Tenant, nomod: MockNomodState, api_server: RunningServer
) -> None:
    _connect(alice, nomod, outbound=False, api_server=api_server)
    assert nomod.webhook_secret is not None
    invoice = _invoice(alice, _customer(alice), "RACE-PAY")
    link = alice.client.post(f"/api/v1/invoices/{invoice['id']}/payment-link").json()
    charge = nomod.pay(None, link["nomodId"])  # paid, but no webhook sent yet
    url = f"{api_server.url}/api/v1/webhooks/nomod/{alice.tenant_id}/{alice.environment_id}"
    body = orjson.dumps({"type": "charge.paid", "data": {"id": charge["id"]}})
    headers = signing.signed_headers(nomod.webhook_secret, "msg_race", body)

    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda _: httpx.post(url, content=body, headers=headers, timeout=30), range(5)))
    assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]
    outcomes = sorted(r.json()["status"] for r in responses)
    assert outcomes == ["duplicate"] * 4 + ["recorded"]
    (payment,) = alice.client.get("/api/v1/payments", params={"invoiceId": invoice["id"]}).json()["items"]
    assert Decimal(payment["amount"]) == Decimal("750.30") and payment["source"] == "nomod"
    assert alice.client.get(f"/api/v1/invoices/{invoice['id']}").json()["status"] == "PAID"


def _signed_post(url: str, nomod: MockNomodState, body: dict[str, Any]) -> httpx.Response:
    assert nomod.webhook_secret is not None
    raw = orjson.dumps(body)
    return httpx.post(url, content=raw, headers=signing.signed_headers(nomod.webhook_secret, "msg_x", raw), timeout=30)


def test_a_service_fee_is_never_added_unless_chosen_and_never_applied_to_the_invoice(
    alice: Tenant, nomod: MockNomodState, api_server: RunningServer
) -> None:
    _connect(alice, nomod, outbound=False, api_server=api_server)
    assert alice.client.get("/api/v1/connections/nomod").json()["allowServiceFee"] is False
    off = _invoice(alice, _customer(alice), "FEE-OFF")
    link = alice.client.post(f"/api/v1/invoices/{off['id']}/payment-link").json()
    paid = httpx.post(f"{nomod.base_url}/_mock/pay", json={"linkId": link["nomodId"]}, timeout=30).json()
    assert paid["charge"]["total"] == off["amountTotal"] and paid["charge"]["service_fee"] == "0"

    body = {"apiKey": NOMOD_KEY, "invoiceSync": {"outbound": False}, "allowServiceFee": True}
    assert alice.client.put("/api/v1/connections/nomod", json=body).json()["allowServiceFee"] is True
    on = _invoice(alice, _customer(alice, "Fee Payer", "fee@example.com"), "FEE-ON")
    link = alice.client.post(f"/api/v1/invoices/{on['id']}/payment-link").json()
    paid = httpx.post(f"{nomod.base_url}/_mock/pay", json={"linkId": link["nomodId"]}, timeout=30).json()
    assert Decimal(paid["charge"]["total"]) > Decimal(on["amountTotal"])  # the payer paid the fee on top
    assert paid["delivery"]["status"] == 200
    settled = _until(alice.client, f"/api/v1/invoices/{on['id']}", lambda i: i["status"] == "PAID")
    (payment,) = alice.client.get("/api/v1/payments", params={"invoiceId": on["id"]}).json()["items"]
    assert payment["amount"] == on["amountTotal"] and settled["amountOutstanding"] == "0.00"


def test_charges_that_are_not_paid_are_shown_and_a_nomod_outage_asks_for_redelivery(
    container: Container, alice: Tenant, nomod: MockNomodState, api_server: RunningServer
) -> None:
    _connect(alice, nomod, outbound=False, api_server=api_server)
    url = f"{api_server.url}/api/v1/webhooks/nomod/{alice.tenant_id}/{alice.environment_id}"
    invoice = _invoice(alice, _customer(alice), "AUTH-1")
    link = alice.client.post(f"/api/v1/invoices/{invoice['id']}/payment-link").json()
    charge = nomod.pay(None, link["nomodId"])
    nomod.charges[charge["id"]]["status"] = "authorised"  # as in Nomod's docs example
    first = _signed_post(url, nomod, {"id": charge["id"], "payment_link_id": link["nomodId"]})
    assert first.status_code == 200 and first.json()["status"] == "needs_attention"
    nomod.charges[charge["id"]]["status"] = "failed"
    assert _signed_post(url, nomod, {"data": {"id": charge["id"]}}).json()["status"] == "ignored"
    nomod.faults = [NomodFault(path="/v1/charges", status=503)]
    down = _signed_post(url, nomod, {"data": {"id": charge["id"]}})
    assert down.status_code == 502  # Nomod delivers again later
    assert _signed_post(url, nomod, {"type": "charge.completed", "data": {}}).json()["status"] == "needs_attention"
    log = alice.client.get("/api/v1/webhooks/nomod/deliveries").json()["items"]
    assert [d["outcome"] for d in log] == ["needs_attention", "failed", "ignored", "needs_attention"]
    assert "no charge id" in log[0]["reason"] and "authorised" in log[3]["reason"]
    assert alice.client.get(f"/api/v1/invoices/{invoice['id']}").json()["status"] == "FINALIZED"
    # The settings page shows the log.
    create_ui_user(container, alice, "alice@example.com")
    browser = sign_in(api_server, "alice@example.com")
    page = browser.client.get("/settings/nomod").text
    browser.client.close()
    assert "Webhook deliveries" in page and page.count("needs attention") >= 2 and charge["id"] in page


def test_the_settings_page_tests_the_saved_key_against_nomod(
    container: Container, api_server: RunningServer, alice: Tenant, nomod: MockNomodState
) -> None:
    _connect(alice, nomod, outbound=False)
    create_ui_user(container, alice, "alice@example.com")
    browser = sign_in(api_server, "alice@example.com")
    settings = browser.client.get("/settings/nomod").text
    assert ">Test the key</button>" in settings

    works = browser.client.post("/settings/nomod/test", data={"csrf_token": browser.csrf}, follow_redirects=True)
    assert "The key works: Nomod answered, with" in works.text
    assert any(r["method"] == "GET" and r["path"] == "/v1/customers" for r in nomod.requests)

    nomod.api_key = "sk_test_rotated_in_nomod"  # the key was rolled in Nomod's dashboard
    refused = browser.client.post("/settings/nomod/test", data={"csrf_token": browser.csrf}, follow_redirects=True)
    browser.client.close()
    assert "The key did not work." in refused.text
    shown = alice.client.get("/api/v1/connections/nomod").json()
    assert shown["status"] == "FAILED"
