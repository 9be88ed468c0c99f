"""The web UI in a real browser: Debian's chromium driven by Playwright, against a live server.

The server runs on loopback with an SQLite database, the in-process worker and two mock ERPs:
one healthy, one that refuses arsync's key (for the failed-sync page). Screenshots of the key
pages go to tests/e2e/screenshots/ (ignored by git).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect
from standardwebhooks.webhooks import Webhook

from arsync.accounts import service as accounts
from arsync.app import create_app
from arsync.bootstrap import Container, bootstrap
from arsync.db import transaction
from arsync.mocks.erp import MockErpState, create_mock_erp_app
from arsync.mocks.erp_data import MockErpData
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.sandbox.checks import select_checks
from arsync.tenancy import service as tenancy
from tests.conftest import free_port, make_settings
from tests.e2e.chromium import push_succeeded, shoot
from tests.webhook_receiver import Receiver

EMAIL, PASSWORD = "ann@example.com", "ledger-and-coffee"


@dataclass
class Site:
    url: str
    container: Container
    tenant_id: str
    prod_id: str
    healthy_erp: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp("ui")
    container = bootstrap(make_settings(f"sqlite:///{data_dir / 'arsync.db'}", data_dir, push_backoff_seconds=0.05))
    healthy = MockErpState(MockErpData(debtors=30, invoices=80, payments=50, seed=5))
    refusing = MockErpState(MockErpData(debtors=5, invoices=5, payments=5, seed=6), token="ask_not_the_key_arsync_has")
    with (
        serve_in_thread(create_mock_erp_app(healthy)) as healthy_server,
        serve_in_thread(create_mock_erp_app(refusing)) as refusing_server,
    ):
        with transaction(container.session_factory) as session:
            created = tenancy.create_tenant(session, "Acme Trading", "prod")
            test_env = tenancy.ensure_environment(session, created.tenant_id, "test")
            accounts.create_user(session, created.tenant_id, EMAIL, PASSWORD)
        container.connections.save_rest(created.tenant_id, test_env.id, refusing_server.url, "090")
        server: RunningServer = serve_in_thread(create_app(container, background_jobs=True), lifespan="on")
        with server:
            yield Site(server.url, container, created.tenant_id, created.environment_id, healthy_server.url)
    container.close()


def _sign_in(page: Page, site: Site) -> None:
    page.goto(f"{site.url}/")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Overview")


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site.url)
    context.set_default_timeout(30_000)
    # Nothing may come from another origin: the UI and the API docs are served whole by arsync.
    elsewhere: list[str] = []

    def refuse(route: Route) -> None:
        elsewhere.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith(site.url), refuse)
    signed_in = context.new_page()
    refused: list[str] = []

    def blocked_here(text: str) -> bool:
        """A CSP block of something of our own (a script, style or inline handler we need)."""
        if "Content Security Policy" not in text:
            return False
        urls = re.findall(r"'(https?://[^']+)'", text)
        return not urls or any(u.startswith(site.url) for u in urls)  # blocks of other origins are wanted

    signed_in.on("console", lambda message: refused.append(message.text) if blocked_here(message.text) else None)
    _sign_in(signed_in, site)
    yield signed_in
    context.close()
    assert refused == [], "the Content-Security-Policy blocked something the page needs"
    assert elsewhere == [], "a page loaded something from another origin"


def _htmx_ready(page: Page) -> None:
    """Wait until htmx has taken over the page's forms: a click before that is a plain form post
    (the server then answers a full page, as it must for a browser without JavaScript)."""
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")


def test_the_api_docs_render_offline(page: Page) -> None:
    page.goto("/docs")
    expect(page.get_by_text("Accounts-receivable ledger synced with ERPs").first).to_be_visible()
    page.goto("/redoc")
    expect(page.get_by_text("Accounts-receivable ledger synced with ERPs").first).to_be_visible()


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()


def _connect_prod(site: Site) -> str:
    """The prod REST connection to the healthy mock (the UI test of saving it may not have run)."""
    connection, _ = site.container.connections.save_rest(site.tenant_id, site.prod_id, site.healthy_erp, "090")
    return site.container.connections.check_health(connection.id, scope=None).id


def test_sign_in_refuses_a_wrong_password_and_sets_a_safe_cookie(browser: Browser, site: Site):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{site.url}/invoices")
    expect(page).to_have_url(re.compile(r"/login\?next=/invoices$"))
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("The email or password is not right.")
    shoot(page, "sign-in")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{site.url}/invoices")
    session = next(c for c in context.cookies() if c["name"] == "arsync_session")
    assert session["httpOnly"] is True and session["sameSite"] == "Lax"
    assert page.evaluate("document.cookie").find("arsync_session") == -1
    context.close()


def test_save_rest_connection_then_sync_now_and_watch_it_finish(page: Page, site: Site):
    nav(page, "Settings")
    page.get_by_label("Middleware address (base URL)").fill(site.healthy_erp)
    page.get_by_label("Bank account code for payments").fill("090")
    page.get_by_role("button", name="Connect").click()
    key = page.locator("#new-key")
    expect(key).to_have_text(re.compile(r"^ask_\S{20,}$"))
    expect(page.locator("#health-result")).to_contain_text("The connection is active.")
    expect(page.get_by_role("button", name="Copy key")).to_be_visible()
    shoot(page, "settings-erp-key-once")
    shown_once = key.inner_text()
    page.goto("/settings/erp")
    assert shown_once not in page.content()
    expect(page.locator(".badge.b-ACTIVE").first).to_be_visible()

    nav(page, "Overview")
    toolbar = page.locator("#sync-toolbar")
    _htmx_ready(page)
    toolbar.get_by_role("button", name="Sync now").click()
    expect(toolbar).to_contain_text("records")  # live per-entity progress or the finished summary
    expect(toolbar).to_contain_text("Sync finished", timeout=60_000)
    # The page reads its figures again by itself; the toolbar keeps saying how the sync went.
    expect(page.locator(".stat").first).not_to_have_text("0")
    expect(toolbar).to_contain_text("Sync finished")
    shoot(page, "sync-finished")

    nav(page, "Sync history")
    expect(page.locator("figure.chart rect")).to_have_count(1)
    expect(page.locator("table").get_by_text("SUCCEEDED")).to_be_visible()
    shoot(page, "sync-history")

    nav(page, "Invoices")
    expect(page.locator("tbody tr")).to_have_count(25)
    page.get_by_label("Status").select_option("PAID")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("tbody .badge").first).to_have_text("PAID")
    shoot(page, "invoices")


def _choose_environment(page: Page, label: str) -> None:
    """The picker submits on change through app.js, a deferred script: a choice made before it
    runs changes the select and nothing else."""
    _htmx_ready(page)
    page.get_by_label("Environment").select_option(label=label)


def test_a_failed_sync_says_why_and_what_to_do(page: Page, site: Site):
    _choose_environment(page, "Acme Trading · test")
    expect(page.get_by_role("status").first).to_contain_text("You are now in the test environment.")
    toolbar = page.locator("#sync-toolbar")
    _htmx_ready(page)
    toolbar.get_by_role("button", name="Sync now").click()
    expect(toolbar).to_contain_text("Sync failed", timeout=60_000)
    toolbar.get_by_role("link", name="See the run").click()
    why = page.get_by_role("region", name="Why it failed")
    expect(why).to_contain_text("The ERP refused arsync's key.")
    expect(why).to_contain_text("calling /debtors/list page 1, HTTP 401, UNAUTHORIZED")
    expect(why.locator(".hint")).to_contain_text(
        re.compile("rotate the key or fix middleware config, then Sync now", re.I)
    )
    shoot(page, "sync-run-failed")
    nav(page, "Settings")
    expect(page.locator(".badge.b-FAILED").first).to_be_visible()
    expect(page.locator(".hint").first).to_contain_text("What to do")
    _choose_environment(page, "Acme Trading · prod")


def test_finalize_and_dispatch_an_invoice_and_see_the_push_succeed(page: Page, site: Site):
    connection_id = _connect_prod(site)
    if site.container.sync.run(connection_id).status != "SUCCEEDED":
        pytest.fail("the prod sync did not succeed")
    nav(page, "Customers")
    page.locator("tbody a").first.click()
    expect(page.get_by_role("heading", name="Integrations")).to_be_visible()
    page.get_by_role("link", name="New invoice for this customer").click()
    number = f"UI-{os.getpid()}"
    page.get_by_label("Invoice number").fill(number)
    page.get_by_label("Currency").select_option("KWD")
    page.get_by_label("Line 1 description").fill("Consulting hours")
    page.get_by_label("Line 1 quantity").fill("3")
    page.get_by_label("Line 1 unit price").fill("12.345")
    page.get_by_role("button", name="Create draft").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Invoice {number} DRAFT")
    expect(page.get_by_text("37.035 KWD").first).to_be_visible()

    page.get_by_role("button", name="Finalize").click()
    expect(page.get_by_role("status").first).to_have_text("Invoice finalized.")
    page.get_by_role("button", name="Dispatch to the ERP").click()
    expect(page.get_by_role("status").first).to_contain_text("Invoice dispatched")
    push_succeeded(page, 60)
    expect(page.get_by_text("ERP invoice id")).to_be_visible()
    assert "not in the ERP yet" not in page.locator(".card", has_text="ERP invoice id").inner_text()
    shoot(page, "invoice-pushed")

    page.get_by_label("Amount (KWD)").fill("10.000")
    page.get_by_label("Reference").fill("BANK-1")
    page.get_by_role("button", name="Record cash application").click()
    expect(page.get_by_role("status").first).to_contain_text("approve it to post the payment")
    nav(page, "Cash applications")
    row = page.locator("tbody tr", has_text="BANK-1")
    page.once("dialog", lambda dialog: dialog.accept())  # Approve asks first: it posts to the ERP
    row.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status").first).to_contain_text("Approved: payment")
    page.get_by_role("link", name=number).first.click()
    expect(page.get_by_text("27.035 KWD").first).to_be_visible()


def test_sandbox_page_runs_against_the_built_in_mock_and_everything_passes(page: Page, site: Site):
    page.goto("/sandbox?product=nudge&endpoint=invoices.push")
    page.get_by_role("button", name="Use built-in mock ERP").click()
    summary = page.locator("#sandbox-summary")
    expect(summary).to_contain_text("No blocking failures.", timeout=120_000)
    total = len(select_checks(None))
    expect(summary).to_contain_text(f"PASS {total} · FAIL 0 · WARN 0 · SKIP 0")
    group = page.locator("#group-invoices\\.push")
    assert group.get_attribute("open") is not None
    assert page.locator("#group-debtors\\.list").get_attribute("open") is None
    check = group.locator("details.check", has_text="invoices.push_retry")
    check.locator("summary").first.click()
    expect(check.get_by_text("POST /invoices/push").first).to_be_visible()
    shoot(page, "sandbox")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download JSON report").click()
    report = json.loads(Path(download.value.path()).read_text())
    assert report["summary"]["PASS"] == total and report["summary"]["mandatoryFailed"] == 0
    secret_key = site.container.settings.secret_key
    assert secret_key and secret_key not in json.dumps(report)
    with page.expect_download() as junit:
        page.get_by_role("link", name="Download JUnit report").click()
    assert "<testsuite" in Path(junit.value.path()).read_text()
    page.get_by_role("button", name="Share conformance badge").click()
    badge = page.get_by_role("img", name="Nudge contract badge for this run")
    expect(badge).to_be_visible()
    assert badge.evaluate("image => image.naturalWidth") > 0, "the badge SVG did not load"
    expect(page.locator("#history-title")).to_be_visible()
    shoot(page, "sandbox-shared")


def test_phone_width_and_keyboard_only(browser: Browser, site: Site):
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=site.url, is_mobile=True)
    page = context.new_page()
    page.goto("/login")
    assert page.evaluate("document.activeElement.id") == "email"  # the form starts focused
    page.keyboard.type(EMAIL)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Overview")
    for path, name in (("/", "phone-overview"), ("/invoices", "phone-invoices"), ("/sync-runs", "phone-history")):
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at phone width"
        shoot(page, name)
    page.goto("/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Sync now":
            break
    else:
        pytest.fail("Sync now cannot be reached with the keyboard")
    page.keyboard.press("Enter")
    expect(page.locator("#sync-toolbar")).to_contain_text("records", timeout=60_000)
    context.close()


def test_a_notification_endpoint_is_added_shows_its_secret_once_and_a_test_send_arrives_signed(
    page: Page, site: Site
) -> None:
    receiver = Receiver(free_port())
    with receiver.running():
        page.goto("/settings/notifications")
        expect(page.get_by_role("cell", name=re.compile("No endpoints yet"))).to_be_visible()
        page.get_by_label("Webhook URL or email address").fill(receiver.url)
        page.get_by_label("Description").fill("finance on-call")
        expect(page.locator("input[name=events][value='sync.succeeded']")).not_to_be_checked()
        page.get_by_role("button", name="Add endpoint").click()
        secret = page.locator("#created-secret").inner_text()
        assert secret.startswith("whsec_")
        page.goto("/settings/notifications")  # shown once: not on the next visit
        expect(page.locator("#created-secret")).to_have_count(0)
        assert secret not in page.content()
        page.get_by_role("button", name="Send a test").click()
        expect(page.get_by_role("status").first).to_contain_text("Test notification queued")
        for _ in range(40):
            if page.locator("table").last.locator(".badge.b-DELIVERED").count():
                break
            page.wait_for_timeout(250)
            page.reload()
        expect(page.locator("table").last.locator(".badge.b-DELIVERED")).to_be_visible()
        shoot(page, "settings-notifications")
    [request] = receiver.received
    event = Webhook(secret).verify(request.body, request.headers)
    assert event["type"] == "notification.test" and event["data"]["tenantId"] == site.tenant_id
    page.get_by_role("button", name="Remove").click()
    expect(page.get_by_role("status").first).to_contain_text("Endpoint removed")
