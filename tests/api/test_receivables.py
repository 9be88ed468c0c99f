"""Cash that reconciles, lists an AR team can work with, and the aging report, over the HTTP API
on SQLite and PostgreSQL, with Nomod's payments coming from the mock Nomod over loopback."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from arsync.bootstrap import Container
from arsync.mocks.nomod import MockNomodState, create_mock_nomod_app
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.nomod import signing
from tests.api.conftest import Tenant, create_ui_user, sign_in, until
from tests.conftest import MockErp
from tests.factories import api_customer, api_invoice

NOMOD_KEY = "sk_test_receivables"
TODAY = date.today()
_until = partial(until, timeout=30)


@pytest.fixture
def nomod(alice: Tenant, api_server: RunningServer) -> Iterator[MockNomodState]:
    """The mock Nomod, connected to alice's environment with its webhooks pointed at arsync."""
    state = MockNomodState(api_key=NOMOD_KEY)
    with serve_in_thread(create_mock_nomod_app(state)) as server:
        state.base_url = server.url
        secret = signing.new_secret()
        body = {"apiKey": NOMOD_KEY, "invoiceSync": {"outbound": True}, "baseUrl": server.url, "webhookSecret": secret}
        assert alice.client.put("/api/v1/connections/nomod", json=body).status_code == 200
        state.webhook_url = f"{api_server.url}/api/v1/webhooks/nomod/{alice.tenant_id}/{alice.environment_id}"
        state.webhook_secret = secret
        yield state


def _kwd_invoice(alice: Tenant, customer_id: str, number: str, amount: str = "250.000") -> dict[str, Any]:
    lines = [{"description": "Retainer", "quantity": "1", "unitPrice": amount}]
    return api_invoice(alice.client, customer_id, number, currency="KWD", lines=lines, issue_date=TODAY,
                       due_date=TODAY + timedelta(days=30))  # fmt: skip


def _cash(alice: Tenant, invoice_id: str, amount: str, reference: str = "bank 1") -> httpx.Response:
    body = {"invoiceId": invoice_id, "amount": amount, "date": TODAY.isoformat(), "reference": reference}
    return alice.client.post("/api/v1/cash-applications", json=body)


def _pay_in_nomod(nomod: MockNomodState, **target: str) -> dict[str, Any]:
    paid = httpx.post(f"{nomod.base_url}/_mock/pay", json=target, timeout=30).json()
    assert paid["delivery"]["status"] == 200, paid
    return paid


# Cash that reconciles -----------------------------------------------------------------------


def test_partial_cash_then_a_nomod_payment_of_the_rest_is_recorded_once(alice: Tenant, nomod: MockNomodState) -> None:
    customer_id = api_customer(alice.client, "Gulf Trading", "ap@gulf.example")
    invoice = _kwd_invoice(alice, customer_id, "KW-1")
    _until(alice.client, f"/api/v1/invoices/{invoice['id']}", lambda i: (i["nomod"] or {}).get("status") == "SYNCED")
    cash = _cash(alice, invoice["id"], "100.000")
    assert cash.status_code == 201, cash.text
    assert alice.client.post(f"/api/v1/cash-applications/{cash.json()['id']}/approve").status_code == 200

    # The Nomod invoice still asks for 250.000, so the customer is sent a link for the 150.000 left.
    link = alice.client.post(f"/api/v1/invoices/{invoice['id']}/payment-link").json()
    assert link["kind"] == "link" and nomod.links[link["nomodId"]]["amount"] == "150.000"
    _pay_in_nomod(nomod, linkId=link["nomodId"])

    paid = _until(alice.client, f"/api/v1/invoices/{invoice['id']}", lambda i: i["status"] == "PAID")
    assert paid["amountOutstanding"] == "0.000"
    payments = alice.client.get("/api/v1/payments", params={"invoiceId": invoice["id"], "sort": "amount"}).json()
    assert [(p["amount"], p["source"]) for p in payments["items"]] == [
        ("100.000", "cash_application"), ("150.000", "nomod")
    ]  # fmt: skip
    assert alice.client.get("/api/v1/cash-applications", params={"status": "PENDING"}).json()["items"] == []
    # Asking again once part is paid makes a new link only if what is owed changed.
    again = alice.client.post(f"/api/v1/invoices/{invoice['id']}/payment-link")
    assert again.status_code == 409 and "already paid" in again.json()["error"]["message"]
    assert nomod.stats()["links"] == 1


def test_an_open_page_is_told_when_a_nomod_payment_lands_and_when_a_sync_starts_or_ends(
    container: Container, alice: Tenant, api_server: RunningServer, nomod: MockNomodState, mock_erp: MockErp
) -> None:
    create_ui_user(container, alice, "watch@example.com")
    browser = sign_in(api_server, "watch@example.com")
    made = _kwd_invoice(alice, api_customer(alice.client, "Watched Ltd", "ap@watched.example"), "W-1")
    invoice = _until(
        alice.client, f"/api/v1/invoices/{made['id']}", lambda i: (i["nomod"] or {}).get("status") == "SYNCED"
    )

    def seen_on(html: str) -> str:
        found = re.search(r'hx-get="/ui/ledger-watch\?seen=([^"]+)"', html)
        assert found, "the page has no ledger watch"
        return unquote(found.group(1))

    def watch(seen: str) -> httpx.Response:
        return browser.client.get("/ui/ledger-watch", params={"seen": seen})

    seen = seen_on(browser.client.get(f"/invoices/{invoice['id']}").text)
    assert watch(seen).status_code == 204  # nothing new: htmx leaves the page alone

    _pay_in_nomod(nomod, invoiceId=invoice["nomod"]["nomodInvoiceId"])
    moved = watch(seen)
    assert (moved.status_code, moved.headers["HX-Trigger"]) == (200, "ledger-changed")
    seen = seen_on(moved.text)
    assert watch(seen).status_code == 204

    connection = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url}).json()
    run = alice.client.post(f"/api/v1/connections/{connection['id']}/sync").json()
    _until(alice.client, f"/api/v1/sync-runs/{run['id']}", lambda r: r["status"] != "RUNNING")
    moved = watch(seen)
    assert moved.headers["HX-Trigger"] == "ledger-changed, sync-started"  # it began and ended between two looks
    assert watch(seen_on(moved.text)).status_code == 204
    assert watch("not a token").status_code == 200  # a mangled token is simply behind


def test_an_overpayment_waits_with_its_reason_and_its_rest_becomes_the_customers_credit(
    alice: Tenant, nomod: MockNomodState
) -> None:
    customer_id = api_customer(alice.client, "Gulf Trading", "ap@gulf.example")
    invoice = _kwd_invoice(alice, customer_id, "KW-2")
    synced = _until(
        alice.client, f"/api/v1/invoices/{invoice['id']}", lambda i: (i["nomod"] or {}).get("status") == "SYNCED"
    )
    cash = _cash(alice, invoice["id"], "100.000").json()
    alice.client.post(f"/api/v1/cash-applications/{cash['id']}/approve")

    # The customer pays the Nomod invoice in full anyway: 100.000 more than is owed.
    _pay_in_nomod(nomod, invoiceId=synced["nomod"]["nomodInvoiceId"])
    (waiting,) = _until(alice.client, "/api/v1/cash-applications?status=PENDING", lambda page: len(page["items"]) == 1)[
        "items"
    ]
    assert waiting["amount"] == "250.000" and waiting["currency"] == "KWD"
    assert "more than the 150.000 KWD still outstanding" in waiting["reviewReason"]

    refused = alice.client.post(f"/api/v1/cash-applications/{waiting['id']}/approve")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "OVER_APPLICATION"
    credited = alice.client.post(f"/api/v1/cash-applications/{waiting['id']}/approve?keepRestAsCredit=true")
    assert credited.status_code == 200, credited.text
    assert (credited.json()["status"], credited.json()["creditedAmount"]) == ("APPROVED", "100.000")
    paid = alice.client.get(f"/api/v1/invoices/{invoice['id']}").json()
    assert (paid["status"], paid["amountOutstanding"]) == ("PAID", "0.000")
    (payment,) = [
        p for p in alice.client.get("/api/v1/payments", params={"invoiceId": invoice["id"]}).json()["items"]
        if p["source"] == "nomod"
    ]  # fmt: skip
    assert payment["amount"] == "150.000"
    (balance,) = alice.client.get(f"/api/v1/customers/{customer_id}/balance").json()["balances"]
    assert balance == {"currency": "KWD", "outstanding": "0.000", "overdue": "0.000", "credit": "100.000",
                       "openInvoices": 0}  # fmt: skip
    # Approving twice records nothing more.
    twice = alice.client.post(f"/api/v1/cash-applications/{waiting['id']}/approve?keepRestAsCredit=true")
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "INVALID_STATE"


def test_a_pending_cash_application_can_be_rejected_and_recording_counts_what_already_waits(alice: Tenant) -> None:
    customer_id = api_customer(alice.client, "Acme Ltd")
    invoice = _kwd_invoice(alice, customer_id, "KW-3", "100.000")
    first = _cash(alice, invoice["id"], "60.000", "bank 1")
    assert first.status_code == 201
    second = _cash(alice, invoice["id"], "60.000", "bank 2")
    assert second.status_code == 409 and second.json()["error"]["code"] == "OVER_APPLICATION"
    assert "60.000 of it is already waiting for approval" in second.json()["error"]["message"]

    rejected = alice.client.post(f"/api/v1/cash-applications/{first.json()['id']}/reject")
    assert rejected.status_code == 200 and rejected.json()["status"] == "REJECTED"
    assert alice.client.post(f"/api/v1/cash-applications/{first.json()['id']}/approve").status_code == 409
    untouched = alice.client.get(f"/api/v1/invoices/{invoice['id']}").json()
    assert untouched["amountOutstanding"] == "100.000"
    assert alice.client.get("/api/v1/payments", params={"invoiceId": invoice["id"]}).json()["items"] == []
    # With the first set aside, the same money can be recorded again.
    assert _cash(alice, invoice["id"], "60.000", "bank 2").status_code == 201


# Lists, totals and CSV ----------------------------------------------------------------------


@pytest.fixture
def ledger_of_four(alice: Tenant) -> dict[str, Any]:
    """Two customers, four invoices in two currencies, one overdue and one partly paid."""
    acme, zeta = api_customer(alice.client, "Acme Ltd"), api_customer(alice.client, "Zeta Foods")
    made = {
        "A-1": api_invoice(alice.client, acme, "A-1", currency="ZAR", issue_date=TODAY - timedelta(days=70),
                           due_date=TODAY - timedelta(days=40)),
        "A-2": api_invoice(alice.client, acme, "A-2", currency="ZAR", issue_date=TODAY - timedelta(days=5),
                           due_date=TODAY + timedelta(days=25)),
        "Z-1": api_invoice(alice.client, zeta, "Z-1", currency="USD", issue_date=TODAY - timedelta(days=100),
                           due_date=TODAY - timedelta(days=95),
                           lines=[{"description": "Crates", "quantity": "2", "unitPrice": "1500.25"}]),
        "Z-2": api_invoice(alice.client, zeta, "Z-2", currency="USD", issue_date=TODAY - timedelta(days=1),
                           due_date=TODAY + timedelta(days=29), finalize=False),
    }  # fmt: skip
    cash = _cash(alice, made["A-2"]["id"], "50.30").json()
    alice.client.post(f"/api/v1/cash-applications/{cash['id']}/approve")
    return {"acme": acme, "zeta": zeta, "invoices": made}


def test_invoice_filters_and_sorts_agree_with_the_ledger(alice: Tenant, ledger_of_four: dict[str, Any]) -> None:
    def numbers(**params: Any) -> list[str]:
        answer = alice.client.get("/api/v1/invoices", params=params)
        assert answer.status_code == 200, answer.text
        return [i["invoiceNumber"] for i in answer.json()["items"]]

    assert numbers(sort="issued", order="desc") == ["Z-2", "A-2", "A-1", "Z-1"]
    assert numbers(sort="outstanding", order="desc") == ["Z-1", "Z-2", "A-1", "A-2"]
    assert numbers(sort="customer", order="asc")[:2] == ["A-1", "A-2"]
    assert numbers(overdue="true", sort="due") == ["Z-1", "A-1"]
    assert numbers(currency="USD", sort="number") == ["Z-1", "Z-2"]
    assert numbers(q="zeta", sort="number") == ["Z-1", "Z-2"]
    assert numbers(q="a-", sort="number") == ["A-1", "A-2"]
    assert numbers(issuedAfter=(TODAY - timedelta(days=10)).isoformat(), sort="number") == ["A-2", "Z-2"]
    refused = alice.client.get("/api/v1/invoices", params={"sort": "colour"})
    assert refused.status_code == 422


def test_the_aging_report_adds_up_to_the_ledger(alice: Tenant, ledger_of_four: dict[str, Any]) -> None:
    report = alice.client.get("/api/v1/reports/aging").json()
    by_currency = {row["currency"]: row for row in report["byCurrency"]}
    assert by_currency["ZAR"]["buckets"] == {"current": "700.00", "1-30": "0.00", "31-60": "750.30",
                                             "61-90": "0.00", "90+": "0.00"}  # fmt: skip
    assert by_currency["USD"]["buckets"]["90+"] == "3000.50" and by_currency["USD"]["total"] == "3000.50"
    assert report["openBalances"] == 2
    # Each currency's total is what the finalized invoices still owe, read one by one.
    for currency, row in by_currency.items():
        owed = sum(
            Decimal(i["amountOutstanding"])
            for i in alice.client.get(
                "/api/v1/invoices", params={"status": "FINALIZED", "currency": currency, "limit": 100}
            ).json()["items"]
        )
        assert Decimal(row["total"]) == owed
    (acme_zar,) = [r for r in report["byCustomer"] if r["customerId"] == ledger_of_four["acme"]]
    assert (acme_zar["customerName"], acme_zar["total"], acme_zar["invoices"]) == ("Acme Ltd", "1450.30", 2)
    assert report["customersIn"] is None
    # Ranked in one currency only: the same rows of it, and the balances counted in it alone.
    zar = alice.client.get("/api/v1/reports/aging", params={"currency": "ZAR"}).json()
    assert zar["byCurrency"] == report["byCurrency"]
    assert (zar["customersIn"], zar["openBalances"]) == ("ZAR", 1)
    assert zar["byCustomer"] == [row for row in report["byCustomer"] if row["currency"] == "ZAR"]
    assert alice.client.get("/api/v1/reports/aging", params={"currency": "zar"}).status_code == 422


def test_the_ui_exports_what_its_list_shows_as_csv(
    container: Container, alice: Tenant, api_server: RunningServer, ledger_of_four: dict[str, Any]
) -> None:
    create_ui_user(container, alice, "ar@example.com")
    browser = sign_in(api_server, "ar@example.com")
    answer = browser.client.get("/invoices.csv", params={"currency": "ZAR", "sort": "due", "order": "asc"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    api = alice.client.get("/api/v1/invoices", params={"currency": "ZAR", "sort": "due", "order": "asc"}).json()
    assert [(r["invoice_number"], r["amount_outstanding"], r["customer_name"]) for r in rows] == [
        (i["invoiceNumber"], i["amountOutstanding"], "Acme Ltd") for i in api["items"]
    ]
    payments = list(csv.DictReader(io.StringIO(browser.client.get("/payments.csv").text)))
    assert [(p["invoice_number"], p["amount"], p["currency"]) for p in payments] == [("A-2", "50.30", "ZAR")]
    bad = browser.client.get("/invoices", params={"due_from": "31/12/2026"})
    assert bad.status_code == 200 and "is not a date like 2026-12-31" in bad.text


# A customer made in arsync, linked to its ERP debtor --------------------------------------


def test_a_new_customer_linked_to_its_erp_debtor_gets_its_invoice_into_the_erp(
    alice: Tenant, mock_erp: MockErp
) -> None:
    connection = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url}).json()
    run = alice.client.post(f"/api/v1/connections/{connection['id']}/sync").json()
    _until(alice.client, f"/api/v1/sync-runs/{run['id']}", lambda r: r["status"] != "RUNNING", timeout=60)
    debtor = alice.client.get("/api/v1/customers", params={"erpDebtorId": "DEB-000002"}).json()["items"][0]

    made_here = api_customer(alice.client, "New Client Ltd", "ap@newclient.example")
    invoice = api_invoice(alice.client, made_here, "NEW-1", issue_date=TODAY, due_date=TODAY + timedelta(days=30))
    assert "dispatch" not in invoice["allowedActions"]
    refused_dispatch = alice.client.post(f"/api/v1/invoices/{invoice['id']}/dispatch")
    assert refused_dispatch.status_code == 409, refused_dispatch.text
    assert f"/customers/{made_here}/merge" in refused_dispatch.json()["error"]["details"]["hint"]

    refused = alice.client.post(f"/api/v1/customers/{made_here}/merge", json={"debtorCustomerId": made_here})
    assert refused.status_code == 422
    merged = alice.client.post(f"/api/v1/customers/{made_here}/merge", json={"debtorCustomerId": debtor["id"]})
    assert merged.status_code == 200, merged.text
    assert merged.json()["id"] == debtor["id"] and merged.json()["erpDebtorId"] == "DEB-000002"
    assert alice.client.get(f"/api/v1/customers/{made_here}").status_code == 404
    moved = alice.client.get(f"/api/v1/invoices/{invoice['id']}").json()
    assert moved["customerId"] == debtor["id"] and "dispatch" in moved["allowedActions"]

    assert alice.client.post(f"/api/v1/invoices/{invoice['id']}/dispatch").status_code == 200
    pushed = _until(alice.client, f"/api/v1/invoices/{invoice['id']}", lambda i: i["push"]["status"] != "PENDING")
    assert pushed["push"]["status"] == "SUCCEEDED" and pushed["erpInvoiceId"]
    assert any(p["invoiceNumber"] == "NEW-1" and p["erpDebtorId"] == "DEB-000002"
               for p in mock_erp.data._pushed_invoices)  # fmt: skip
