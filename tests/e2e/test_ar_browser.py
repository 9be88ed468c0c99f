"""An AR team's day in a real browser: cash that reconciles, lists they sort, filter and export,
the aging report, and the lists at phone width.

Debian's chromium driven by Playwright, against a live server on loopback (SQLite, the
in-process worker) with the mock Nomod connected, whose pay pages and signed webhooks play the
customer paying. Screenshots go to tests/e2e/screenshots/ (ignored by git).
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from arsync.accounts import service as accounts
from arsync.app import create_app
from arsync.bootstrap import bootstrap
from arsync.db import transaction
from arsync.mocks.erp import MockErpState, create_mock_erp_app
from arsync.mocks.erp_data import MockErpData
from arsync.mocks.nomod import MockNomodState, create_mock_nomod_app
from arsync.mocks.serving import serve_in_thread
from arsync.money import display
from arsync.nomod import signing
from arsync.tenancy import service as tenancy
from tests.conftest import make_settings
from tests.e2e.chromium import confirming, push_succeeded, shoot, signed_in

EMAIL, PASSWORD = "finance@example.com", "receivables-before-lunch"
NOMOD_KEY = "sk_test_browser_day"
TODAY = date.today()


@dataclass
class Site:
    url: str
    api: httpx.Client
    nomod: MockNomodState


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp("ar")
    container = bootstrap(make_settings(f"sqlite:///{data_dir / 'arsync.db'}", data_dir, push_backoff_seconds=0.05))
    nomod = MockNomodState(api_key=NOMOD_KEY)
    with serve_in_thread(create_mock_nomod_app(nomod)) as nomod_server:
        nomod.base_url = nomod_server.url
        with transaction(container.session_factory) as session:
            created = tenancy.create_tenant(session, "Gulf Wholesale", "prod")
            accounts.create_user(session, created.tenant_id, EMAIL, PASSWORD)
        with serve_in_thread(create_app(container, background_jobs=True), lifespan="on") as server:
            api = httpx.Client(base_url=server.url, headers=created.headers, timeout=30)
            secret = signing.new_secret()
            connected = api.put("/api/v1/connections/nomod", json={
                "apiKey": NOMOD_KEY, "invoiceSync": {"outbound": True}, "baseUrl": nomod.base_url,
                "webhookSecret": secret,
            })  # fmt: skip
            assert connected.status_code == 200, connected.text
            nomod.webhook_url = f"{server.url}/api/v1/webhooks/nomod/{created.tenant_id}/{created.environment_id}"
            nomod.webhook_secret = secret
            yield Site(server.url, api, nomod)
            api.close()
    container.close()


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    opened = signed_in(browser, site.url, EMAIL, PASSWORD)
    yield opened
    opened.context.close()


def _invoice(
    site: Site, name: str, number: str, amount: str, *, currency: str = "KWD", due_in: int = 30
) -> dict[str, Any]:
    customer = site.api.post("/api/v1/customers", json={"name": name, "email": f"{number.lower()}@pay.example"})
    assert customer.status_code == 201, customer.text
    due = TODAY + timedelta(days=due_in)
    body = {
        "customerId": customer.json()["id"],
        "invoiceNumber": number,
        "issueDate": (due - timedelta(days=30)).isoformat(),
        "dueDate": due.isoformat(),
        "currency": currency,
        "lines": [{"description": "Wholesale order", "quantity": "1", "unitPrice": amount}],
    }
    created = site.api.post("/api/v1/invoices", json=body)
    assert created.status_code == 201, created.text
    finalized = site.api.post(f"/api/v1/invoices/{created.json()['id']}/finalize").json()
    return dict(finalized)


def _nomod_synced(site: Site, invoice_id: str) -> dict[str, Any]:
    for _ in range(120):
        invoice: dict[str, Any] = site.api.get(f"/api/v1/invoices/{invoice_id}").json()
        if (invoice.get("nomod") or {}).get("status") in ("SYNCED", "FAILED"):
            return invoice
        time.sleep(0.25)
    pytest.fail(f"invoice {invoice_id} never settled with Nomod")


def _record_cash(page: Page, invoice_id: str, amount: str, reference: str) -> None:
    page.goto(f"/invoices/{invoice_id}")
    page.get_by_label(re.compile(r"^Amount \(")).fill(amount)
    page.get_by_label("Reference").fill(reference)
    page.get_by_role("button", name="Record cash application").click()
    expect(page.get_by_role("status").first).to_contain_text("approve it to post the payment")


def _approve(page: Page, reference: str, button: str | re.Pattern[str] = "Approve") -> str:
    page.goto("/cash-applications?status=PENDING")
    asked: list[str] = []
    confirming(page, asked)
    page.locator("tbody tr", has_text=reference).get_by_role("button", name=button).click()
    expect(page.get_by_role("status").first).to_contain_text("Approved:")
    return asked[0]


# Cash that reconciles -----------------------------------------------------------------------


def test_partial_cash_then_a_nomod_payment_of_the_rest_leaves_nothing_owed_or_stuck(page: Page, site: Site) -> None:
    invoice = _nomod_synced(site, _invoice(site, "Dune Traders", "DUNE-1", "250.000")["id"])
    assert invoice["nomod"]["status"] == "SYNCED"
    _record_cash(page, invoice["id"], "100.000", "BANK-DUNE")
    question = _approve(page, "BANK-DUNE")
    assert "100.000 KWD" in question and "sends it to the ERP" in question

    page.goto(f"/invoices/{invoice['id']}")
    page.get_by_role("button", name="Get payment link").click()
    notice = page.get_by_role("status").first
    expect(notice).to_contain_text("Payment link ready:")
    link = re.search(r"https?://\S+", notice.inner_text())
    assert link, notice.inner_text()
    # The customer pays in their own window while the invoice stays open here.
    payer = page.context.new_page()
    payer.goto(link.group(0).rstrip("."))
    expect(payer.get_by_text("Mock Nomod: 150.000 KWD due.")).to_be_visible()  # what is left, not the total
    payer.get_by_role("button", name="Pay 150.000 KWD").click()
    expect(payer.get_by_role("heading", name="Paid")).to_be_visible()
    payer.close()

    # The open invoice page notices the payment by itself, without being reloaded.
    expect(page.get_by_role("heading", level=1)).to_contain_text("PAID", timeout=15_000)
    expect(page.locator("dd", has_text="0.000 KWD").first).to_be_visible()
    payments = page.locator("table", has=page.get_by_role("columnheader", name="Source"))
    expect(payments.locator("tbody tr:not(.push-failure)")).to_have_count(2)
    shoot(page, "cash-partial-then-nomod")
    page.goto("/cash-applications?status=PENDING")
    expect(page.get_by_text("No cash applications with status pending.")).to_be_visible()
    nomod_payments = [p for p in site.api.get("/api/v1/payments", params={"invoiceId": invoice["id"]}).json()["items"]
                      if p["source"] == "nomod"]  # fmt: skip
    assert [p["amount"] for p in nomod_payments] == ["150.000"]


def test_an_overpayment_becomes_the_customers_credit_balance(page: Page, site: Site) -> None:
    invoice = _nomod_synced(site, _invoice(site, "Oasis Foods", "OASIS-1", "250.000")["id"])
    _record_cash(page, invoice["id"], "100.000", "BANK-OASIS")
    _approve(page, "BANK-OASIS")
    # The customer pays the Nomod invoice's own page anyway, for the whole 250.000.
    page.goto(invoice["nomod"]["paymentUrl"])
    page.get_by_role("button", name=re.compile(r"^Pay 250\.000 KWD")).click()
    expect(page.get_by_role("heading", name="Paid")).to_be_visible()

    page.goto("/cash-applications?status=PENDING")
    row = page.locator("tbody tr", has_text="Nomod charge")
    expect(row.locator(".why")).to_have_text(
        "Waiting because the charge of 250.000 KWD is more than the 150.000 KWD still outstanding."
    )
    expect(row.get_by_role("button", name="Approve")).to_have_count(0)  # it does not fit as it is
    shoot(page, "cash-overpayment-waiting")
    asked: list[str] = []
    confirming(page, asked)
    row.get_by_role("button", name="Apply 150.000 KWD, keep 100.000 KWD as credit").click()
    expect(page.get_by_role("status").first).to_contain_text("100.000 KWD kept as the customer's credit")
    assert "keep 100.000 KWD as the customer's credit" in asked[0]

    page.goto(f"/customers/{invoice['customerId']}")
    expect(page.get_by_test_id("credit-KWD")).to_have_text("100.000 KWD")
    shoot(page, "customer-credit-balance")
    paid = site.api.get(f"/api/v1/invoices/{invoice['id']}").json()
    assert (paid["status"], paid["amountOutstanding"]) == ("PAID", "0.000")


def test_a_wrong_cash_application_is_rejected_and_changes_nothing(page: Page, site: Site) -> None:
    invoice = _invoice(site, "Mirage Supplies", "MIRAGE-1", "80.000")
    _record_cash(page, invoice["id"], "80.000", "BANK-WRONG-CUSTOMER")
    page.goto("/cash-applications?status=PENDING")
    asked: list[str] = []
    confirming(page, asked)
    page.locator("tbody tr", has_text="BANK-WRONG-CUSTOMER").get_by_role("button", name="Reject").click()
    expect(page.get_by_role("status").first).to_have_text("Rejected: no payment was recorded.")
    assert "No payment is recorded" in asked[0]
    page.goto("/cash-applications?status=REJECTED")
    expect(page.locator("tbody tr", has_text="BANK-WRONG-CUSTOMER").locator(".badge")).to_have_text("REJECTED")
    shoot(page, "cash-rejected")
    untouched = site.api.get(f"/api/v1/invoices/{invoice['id']}").json()
    assert (untouched["status"], untouched["amountOutstanding"]) == ("FINALIZED", "80.000")


# The invoice form --------------------------------------------------------------------------


def test_a_new_invoice_with_a_searched_customer_and_lines_added_and_removed(page: Page, site: Site) -> None:
    site.api.post("/api/v1/customers", json={"name": "Sandstone Builders", "email": "ap@sandstone.example"})
    page.goto("/invoices/new")
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")
    page.get_by_label("Find a customer").fill("sandst")
    customer = page.get_by_label("Customer", exact=True)
    expect(customer.locator("option")).to_have_text(["Sandstone Builders (ap@sandstone.example)"])
    customer.select_option(label="Sandstone Builders (ap@sandstone.example)")
    page.get_by_label("Invoice number").fill("SAND-1")
    page.get_by_label("Currency").select_option("KWD")
    page.get_by_label("Line 1 description").fill("Survey")
    page.get_by_label("Line 1 quantity").fill("2")
    page.get_by_label("Line 1 unit price").fill("1.5")
    page.get_by_role("button", name="Add line").click()
    page.get_by_label("Line 2 description").fill("Drawings")
    page.get_by_label("Line 2 quantity").fill("1")
    page.get_by_label("Line 2 unit price").fill("10.125")
    expect(page.locator("#invoice-total")).to_have_text("13.125 KWD")
    shoot(page, "invoice-form")
    page.get_by_role("row", name=re.compile("Survey")).get_by_role("button", name="Remove").click()
    expect(page.locator("#invoice-total")).to_have_text("10.125 KWD")
    page.get_by_role("button", name="Create draft").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Invoice SAND-1 DRAFT")
    expect(page.locator("dd", has_text="10.125 KWD").first).to_be_visible()


# Lists, export and the aging report ---------------------------------------------------------


@pytest.fixture(scope="module")
def a_busy_month(site: Site) -> None:
    """Sixty invoices in two currencies, some overdue, a third of them part paid."""
    for n in range(60):
        currency = "USD" if n % 3 else "KWD"
        amount = f"{100 + n * 37}.{n % 10}{'0' if currency == 'USD' else '50'}"
        invoice = _invoice(site, f"Customer {n % 7}", f"BUSY-{n:03d}", amount, currency=currency, due_in=30 - n * 3)
        if n % 3 == 0:
            cash = site.api.post("/api/v1/cash-applications", json={
                "invoiceId": invoice["id"], "amount": "10", "date": TODAY.isoformat(), "reference": f"PART-{n}",
            }).json()  # fmt: skip
            site.api.post(f"/api/v1/cash-applications/{cash['id']}/approve")


def _api_all(site: Site, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for number in range(1, 100):
        answer = site.api.get(path, params=params | {"page": str(number), "limit": "100"}).json()
        items += answer["items"]
        if not answer["hasMore"]:
            return items
    raise AssertionError("more pages than expected")


def _downloaded_csv(page: Page, link: str) -> list[dict[str, str]]:
    with page.expect_download() as download:
        page.get_by_role("link", name=link).click()
    with Path(download.value.path()).open(newline="") as text:
        return list(csv.DictReader(text))


def test_sort_filter_and_export_invoices_and_payments(page: Page, site: Site, a_busy_month: None) -> None:
    page.goto("/invoices")
    first_issued = page.locator("tbody tr").first.locator("td[data-label=Issued]").inner_text()
    assert first_issued == TODAY.isoformat()  # newest first
    page.get_by_label("Currency").fill("USD")
    page.get_by_label("Overdue only").check()
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("link", name="Outstanding").click()  # sorts, largest first
    expect(page).to_have_url(re.compile(r"sort=outstanding&order=desc"))
    amounts = [Decimal(a.split()[0].replace(",", "")) for a in
               page.locator("tbody td[data-label=Outstanding]").all_inner_texts()]  # fmt: skip
    assert amounts == sorted(amounts, reverse=True) and len(amounts) > 3
    shoot(page, "invoices-sorted-filtered")

    params = {"currency": "USD", "overdue": "true", "sort": "outstanding", "order": "desc"}
    api_rows = _api_all(site, "/api/v1/invoices", params)
    expect(page.get_by_test_id("totals")).to_contain_text(f"{len(api_rows)} invoices")
    exported = _downloaded_csv(page, "Export CSV")
    assert [(r["invoice_number"], r["amount_outstanding"], r["currency"]) for r in exported] == [
        (i["invoiceNumber"], i["amountOutstanding"], i["currency"]) for i in api_rows
    ]

    page.goto("/payments")
    page.get_by_label("Source").select_option("cash_application")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("link", name="Amount").click()
    shoot(page, "payments-filtered")
    exported_payments = _downloaded_csv(page, "Export CSV")
    api_payments = _api_all(site, "/api/v1/payments", {"source": "cash_application", "sort": "amount",
                                                        "order": "desc"})  # fmt: skip
    assert [(p["payment_id"], p["amount"]) for p in exported_payments] == [(p["id"], p["amount"]) for p in api_payments]
    assert len(exported_payments) >= 20


def test_the_aging_report_adds_up_to_the_ledger(page: Page, site: Site, a_busy_month: None) -> None:
    page.goto("/reports/aging")
    for currency in ("KWD", "USD"):
        owed = _api_all(site, "/api/v1/invoices", {"status": "FINALIZED", "currency": currency})
        total = sum((Decimal(i["amountOutstanding"]) for i in owed), Decimal(0))
        row = page.get_by_test_id(f"aging-total-{currency}")
        expect(row.locator("td[data-label=Total]")).to_have_text(display(total, currency))
        overdue = _api_all(site, "/api/v1/invoices", {"currency": currency, "overdue": "true"})
        late = sum((Decimal(i["amountOutstanding"]) for i in overdue), Decimal(0))
        expect(page.get_by_role("heading", name=re.compile(f"^{currency}:"))).to_contain_text(
            f"{display(late, currency)} overdue"
        )
        # The 90+ figure opens exactly the invoices it counts.
        ninety = row.locator("td[data-bucket='90+'] a")
        expected = ninety.inner_text()
        ninety.click()
        expect(page.get_by_test_id("totals")).to_contain_text(expected)
        page.go_back()
    shoot(page, "aging-report")

    # The customers owing most are listed in one currency at a time; the others link to theirs.
    listed = page.locator("section", has=page.get_by_test_id("aging-total-USD")).locator("tbody tr:not(.total-row)")
    if listed.count() == 0:
        page.get_by_role("link", name="The customers that owe most in USD").click()
    expect(listed.first).to_be_visible()
    owing = {i["customerId"] for i in _api_all(site, "/api/v1/invoices", {"status": "FINALIZED", "currency": "USD"})
             if Decimal(i["amountOutstanding"]) > 0}  # fmt: skip
    expect(listed).to_have_count(min(len(owing), 20))
    expect(page.get_by_role("link", name="The customers that owe most in USD")).to_have_count(0)

    # Each currency over time: the month under way ends at what the aging report says is owed.
    page.get_by_role("link", name="KWD over time, DSO and top debtors").click()
    owed = _api_all(site, "/api/v1/invoices", {"status": "FINALIZED", "currency": "KWD"})
    total = sum((Decimal(i["amountOutstanding"]) for i in owed), Decimal(0))
    expect(page.locator("#months tbody tr").first.locator("td").last).to_have_text(display(total, "KWD"))
    expect(page.locator("#owed-chart svg rect")).to_have_count(12)
    expect(page.get_by_test_id("dso")).to_contain_text("days")
    shoot(page, "receivables-over-time")


def test_every_list_fits_a_phone_and_shows_total_and_outstanding(
    browser: Browser, site: Site, a_busy_month: None
) -> None:
    phone = signed_in(browser, site.url, EMAIL, PASSWORD, width=390)
    pages = ["/", "/customers", "/invoices", "/payments", "/cash-applications", "/reports/aging", "/sync-runs"]
    for path in pages:
        phone.goto(path)
        overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at 390 px"
        shoot(phone, "phone" + (path.replace("/", "-") if path != "/" else "-overview"))
    phone.goto("/invoices")
    first = phone.locator("tbody tr").first
    for label in ("Total", "Outstanding"):
        cell = first.locator(f"td[data-label={label}]")
        expect(cell).to_be_visible()
        box = cell.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (label, box)
    phone.context.close()


# Last in this module: it connects the ERP, which the tests above do without. ---------------------


def test_a_brand_new_customer_is_invoiced_into_the_erp_by_linking_it_to_its_debtor(page: Page, site: Site) -> None:
    erp = MockErpState(MockErpData(debtors=4, invoices=1, payments=0, seed=11))
    with serve_in_thread(create_mock_erp_app(erp)) as mock_erp:
        connection = site.api.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url}).json()
        run = site.api.post(f"/api/v1/connections/{connection['id']}/sync").json()
        for _ in range(120):
            if site.api.get(f"/api/v1/sync-runs/{run['id']}").json()["status"] != "RUNNING":
                break
            time.sleep(0.25)
        debtor = site.api.get("/api/v1/customers", params={"erpDebtorId": "DEB-000003"}).json()["items"][0]
        invoice = _invoice(site, "Brand New Trading", "BRAND-1", "75.000")

        page.goto(f"/invoices/{invoice['id']}")
        expect(page.get_by_role("button", name="Dispatch to the ERP")).to_have_count(0)  # it could not succeed
        expect(page.locator("#dispatch-note")).to_contain_text("Brand New Trading is not in the ERP yet")
        expect(page.locator("#dispatch-note").get_by_role("button", name=re.compile("Create in"))).to_have_count(0)
        page.locator("#dispatch-note").get_by_role("link", name="Link to an ERP debtor").click()

        page.get_by_label("Debtor name or email").fill(debtor["name"])
        page.get_by_role("button", name="Find").click()
        asked: list[str] = []
        confirming(page, asked)
        page.get_by_role("row", name=re.compile(re.escape(debtor["name"]))).get_by_role(
            "button", name="Link to this debtor"
        ).click()
        expect(page.get_by_role("status").first).to_contain_text("Linked: the invoices are now")
        assert "is removed from arsync" in asked[0]
        shoot(page, "customer-linked-to-debtor")

        page.goto(f"/invoices/{invoice['id']}")
        page.get_by_role("button", name="Dispatch to the ERP").click()
        push_succeeded(page, 60)
        shoot(page, "brand-new-customer-invoice-in-erp")
        pushed = [p for p in erp.data._pushed_invoices if p["invoiceNumber"] == "BRAND-1"]
        assert [p["erpDebtorId"] for p in pushed] == ["DEB-000003"]
        site.api.delete(f"/api/v1/connections/{connection['id']}")
