"""Xero over OAuth 2, against the mock Xero over loopback HTTP, on SQLite and PostgreSQL.

The "browser" is an httpx client: it opens the authorize URL arsync gives, allows access on
the mock's consent page and follows Xero's redirect to arsync's real callback.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from arsync.accounts import service as accounts
from arsync.accounts.models import User
from arsync.app import create_app
from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.erp.models import Connection
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.mocks.xero import MockXeroFault, MockXeroState, create_mock_xero_app, mock_xero_settings
from arsync.tenancy import service as tenancy
from arsync.xero.tokens import XeroTokens, seal, unseal
from tests.api.conftest import PASSWORD, Tenant, sign_in, until
from tests.conftest import TEST_SECRET_KEY, clean_container, free_port, make_settings
from tests.factories import api_invoice
from tests.fixtures import xero_examples

CONTACTS, INVOICES, PAYMENTS = 30, 80, 30
ACCREC = sum(1 for n in range(INVOICES) if n % 10 != 9)


@dataclass
class MockXero:
    state: MockXeroState
    server: RunningServer

    @property
    def url(self) -> str:
        return self.server.url

    def organisation(self) -> dict[str, Any]:
        return dict(self.state.summary()["organisations"][0])

    def configure(self, **changes: Any) -> None:
        self.state.config = self.state.config.model_copy(update=changes)


@pytest.fixture
def mock_xero() -> Iterator[MockXero]:
    state = MockXeroState()
    state.add_organisation("Demo Company (NZ)", CONTACTS, INVOICES, PAYMENTS)
    with serve_in_thread(create_mock_xero_app(state)) as server:
        yield MockXero(state, server)


def xero_settings(mock: MockXero, api_port: int) -> dict[str, Any]:
    names = mock_xero_settings(mock.url, mock.state.config)
    values: dict[str, Any] = {name.removeprefix("ARSYNC_").lower(): value for name, value in names.items()}
    values["xero_redirect_uri"] = f"http://127.0.0.1:{api_port}/api/v1/connections/xero/callback"
    return values


@pytest.fixture
def api_port() -> int:
    return free_port()


@pytest.fixture
def container(database_url: str, tmp_path: Path, mock_xero: MockXero, api_port: int) -> Iterator[Container]:
    settings = make_settings(database_url, tmp_path, push_backoff_seconds=0.05, push_max_attempts=3,
                             sync_page_size=10, **xero_settings(mock_xero, api_port))  # fmt: skip
    with clean_container(settings) as app:
        yield app


@pytest.fixture
def api_server(container: Container, api_port: int) -> Iterator[RunningServer]:
    with serve_in_thread(create_app(container, background_jobs=True), port=api_port, lifespan="on") as server:
        yield server


_site: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _remember_site(request: pytest.FixtureRequest) -> Iterator[None]:
    """Lets ``connect`` sign a tenant's user in, on the server the test uses (sign_in closes its browsers)."""
    if "api_server" in request.fixturenames:
        _site.clear()
        _site.update(container=request.getfixturevalue("container"), server=request.getfixturevalue("api_server"))
    yield


def signed_in_browser(tenant: Tenant) -> httpx.Client:
    """A browser signed in to arsync as the tenant's user (created on first use)."""
    email = f"{tenant.tenant_id}@example.com"
    with transaction(_site["container"].session_factory) as session:
        if session.query(User).filter_by(email=email).first() is None:
            accounts.create_user(session, tenant.tenant_id, email, PASSWORD)
    return sign_in(_site["server"], email).client


def consent(browser: httpx.Client, mock: MockXero, url: str, decision: str = "allow") -> httpx.Response:
    """ "Allow access" (or deny) on the mock's consent page, then follow Xero's redirect back."""
    form = dict(parse_qsl(urlsplit(url).query)) | {"decision": decision}
    return browser.post(f"{mock.url}/identity/connect/authorize", data=form, follow_redirects=True)


def connect(tenant: Tenant, mock: MockXero, **authorize: str) -> httpx.Response:
    """Connect Xero as a user would: the authorize link, "Allow access", the redirect back, in a
    browser signed in to arsync as that tenant's user."""
    started = tenant.client.get("/api/v1/connections/xero/authorize", params=authorize)
    assert started.status_code == 200, started.text
    url = started.json()["authorizeUrl"]
    assert url.startswith(f"{mock.url}/identity/connect/authorize?")
    consent_page = httpx.get(url)
    assert consent_page.status_code == 200 and "Allow access" in consent_page.text
    return consent(signed_in_browser(tenant), mock, url)


def connected(tenant: Tenant, mock: MockXero) -> dict[str, Any]:
    """Connect, wait for the import to finish, return the callback's answer."""
    answer = connect(tenant, mock, bankAccountCode="090")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["status"] == "CONNECTED"
    run_id = body["syncRun"]["id"]
    run = until(tenant.client, f"/api/v1/sync-runs/{run_id}", lambda r: r["status"] != "RUNNING")
    assert run["status"] == "SUCCEEDED", run
    return body | {"finishedRun": run}


def test_connect_imports_contacts_invoices_payments(alice: Tenant, mock_xero: MockXero, container: Container):
    body = connected(alice, mock_xero)
    connection = body["connection"]
    assert connection["transport"] == "native" and connection["provider"] == "xero"
    assert connection["status"] == "ACTIVE" and connection["erpOrganisationName"] == "Demo Company (NZ)"
    assert connection["bankAccountCode"] == "090"
    run = body["finishedRun"]
    assert run["trigger"] == "connect" and run["full"] is True and run["modifiedSince"] is None
    assert run["counts"]["debtors"]["created"] == CONTACTS
    assert run["counts"]["invoices"]["created"] == ACCREC  # the bills (ACCPAY) stay out
    payments = run["counts"]["payments"]["created"]
    assert 0 < payments <= PAYMENTS

    # The ledger holds Xero's figures exactly: AmountDue is the amount outstanding.
    org = mock_xero.state.organisations[connection["erpOrganisationId"]]
    xero_invoice = next(i for i in org.invoices.values() if i["Type"] == "ACCREC" and i["AmountPaid"] > 0)
    listed = alice.client.get("/api/v1/invoices", params={"limit": 500}).json()["items"]
    ours = next(i for i in listed if i["erpInvoiceId"] == xero_invoice["InvoiceID"])
    assert ours["amountOutstanding"] == f"{xero_invoice['AmountDue']:.2f}"
    assert ours["amountTotal"] == f"{xero_invoice['Total']:.2f}"
    assert len(alice.client.get("/api/v1/payments", params={"limit": 500}).json()["items"]) == payments

    # Tokens are encrypted at rest and never shown.
    shown = alice.client.get(f"/api/v1/connections/{connection['id']}").text
    with container.session_factory() as session:
        stored = session.get(Connection, connection["id"])
        assert stored is not None
        tokens = XeroTokens(container.session_factory, container.vault, container.xero.oauth, stored.id)
        access = tokens.access_token()
        assert access not in stored.secret_encrypted and access not in shown

    # A second sync is incremental and finds nothing new.
    again = alice.client.post(f"/api/v1/connections/{connection['id']}/sync").json()
    again = until(alice.client, f"/api/v1/sync-runs/{again['id']}", lambda r: r["status"] != "RUNNING")
    assert again["status"] == "SUCCEEDED" and again["modifiedSince"] is not None
    assert again["counts"]["invoices"]["records"] == 0

    # Disconnecting revokes the tokens at Xero.
    assert alice.client.delete(f"/api/v1/connections/{connection['id']}").status_code == 204
    assert mock_xero.state.revocations == 1
    assert httpx.get(f"{mock_xero.url}/connections", headers={"Authorization": f"Bearer {access}"}).status_code == 401


def test_a_revocation_xero_does_not_confirm_keeps_the_connection_unless_forced(alice: Tenant, mock_xero: MockXero):
    connection = connected(alice, mock_xero)["connection"]
    path = f"/api/v1/connections/{connection['id']}"
    mock_xero.state.faults = [MockXeroFault(method="POST", path="/connect/revocation", status=503)]
    refused = alice.client.delete(path)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "REVOKE_FAILED"
    assert "?force=true" in refused.json()["error"]["message"]
    assert alice.client.get(path).json()["status"] == "ACTIVE" and mock_xero.state.revocations == 0

    mock_xero.state.faults = [MockXeroFault(method="POST", path="/connect/revocation", status=503)]
    assert alice.client.delete(path, params={"force": "true"}).status_code == 204
    assert alice.client.get(path).status_code == 404 and mock_xero.state.revocations == 0


def test_callback_refuses_unknown_used_or_declined_states(
    alice: Tenant, mock_xero: MockXero, api_server: RunningServer
):
    callback = f"{api_server.url}/api/v1/connections/xero/callback"
    unknown = httpx.get(callback, params={"state": "forged", "code": "x"})
    assert unknown.status_code == 404 and "unknown, used or expired" in unknown.json()["error"]["message"]

    first = connect(alice, mock_xero)
    assert first.status_code == 200 and first.json()["status"] == "CONNECTED"
    replay = httpx.get(str(first.request.url))
    assert replay.status_code == 404, replay.text  # the state works once

    url = alice.client.get("/api/v1/connections/xero/authorize").json()["authorizeUrl"]
    declined = consent(signed_in_browser(alice), mock_xero, url, decision="deny")
    assert declined.status_code == 422 and "did not authorize" in declined.json()["error"]["message"]


def test_a_link_followed_by_someone_else_connects_nothing(
    alice: Tenant, bob: Tenant, mock_xero: MockXero, api_server: RunningServer
):
    """Login CSRF: Alice's tenant starts, Bob is tricked into consenting with his organisation."""
    url = alice.client.get("/api/v1/connections/xero/authorize").json()["authorizeUrl"]

    # Not signed in to arsync: nothing happens, and a browser is asked to sign in first.
    with httpx.Client(timeout=30) as anonymous:
        refused = consent(anonymous, mock_xero, url)
        assert refused.status_code == 401 and "sign in to arsync" in refused.json()["error"]["message"]
        form = dict(parse_qsl(urlsplit(url).query)) | {"decision": "allow"}
        redirected = anonymous.post(f"{mock_xero.url}/identity/connect/authorize", data=form)
        to_callback = redirected.headers["location"]
        page = anonymous.get(to_callback, headers={"Accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=/api/v1/connections/xero")

    # Signed in to another tenant: refused, and the link is spent.
    hijacked = consent(signed_in_browser(bob), mock_xero, url)
    assert hijacked.status_code == 403 and "another arsync session or organisation" in hijacked.text
    assert alice.client.get("/api/v1/connections").json() == [] and bob.client.get("/api/v1/connections").json() == []
    again = consent(signed_in_browser(alice), mock_xero, url)
    assert again.status_code == 404 and "unknown, used or expired" in again.text


def test_a_connection_started_in_the_ui_finishes_only_in_that_session(
    alice: Tenant, mock_xero: MockXero, api_server: RunningServer
):
    starter, other = signed_in_browser(alice), signed_in_browser(alice)
    home = starter.get("/")
    csrf = home.text.split('name="csrf-token" content="')[1].split('"')[0]
    started = starter.post("/settings/erp/xero/connect", data={"csrf_token": csrf})
    assert started.status_code == 303
    elsewhere = consent(other, mock_xero, started.headers["location"])
    assert elsewhere.status_code == 403 and "another arsync session" in elsewhere.text
    assert alice.client.get("/api/v1/connections").json() == []


def test_several_organisations_ask_which_one(alice: Tenant, mock_xero: MockXero):
    second = mock_xero.state.add_organisation("Second Ltd", 3, 4, 0, seed=2)
    asked = connect(alice, mock_xero)
    assert asked.status_code == 200, asked.text
    body = asked.json()
    assert body["status"] == "CHOOSE_ORGANISATION" and body["connection"] is None
    assert {o["tenantName"] for o in body["organisations"]} == {"Demo Company (NZ)", "Second Ltd"}
    state = dict(parse_qsl(urlsplit(str(asked.request.url)).query))["state"]
    chosen = alice.client.post(body["choosePath"], json={"state": state, "xeroTenantId": second.tenant_id})
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["connection"]["erpOrganisationName"] == "Second Ltd"
    run = until(alice.client, f"/api/v1/sync-runs/{chosen.json()['syncRun']['id']}", lambda r: r["status"] != "RUNNING")
    assert run["status"] == "SUCCEEDED" and run["counts"]["debtors"]["created"] == 3


def test_token_expiring_mid_sync_is_refreshed(alice: Tenant, mock_xero: MockXero):
    # The import makes about 17 calls; every token dies at the 8th.
    mock_xero.configure(expire_tokens_at_call=8)
    body = connected(alice, mock_xero)
    assert mock_xero.state.refreshes == 1
    assert body["finishedRun"]["counts"]["invoices"]["created"] == ACCREC
    assert alice.client.get(f"/api/v1/connections/{body['connection']['id']}").json()["status"] == "ACTIVE"


def test_refused_refresh_asks_to_reconnect(alice: Tenant, mock_xero: MockXero):
    connection_id = connected(alice, mock_xero)["connection"]["id"]
    mock_xero.state.refuse_refresh = True
    mock_xero.state.expire_access_tokens()
    run = alice.client.post(f"/api/v1/connections/{connection_id}/sync").json()
    run = until(alice.client, f"/api/v1/sync-runs/{run['id']}", lambda r: r["status"] != "RUNNING")
    assert run["status"] == "FAILED" and run["error"]["kind"] == "ReauthRequired"
    assert "reconnect" in run["error"]["hint"].lower()
    connection = alice.client.get(f"/api/v1/connections/{connection_id}").json()
    assert connection["status"] == "NEEDS_REAUTH" and "reconnect" in connection["statusReason"].lower()

    mock_xero.state.refuse_refresh = False
    again = connected(alice, mock_xero)  # reconnecting brings it back
    assert again["connection"]["id"] == connection_id and again["connection"]["status"] == "ACTIVE"


def test_rate_limit_storm_ends_with_the_sync_done_and_limits_kept(alice: Tenant, mock_xero: MockXero):
    # A tight organisation: 5 in flight, 12 calls per second, and every 4th call refused anyway.
    mock_xero.configure(minute_limit=12, minute_window_seconds=1.0, latency_seconds=0.02, storm_every=4)
    body = connected(alice, mock_xero)
    assert body["finishedRun"]["counts"]["invoices"]["created"] == ACCREC
    organisation = mock_xero.organisation()
    assert organisation["refusals"].get("storm", 0) >= 3
    assert organisation["maxInFlight"] <= 5


def test_a_spent_daily_limit_read_from_xero_ends_the_sync_without_a_refused_call(alice: Tenant, mock_xero: MockXero):
    mock_xero.configure(day_limit=3)
    answer = connect(alice, mock_xero).json()
    run = until(alice.client, f"/api/v1/sync-runs/{answer['syncRun']['id']}", lambda r: r["status"] != "RUNNING")
    assert run["status"] == "FAILED" and run["error"]["kind"] == "RateLimitExhausted"
    assert "daily limit" in run["error"]["message"] and "X-DayLimit-Remaining: 0" in run["error"]["message"]
    # arsync read Xero's X-DayLimit-Remaining and stopped, instead of making a call Xero refuses.
    assert mock_xero.organisation()["refusals"].get("day", 0) == 0
    # A rate limit is not the connection's fault: it stays ACTIVE for the next scheduled run.
    assert alice.client.get(f"/api/v1/connections/{answer['connection']['id']}").json()["status"] == "ACTIVE"


def test_pushes_go_to_xero_once_even_after_a_timeout(
    alice: Tenant, mock_xero: MockXero, container: Container, mock_erp: Any
):
    # A REST connection too: the native one must win.
    rest = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url})
    assert rest.status_code == 200, rest.text
    xero_id = connected(alice, mock_xero)["connection"]["id"]
    customer = next(c for c in alice.client.get("/api/v1/customers", params={"limit": 100}).json()["items"]
                    if c["erpDebtorId"])  # fmt: skip
    invoice = alice.client.post("/api/v1/invoices", json={
        "customerId": customer["id"], "invoiceNumber": "ARS-0001", "issueDate": "2026-03-01",
        "dueDate": "2026-03-31", "currency": "USD",
        "lines": [{"description": "Audit", "quantity": 3, "unitPrice": "333.33"}],
    }).json()  # fmt: skip
    assert alice.client.post(f"/api/v1/invoices/{invoice['id']}/finalize").status_code == 200

    # Xero stores the invoice, then answers after the client (2 s timeout) has given up.
    mock_xero.state.faults = [MockXeroFault(method="PUT", path="/Invoices", delay=3.0, times=1)]
    assert alice.client.post(f"/api/v1/invoices/{invoice['id']}/dispatch").status_code == 200
    done = until(alice.client, f"/api/v1/invoices/{invoice['id']}", lambda i: i["push"]["status"] != "PENDING", 60)
    push = done["push"]
    assert push["status"] == "SUCCEEDED", push
    assert push["connectionId"] == xero_id
    numbers = mock_xero.organisation()["invoiceNumbers"]
    assert numbers.count("ARS-0001") == 1
    org = next(iter(mock_xero.state.organisations.values()))
    stored = next(i for i in org.invoices.values() if i["InvoiceNumber"] == "ARS-0001")
    assert done["erpInvoiceId"] == stored["InvoiceID"] and str(stored["Total"]) == "999.99"
    assert [line["AccountCode"] for line in stored["LineItems"]] == ["200"]  # Xero's standard Sales account

    # Approving a cash application pushes the payment against bank account 090. Xero stores it
    # and answers late, so the second attempt finds it in Xero's payments instead of sending again.
    mock_xero.state.faults = [MockXeroFault(method="PUT", path="/Payments", delay=3.0, times=1)]
    application = alice.client.post("/api/v1/cash-applications", json={
        "invoiceId": invoice["id"], "amount": "500.00", "date": "2026-03-05", "reference": "wire",
    }).json()  # fmt: skip
    assert alice.client.post(f"/api/v1/cash-applications/{application['id']}/approve").status_code == 200
    paid = until(alice.client, "/api/v1/pushes?kind=payment",
                 lambda page: bool(page["items"]) and page["items"][0]["status"] != "PENDING")  # fmt: skip
    assert paid["items"][0]["status"] == "SUCCEEDED", paid
    assert paid["items"][0]["attempts"] == 2
    assert stored["AmountDue"] == stored["Total"] - 500
    payments = [p for p in org.payments.values() if p["Invoice"]["InvoiceID"] == stored["InvoiceID"]]
    assert len(payments) == 1 and payments[0]["Account"]["Code"] == "090"
    assert paid["items"][0]["erpId"] == payments[0]["PaymentID"]


def _finalized_usd_invoice(tenant: Tenant, number: str) -> str:
    customer = next(c for c in tenant.client.get("/api/v1/customers", params={"limit": 100}).json()["items"]
                    if c["erpDebtorId"])  # fmt: skip
    lines = [{"description": "Audit", "quantity": 1, "unitPrice": 10}]
    invoice_id: str = api_invoice(tenant.client, customer["id"], number, currency="USD", lines=lines)["id"]
    return invoice_id


def _pushed(tenant: Tenant, invoice_id: str) -> dict[str, Any]:
    assert tenant.client.post(f"/api/v1/invoices/{invoice_id}/dispatch").status_code == 200
    return until(tenant.client, f"/api/v1/invoices/{invoice_id}", lambda i: i["push"]["status"] != "PENDING", 60)


def test_invoice_lines_go_to_the_chosen_sales_account(alice: Tenant, mock_xero: MockXero):
    too_long = alice.client.get("/api/v1/connections/xero/authorize", params={"salesAccountCode": "9" * 51})
    assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "VALIDATION_FAILED"
    blank = alice.client.get("/api/v1/connections/xero/authorize", params={"salesAccountCode": "  "})
    assert blank.status_code == 422 and "salesAccountCode" in blank.json()["error"]["message"]

    answer = connect(alice, mock_xero, bankAccountCode="090", salesAccountCode="260")
    assert answer.status_code == 200, answer.text
    assert answer.json()["connection"]["salesAccountCode"] == "260"
    until(alice.client, f"/api/v1/sync-runs/{answer.json()['syncRun']['id']}", lambda r: r["status"] != "RUNNING")
    done = _pushed(alice, _finalized_usd_invoice(alice, "ARS-260"))
    assert done["push"]["status"] == "SUCCEEDED", done["push"]
    org = next(iter(mock_xero.state.organisations.values()))
    stored = org.invoices[done["erpInvoiceId"]]
    assert [line["AccountCode"] for line in stored["LineItems"]] == ["260"]

    # Changed without reconnecting: a code Xero does not know fails the push with Xero's words.
    connection_id = answer.json()["connection"]["id"]
    changed = alice.client.patch(f"/api/v1/connections/{connection_id}", json={"salesAccountCode": "999"})
    assert changed.status_code == 200 and changed.json()["salesAccountCode"] == "999"
    assert changed.json()["bankAccountCode"] == "090"  # left out, so kept
    refused = _pushed(alice, _finalized_usd_invoice(alice, "ARS-999"))["push"]
    assert refused["status"] == "FAILED"
    assert "Account code '999' is not a valid code for this document." in refused["lastError"]["message"]
    assert "ARS-999" not in mock_xero.organisation()["invoiceNumbers"]

    # Removed, the standard Sales account applies again.
    reset = alice.client.patch(f"/api/v1/connections/{connection_id}", json={"salesAccountCode": None})
    assert reset.status_code == 200 and reset.json()["salesAccountCode"] is None
    done = _pushed(alice, _finalized_usd_invoice(alice, "ARS-200"))
    assert done["push"]["status"] == "SUCCEEDED"
    assert [line["AccountCode"] for line in org.invoices[done["erpInvoiceId"]]["LineItems"]] == ["200"]


REFRESH_SCRIPT = """
import sys, time
from arsync.bootstrap import bootstrap
from arsync.xero.tokens import XeroTokens, seal, unseal
container = bootstrap(upgrade_schema=False)
start_at = float(sys.argv[2])
time.sleep(max(start_at - time.time(), 0))
print(XeroTokens(container.session_factory, container.vault, container.xero.oauth, sys.argv[1]).access_token())
container.close()
"""


def test_two_workers_needing_a_refresh_make_one(postgres_url: str, tmp_path: Path, mock_xero: MockXero, api_port: int):
    """Two processes find the token expired at the same moment: Xero sees one refresh."""
    settings = xero_settings(mock_xero, api_port)
    with clean_container(make_settings(postgres_url, tmp_path, **settings)) as container:
        with transaction(container.session_factory) as session:
            created = tenancy.create_tenant(session, "workers", "prod")
        app = create_app(container, background_jobs=True)
        server = serve_in_thread(app, port=api_port, lifespan="on")
        tenant = Tenant(
            created.tenant_id,
            created.environment_id,
            created.api_key,
            httpx.Client(base_url=server.url, headers=created.headers),
        )
        with server:
            _site.update(container=container, server=server)
            connection_id = connected(tenant, mock_xero)["connection"]["id"]
        tenant.client.close()
        mock_xero.state.expire_access_tokens()
        with transaction(container.session_factory) as session:
            row = session.get(Connection, connection_id)
            assert row is not None
            tokens = unseal(container.vault, row.secret_encrypted)
            expired = dataclasses.replace(tokens, expires_at=tokens.expires_at.replace(year=2000))
            row.secret_encrypted = seal(container.vault, expired)
        refreshes_before = mock_xero.state.refresh_requests
        env = dict(os.environ, ARSYNC_DATABASE_URL=postgres_url, ARSYNC_SECRET_KEY=TEST_SECRET_KEY,
                   ARSYNC_DATA_DIR=str(tmp_path),
                   **{f"ARSYNC_{k.upper()}": str(v) for k, v in settings.items()})  # fmt: skip
        start_at = str(time.time() + 3)
        command = [sys.executable, "-c", REFRESH_SCRIPT, connection_id, start_at]
        workers = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [worker.communicate(timeout=60) for worker in workers]
        assert all(worker.returncode == 0 for worker in workers), outputs
        tokens_seen = {out.strip().splitlines()[-1] for out, _ in outputs}
        assert mock_xero.state.refresh_requests - refreshes_before == 1
        assert len(tokens_seen) == 1  # both went on with the one new token
        (token,) = tokens_seen
        listed = httpx.get(f"{mock_xero.url}/connections", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200


def test_ui_connects_xero_shows_reconnect_and_disconnects(
    container: Container, api_server: RunningServer, alice: Tenant, mock_xero: MockXero
):
    with transaction(container.session_factory) as session:
        accounts.create_user(session, alice.tenant_id, "alice@example.com", PASSWORD)
    browser = sign_in(api_server, "alice@example.com")
    browser.client.headers["Accept"] = "text/html"
    settings = browser.client.get("/settings/erp")
    assert "Connect Xero" in settings.text

    started = browser.client.post(
        "/settings/erp/xero/connect",
        data={"csrf_token": browser.csrf, "bank_account_code": "090", "sales_account_code": "260"},
    )
    assert started.status_code == 303
    authorize = started.headers["location"]
    assert authorize.startswith(f"{mock_xero.url}/identity/connect/authorize?")
    form = dict(parse_qsl(urlsplit(authorize).query)) | {"decision": "allow"}
    back = browser.client.post(f"{mock_xero.url}/identity/connect/authorize", data=form, follow_redirects=True)
    assert back.status_code == 200 and str(back.url) == f"{api_server.url}/settings/erp"
    assert "Xero connected: Demo Company (NZ). The first import has started." in back.text
    run = until(alice.client, "/api/v1/sync-runs", lambda page: page["items"][0]["status"] != "RUNNING")
    assert run["items"][0]["status"] == "SUCCEEDED" and run["items"][0]["trigger"] == "connect"
    shown = browser.client.get("/settings/erp").text
    assert "<dt>Sales account code</dt><dd>260</dd>" in shown and "<dt>Bank account code</dt><dd>090</dd>" in shown
    connection_id = alice.client.get("/api/v1/connections").json()[0]["id"]
    saved = browser.client.post(
        f"/settings/erp/{connection_id}/account-codes",
        data={"csrf_token": browser.csrf, "bank_account_code": "091", "sales_account_code": ""},
        follow_redirects=True,
    )
    assert "Account codes saved" in saved.text and "<dt>Bank account code</dt><dd>091</dd>" in saved.text
    assert "200 (Xero&#39;s standard Sales account)" in saved.text
    shown_api = alice.client.get(f"/api/v1/connections/{connection_id}").json()
    assert (shown_api["bankAccountCode"], shown_api["salesAccountCode"]) == ("091", None)

    mock_xero.state.refuse_refresh = True
    mock_xero.state.expire_access_tokens()
    connection_id = alice.client.get("/api/v1/connections").json()[0]["id"]
    failed = alice.client.post(f"/api/v1/connections/{connection_id}/sync").json()
    until(alice.client, f"/api/v1/sync-runs/{failed['id']}", lambda r: r["status"] != "RUNNING")
    settings = browser.client.get("/settings/erp")
    assert "b-NEEDS_REAUTH" in settings.text and ">Reconnect</button>" in settings.text
    assert "Xero needs someone to sign in again" in settings.text
    run_page = browser.client.get(f"/sync-runs/{failed['id']}")
    assert "Why it failed" in run_page.text and "reconnect" in run_page.text.lower()

    mock_xero.state.refuse_refresh = False
    gone = browser.client.post(
        f"/settings/erp/{connection_id}/delete", data={"csrf_token": browser.csrf}, follow_redirects=True
    )
    assert "Xero disconnected." in gone.text and mock_xero.state.revocations == 1
    assert alice.client.get("/api/v1/connections").json() == []


# Xero as it really is ------------------------------------------------------------------------


def test_a_new_app_asks_for_granular_scopes_and_the_broad_ones_are_refused(alice: Tenant, mock_xero: MockXero):
    started = alice.client.get("/api/v1/connections/xero/authorize").json()["authorizeUrl"]
    asked = dict(parse_qsl(urlsplit(started).query))["scope"].split()
    assert set(asked) == {"offline_access", "accounting.contacts", "accounting.invoices", "accounting.payments"}
    broad = started.replace("accounting.invoices", "accounting.transactions")
    refused = httpx.get(broad)
    assert refused.status_code == 400 and "invalid_scope" in refused.text and "accounting.transactions" in refused.text
    mock_xero.configure(granular_scopes_only=False)  # an app created before 2 March 2026
    assert httpx.get(broad).status_code == 200


def test_import_leaves_out_suppliers_bills_and_reversed_payments_and_keeps_tax(alice: Tenant, mock_xero: MockXero):
    run = connected(alice, mock_xero)["finishedRun"]
    org = next(iter(mock_xero.state.organisations.values()))
    suppliers = [c for c in org.contacts.values() if c["IsCustomer"] is False]
    assert suppliers and run["counts"]["debtors"]["created"] == len(org.contacts) - len(suppliers)
    names = {c["name"] for c in alice.client.get("/api/v1/customers", params={"limit": 500}).json()["items"]}
    assert not names & {s["Name"] for s in suppliers}
    reversed_payment = next(p for p in org.payments.values() if p["Status"] == "DELETED")
    listed = alice.client.get("/api/v1/payments", params={"limit": 500}).json()["items"]
    assert reversed_payment["PaymentID"] not in {p["erpPaymentId"] for p in listed}
    taxed = next(i for i in org.invoices.values() if i["Type"] == "ACCREC" and i["TotalTax"] > 0)
    ours = next(i for i in alice.client.get("/api/v1/invoices", params={"limit": 500}).json()["items"]
                if i["erpInvoiceId"] == taxed["InvoiceID"])  # fmt: skip
    assert ours["amountTotal"] == f"{taxed['Total']:.2f}"
    assert sum(Decimal(line["amount"]) for line in ours["lines"]) == taxed["Total"]
    assert ours["lines"][-1]["description"] == "Tax"


def _usd_invoice(tenant: Tenant, number: str, lines: list[dict[str, Any]]) -> str:
    customer = next(c for c in tenant.client.get("/api/v1/customers", params={"limit": 100}).json()["items"]
                    if c["erpDebtorId"])  # fmt: skip
    invoice = tenant.client.post("/api/v1/invoices", json={
        "customerId": customer["id"], "invoiceNumber": number, "issueDate": "2026-12-01",
        "dueDate": "2026-12-31", "currency": "USD", "lines": lines,
    })  # fmt: skip
    assert invoice.status_code == 201, invoice.text
    assert tenant.client.post(f"/api/v1/invoices/{invoice.json()['id']}/finalize").status_code == 200
    invoice_id: str = invoice.json()["id"]
    return invoice_id


def test_unit_prices_with_three_and_four_decimals_reach_xero_exactly(alice: Tenant, mock_xero: MockXero):
    connected(alice, mock_xero)
    invoice_id = _usd_invoice(alice, "ARS-UNITDP", [
        {"description": "Per unit", "quantity": "3", "unitPrice": "12.345"},
        {"description": "Metered", "quantity": "2.5", "unitPrice": "0.1234"},
    ])  # fmt: skip
    done = _pushed(alice, invoice_id)
    assert done["push"]["status"] == "SUCCEEDED", done["push"]
    org = next(iter(mock_xero.state.organisations.values()))
    stored = org.invoices[done["erpInvoiceId"]]
    assert stored["Total"] == Decimal(done["amountTotal"]) == Decimal("37.35")
    assert stored["LineItems"][0]["UnitAmount"] == Decimal("12.345")
    # Without unitdp=4 Xero keeps two decimals and refuses the line, as the mock shows.
    token = next(iter(mock_xero.state.access_tokens))
    line = {"Description": "x", "Quantity": 3, "UnitAmount": 12.345, "LineAmount": 37.04}
    body = {"Invoices": [{"Type": "ACCREC", "Contact": {"ContactID": stored["Contact"]["ContactID"]},
                          "Date": "2026-12-01", "LineItems": [line]}]}  # fmt: skip
    headers = {"Authorization": f"Bearer {token}", "xero-tenant-id": org.tenant_id}
    plain = httpx.put(f"{mock_xero.url}/api.xro/2.0/Invoices", headers=headers, json=body)
    assert plain.status_code == 400 and "does not match" in plain.text


def test_a_refused_push_can_be_fixed_and_sent_again(alice: Tenant, mock_xero: MockXero):
    connection_id = connected(alice, mock_xero)["connection"]["id"]
    alice.client.patch(f"/api/v1/connections/{connection_id}", json={"salesAccountCode": "999"})
    invoice_id = _usd_invoice(alice, "ARS-FIX", [{"description": "Audit", "quantity": 1, "unitPrice": 10}])
    refused = _pushed(alice, invoice_id)["push"]
    assert refused["status"] == "FAILED" and "999" in refused["lastError"]["message"]
    # Fix the cause, then retry: a new Idempotency-Key, so Xero does not replay its refusal.
    alice.client.patch(f"/api/v1/connections/{connection_id}", json={"salesAccountCode": "200"})
    assert alice.client.post(f"/api/v1/pushes/{refused['id']}/retry").status_code in (200, 202)
    done = until(alice.client, f"/api/v1/invoices/{invoice_id}", lambda i: i["push"]["status"] != "PENDING", 60)
    assert done["push"]["status"] == "SUCCEEDED", done["push"]
    assert mock_xero.organisation()["invoiceNumbers"].count("ARS-FIX") == 1


def test_a_push_while_the_daily_limit_is_spent_waits_for_it(alice: Tenant, mock_xero: MockXero):
    connected(alice, mock_xero)
    invoice_id = _usd_invoice(alice, "ARS-QUOTA", [{"description": "Audit", "quantity": 1, "unitPrice": 10}])
    org = next(iter(mock_xero.state.organisations.values()))
    mock_xero.configure(day_limit=org.day_calls)  # the next call is one too many
    assert alice.client.post(f"/api/v1/invoices/{invoice_id}/dispatch").status_code == 200
    waiting = until(alice.client, f"/api/v1/invoices/{invoice_id}",
                    lambda i: (i["push"].get("lastError") or {}).get("kind") == "RateLimitExhausted")  # fmt: skip
    push = waiting["push"]
    assert push["status"] == "PENDING" and push["nextAttemptAt"] and push["attempts"] == 0
    assert "sent by itself" in push["lastError"]["hint"] and "Sync now" not in push["lastError"]["hint"]


def test_a_customer_made_in_arsync_is_created_in_xero_once_and_its_invoice_follows(alice: Tenant, mock_xero: MockXero):
    connection_id = connected(alice, mock_xero)["connection"]["id"]
    org = next(iter(mock_xero.state.organisations.values()))
    customer = alice.client.post("/api/v1/customers", json={"name": "Brand New Trading",
                                                            "email": "ap@brandnew.example"}).json()  # fmt: skip
    lines = [{"description": "Audit", "quantity": 1, "unitPrice": 10}]
    invoice_id = api_invoice(alice.client, customer["id"], "ARS-NEW", currency="USD", lines=lines)["id"]
    not_yet = alice.client.post(f"/api/v1/invoices/{invoice_id}/dispatch")
    assert not_yet.status_code == 409 and "/erp-debtor" in not_yet.json()["error"]["details"]["hint"]

    # Xero makes the contact, then answers after arsync has given up; the second try finds it by
    # its ContactNumber instead of making another.
    mock_xero.state.faults = [MockXeroFault(method="PUT", path="/Contacts", delay=3.0, times=1)]
    timed_out = alice.client.post(f"/api/v1/customers/{customer['id']}/erp-debtor")
    assert timed_out.status_code == 502 and timed_out.json()["error"]["code"] == "ERP_ERROR"
    linked = alice.client.post(f"/api/v1/customers/{customer['id']}/erp-debtor")
    assert linked.status_code == 200, linked.text
    made = [c for c in org.contacts.values() if c["Name"] == "Brand New Trading"]
    assert len(made) == 1 and made[0]["ContactNumber"] == customer["id"]
    assert made[0]["EmailAddress"] == "ap@brandnew.example"
    assert linked.json()["id"] == customer["id"] and linked.json()["erpDebtorId"] == made[0]["ContactID"]

    # Its invoice now goes to the new contact.
    done = _pushed(alice, invoice_id)
    assert done["push"]["status"] == "SUCCEEDED", done["push"]
    sent = org.invoices[done["erpInvoiceId"]]
    assert sent["Contact"]["ContactID"] == made[0]["ContactID"] and made[0]["IsCustomer"] is True

    again = alice.client.post(f"/api/v1/customers/{customer['id']}/erp-debtor")
    assert again.status_code == 409 and again.json()["error"]["code"] == "INVALID_STATE"
    # The next sync brings the contact in as the same customer, not a second one.
    run = alice.client.post(f"/api/v1/connections/{connection_id}/sync").json()
    assert until(alice.client, f"/api/v1/sync-runs/{run['id']}", lambda r: r["status"] != "RUNNING")["status"] == (
        "SUCCEEDED")  # fmt: skip
    same = alice.client.get("/api/v1/customers", params={"name": "Brand New Trading"}).json()["items"]
    assert [c["id"] for c in same] == [customer["id"]]


def test_creating_a_contact_xero_already_has_or_without_xero_says_to_link_instead(
    alice: Tenant, mock_xero: MockXero, mock_erp: Any
):
    rest = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url})
    assert rest.status_code == 200, rest.text
    lone = alice.client.post("/api/v1/customers", json={"name": "Demo Company (NZ) Customer 1"}).json()
    on_rest = alice.client.post(f"/api/v1/customers/{lone['id']}/erp-debtor")
    assert on_rest.status_code == 409 and on_rest.json()["error"]["code"] == "PREREQUISITE_MISSING"
    assert "Link to an ERP debtor" in on_rest.json()["error"]["details"]["hint"]

    connected(alice, mock_xero)
    taken = alice.client.post(f"/api/v1/customers/{lone['id']}/erp-debtor")
    assert taken.status_code == 502, taken.text
    error = taken.json()["error"]
    assert "is already assigned to another contact" in error["message"]
    assert "link this customer to it" in error["details"]["hint"]
    org = next(iter(mock_xero.state.organisations.values()))
    assert sum(c["Name"] == lone["name"] for c in org.contacts.values()) == 1
    assert alice.client.get(f"/api/v1/customers/{lone['id']}").json()["erpDebtorId"] is None


def test_pushes_use_the_active_rest_connection_while_xero_needs_reauth(
    alice: Tenant, mock_xero: MockXero, container: Container, mock_erp: Any
):
    xero_id = connected(alice, mock_xero)["connection"]["id"]
    rest = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url}).json()
    with transaction(container.session_factory) as session:
        xero_connection = session.get(Connection, xero_id)
        assert xero_connection is not None
        xero_connection.status = "NEEDS_REAUTH"
    invoice_id = _usd_invoice(alice, "ARS-REST", [{"description": "Audit", "quantity": 1, "unitPrice": 10}])
    done = _pushed(alice, invoice_id)
    assert done["push"]["connectionId"] == rest["id"]


def test_a_payment_reversed_in_xero_leaves_the_ledger_at_the_next_sync(alice: Tenant, mock_xero: MockXero):
    body = connected(alice, mock_xero)
    org = next(iter(mock_xero.state.organisations.values()))
    listed = alice.client.get("/api/v1/payments", params={"limit": 500}).json()["items"]
    reversed_id = listed[0]["erpPaymentId"]
    invoice_id = listed[0]["invoiceId"]
    mock_xero.state.delete_payment(org, reversed_id)
    run = alice.client.post(f"/api/v1/connections/{body['connection']['id']}/sync").json()
    run = until(alice.client, f"/api/v1/sync-runs/{run['id']}", lambda r: r["status"] != "RUNNING")
    assert run["status"] == "SUCCEEDED", run
    assert any(w["code"] == "PAYMENT_REVERSED_IN_ERP" and w["erpPaymentId"] == reversed_id for w in run["warnings"])
    after = alice.client.get("/api/v1/payments", params={"limit": 500}).json()["items"]
    assert reversed_id not in {p["erpPaymentId"] for p in after} and len(after) == len(listed) - 1
    xero_invoice = org.invoices[org.payments[reversed_id]["Invoice"]["InvoiceID"]]
    ours = alice.client.get(f"/api/v1/invoices/{invoice_id}").json()
    assert ours["amountOutstanding"] == f"{xero_invoice['AmountDue']:.2f}"


def test_the_mocks_answers_have_the_shape_of_xeros_own_examples(alice: Tenant, mock_xero: MockXero):
    connected(alice, mock_xero)  # for a token
    token = next(iter(mock_xero.state.access_tokens))
    org = next(iter(mock_xero.state.organisations.values()))
    headers = {"Authorization": f"Bearer {token}", "xero-tenant-id": org.tenant_id}
    for path, documented, key in (("/Contacts", xero_examples.CONTACTS_PAGE, "Contacts"),
                                  ("/Invoices", xero_examples.INVOICES_PAGE, "Invoices"),
                                  ("/Payments", xero_examples.PAYMENTS_PAGE, "Payments")):  # fmt: skip
        answer = httpx.get(f"{mock_xero.url}/api.xro/2.0{path}", headers=headers).json()
        wanted = set(documented[key][0]) - {"FirstName", "LastName", "BankAmount"}  # not modelled by the mock
        for record in answer[key]:
            missing = wanted - set(record)
            assert not missing, (path, missing)
            for field in wanted & set(record):
                example = documented[key][0][field]
                assert isinstance(record[field], type(example)) or {type(record[field]), type(example)} <= {
                    int, float}, (path, field)  # fmt: skip
