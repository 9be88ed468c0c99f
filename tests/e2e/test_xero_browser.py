"""A brand-new client invoiced into Xero from a real browser: connect Xero, create the customer
and its invoice in arsync, create the customer as a Xero contact, dispatch.

Debian's chromium driven by Playwright, against a live server on loopback (SQLite, the
in-process worker) and the mock Xero, whose consent page the browser clicks through.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from arsync.accounts import service as accounts
from arsync.app import create_app
from arsync.bootstrap import bootstrap
from arsync.db import transaction
from arsync.mocks.serving import serve_in_thread
from arsync.mocks.xero import MockXeroState, create_mock_xero_app, mock_xero_settings
from arsync.tenancy import service as tenancy
from tests.conftest import free_port, make_settings
from tests.e2e.chromium import confirming, push_succeeded, shoot, signed_in

EMAIL, PASSWORD = "ar@kiwi-wholesale.example", "contacts-before-invoices"


@dataclass
class Site:
    url: str
    xero: MockXeroState


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    xero = MockXeroState()
    xero.add_organisation("Demo Company (NZ)", contacts=5, invoices=10, payments=2)
    with serve_in_thread(create_mock_xero_app(xero)) as xero_server:
        port = free_port()
        values = {
            k.removeprefix("ARSYNC_").lower(): v for k, v in mock_xero_settings(xero_server.url, xero.config).items()
        }
        values["xero_redirect_uri"] = f"http://127.0.0.1:{port}/api/v1/connections/xero/callback"
        data_dir: Path = tmp_path_factory.mktemp("xero-ui")
        container = bootstrap(make_settings(f"sqlite:///{data_dir / 'arsync.db'}", data_dir,
                                            push_backoff_seconds=0.05, **values))  # fmt: skip
        with transaction(container.session_factory) as session:
            created = tenancy.create_tenant(session, "Kiwi Wholesale", "prod")
            accounts.create_user(session, created.tenant_id, EMAIL, PASSWORD)
        with serve_in_thread(create_app(container, background_jobs=True), port=port, lifespan="on") as server:
            yield Site(server.url, xero)
        container.close()


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    opened = signed_in(browser, site.url, EMAIL, PASSWORD)
    yield opened
    opened.context.close()


def test_a_brand_new_customer_is_created_in_xero_and_its_invoice_follows(page: Page, site: Site) -> None:
    # Connect Xero as a finance lead would: the settings page, Xero's consent, back to arsync.
    page.goto("/settings/erp")
    xero = page.get_by_role("region", name="Xero")
    xero.get_by_label("Bank account code for payments").fill("090")
    xero.get_by_role("button", name="Connect Xero").click()
    page.get_by_role("button", name="Allow access").click()
    expect(page.get_by_role("status").first).to_contain_text("Xero connected: Demo Company (NZ)")

    page.goto("/customers/new")
    page.get_by_label("Name").fill("Tui Brewing Co")
    page.get_by_label("Email").fill("accounts@tuibrewing.example")
    page.get_by_role("button", name="Create customer").click()
    expect(page.get_by_role("status").first).to_contain_text("Customer created.")
    customer_url = page.url

    # The invoice form says up front that this customer is not in the ERP yet.
    page.goto("/invoices/new")
    page.get_by_label("Find a customer").fill("Tui")
    option = page.locator("#customer_id option", has_text="Tui Brewing Co")
    expect(option).to_contain_text("not in the ERP yet")
    expect(page.locator("#erp-note")).to_contain_text("or created in Xero")
    page.get_by_label("Customer", exact=True).select_option(option.get_attribute("value"))
    page.get_by_label("Invoice number").fill("TUI-1")
    page.get_by_label("Currency").select_option("NZD")
    page.get_by_label("Line 1 description").fill("Hops, 40 kg")
    page.get_by_label("Line 1 quantity").fill("2")
    page.get_by_label("Line 1 unit price").fill("180.50")
    page.get_by_role("button", name="Create draft").click()
    page.get_by_role("button", name="Finalize").click()
    expect(page.get_by_role("status").first).to_contain_text("Invoice finalized.")

    # No Dispatch where it cannot succeed; the page offers what does.
    expect(page.get_by_role("button", name="Dispatch to the ERP")).to_have_count(0)
    note = page.locator("#dispatch-note")
    expect(note).to_contain_text("Tui Brewing Co is not in the ERP yet")
    shoot(page, "xero-invoice-waiting-for-its-contact")
    asked: list[str] = []
    confirming(page, asked)
    note.get_by_role("button", name="Create in Xero").click()
    expect(page.get_by_role("status").first).to_contain_text("Created in the ERP and linked")
    assert "Create Tui Brewing Co as a new contact in Xero?" in asked[0]

    page.get_by_role("button", name="Dispatch to the ERP").click()
    push_succeeded(page, 80)
    shoot(page, "xero-invoice-of-a-new-contact-in-xero")

    org = next(iter(site.xero.organisations.values()))
    contacts = [c for c in org.contacts.values() if c["Name"] == "Tui Brewing Co"]
    assert len(contacts) == 1 and contacts[0]["EmailAddress"] == "accounts@tuibrewing.example"
    sent = [i for i in org.invoices.values() if i["InvoiceNumber"] == "TUI-1"]
    assert len(sent) == 1 and sent[0]["Contact"]["ContactID"] == contacts[0]["ContactID"]
    assert str(sent[0]["Total"]) == "361.00" and sent[0]["CurrencyCode"] == "NZD"
    page.goto(customer_url)
    expect(page.get_by_text(contacts[0]["ContactID"])).to_be_visible()
    expect(page.locator("#link-debtor")).to_have_count(0)
