"""The web UI over loopback HTTP, on SQLite and PostgreSQL: sign-in, sessions, CSRF, isolation, secrets."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from arsync.accounts import service as accounts
from arsync.accounts.models import UiSession, User
from arsync.bootstrap import Container
from arsync.db import transaction, utcnow
from arsync.erp.models import Connection, SyncRun
from arsync.ledger.models import Invoice
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.nomod import signing
from arsync.nomod.models import NomodConnection
from arsync.tenancy import service as tenancy
from tests.api.conftest import PASSWORD, Browser, Tenant, create_ui_user, login_token, sign_in
from tests.conftest import MockErp
from tests.factories import link_to_erp
from tests.polling import eventually


@pytest.fixture
def alice_ui(container: Container, api_server: RunningServer, alice: Tenant) -> Iterator[Browser]:
    create_ui_user(container, alice, "alice@example.com")
    browser = sign_in(api_server, "alice@example.com")
    yield browser
    browser.client.close()


def _settled(client: httpx.Client, path: str, busy: str) -> Callable[[], str | None]:
    """A probe for :func:`eventually`: the page at ``path`` once it no longer shows ``busy``."""

    def probe() -> str | None:
        text = client.get(path).text
        return None if busy in text else text

    return probe


def test_password_is_an_argon2_hash_and_session_cookie_is_httponly_samesite(
    container: Container, api_server: RunningServer, alice: Tenant
):
    create_ui_user(container, alice, "Alice@Example.com")
    with container.session_factory() as session:
        user = session.scalars(select(User)).one()
    assert user.email == "alice@example.com"
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash

    client = httpx.Client(base_url=api_server.url, timeout=30)
    token = login_token(client)
    wrong = client.post("/login", data={"email": "alice@example.com", "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401 and "The email or password is not right." in wrong.text
    assert "arsync_session" not in wrong.headers.get("set-cookie", "")

    token = login_token(client)
    right = client.post("/login", data={"email": "ALICE@example.com", "password": PASSWORD, "csrf_token": token})
    assert right.status_code == 303
    cookie = next(c for c in right.headers.get_list("set-cookie") if c.startswith("arsync_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    with container.session_factory() as session:
        stored = session.scalars(select(UiSession)).one()
    assert value not in stored.token_hash and len(stored.token_hash) == 64
    assert stored.environment_id == alice.environment_id


def _attempt(client: httpx.Client, email: str, password: str) -> httpx.Response:
    return client.post("/login", data={"email": email, "password": password, "csrf_token": login_token(client)})


def test_wrong_passwords_lock_the_guesser_out_and_never_the_owner(
    container: Container, api_server: RunningServer, alice: Tenant
):
    create_ui_user(container, alice, "alice@example.com")
    create_ui_user(container, alice, "carol@example.com")
    owner = httpx.Client(base_url=api_server.url, timeout=30)
    assert _attempt(owner, "alice@example.com", PASSWORD).status_code == 303  # the owner's browser, now trusted
    assert accounts.DEVICE_COOKIE in owner.cookies

    guesser = httpx.Client(base_url=api_server.url, timeout=30)
    limit = accounts.FAILURE_LIMITS["pair"]
    for _ in range(limit - 1):
        assert _attempt(guesser, "alice@example.com", "wrong password").status_code == 401
    # A right password before the limit still signs in, and forgets that pair's failures.
    assert _attempt(guesser, "alice@example.com", PASSWORD).status_code == 303
    guesser.cookies.clear()
    for _ in range(limit):
        assert _attempt(guesser, "Alice@example.com ", "wrong password").status_code == 401
    locked = _attempt(guesser, "alice@example.com", PASSWORD)
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
    assert 0 < int(locked.headers["retry-after"]) <= accounts.LOCK_DURATION.total_seconds()
    assert "arsync_session=" not in locked.headers.get("set-cookie", "")

    # The owner's browser, which signed in before, is not locked out by the guesser.
    assert _attempt(owner, "alice@example.com", PASSWORD).status_code == 303
    # Nor is another user from the same address.
    assert _attempt(guesser, "carol@example.com", PASSWORD).status_code == 303
    guesser.cookies.clear()
    # An unknown email is counted the same way, so a lock does not tell which emails exist.
    for _ in range(limit):
        assert _attempt(guesser, "nobody@example.com", "wrong password").status_code == 401
    assert _attempt(guesser, "nobody@example.com", "wrong password").status_code == 429
    # A device cookie forged or made for another email is no device at all.
    forged = httpx.Client(base_url=api_server.url, timeout=30, cookies={accounts.DEVICE_COOKIE: "x.y"})
    assert _attempt(forged, "alice@example.com", PASSWORD).status_code == 429

    with transaction(container.session_factory) as session:
        accounts.set_password(session, "alice@example.com", PASSWORD + "!")
    assert _attempt(guesser, "alice@example.com", PASSWORD + "!").status_code == 303
    for client in (owner, guesser, forged):
        client.close()


def test_guesses_from_many_addresses_lock_only_untrusted_browsers(container: Container, alice: Tenant):
    """A botnet spreading guesses over addresses reaches the email's untrusted limit; the
    owner's device still counts on its own."""
    secret = container.settings.resolved_secret_key
    device = accounts.device_cookie(secret, "a@example.com")
    assert accounts.trusted_device(secret, "a@example.com", device) == device
    assert accounts.trusted_device(secret, "b@example.com", device) is None
    start = utcnow()
    with transaction(container.session_factory) as session:
        for n in range(accounts.FAILURE_LIMITS["untrusted"]):
            accounts.record_failure(session, accounts.throttle_subjects("a@example.com", f"10.1.0.{n}"), now=start)
        fresh_address = accounts.throttle_subjects("a@example.com", "10.9.9.9")
        assert accounts.locked_until(session, fresh_address, now=start) == start + accounts.LOCK_DURATION
        owner = accounts.throttle_subjects("a@example.com", "10.9.9.9", device)
        assert accounts.locked_until(session, owner, now=start) is None


def test_failures_from_one_address_lock_that_address(container: Container, alice: Tenant):
    subjects = accounts.throttle_subjects("a@example.com", "10.0.0.7")
    start = utcnow()
    with transaction(container.session_factory) as session:
        for n in range(accounts.FAILURE_LIMITS["address"]):
            email_subjects = accounts.throttle_subjects(f"user{n}@example.com", "10.0.0.7")
            accounts.record_failure(session, email_subjects, now=start)
        assert accounts.locked_until(session, subjects, now=start) == start + accounts.LOCK_DURATION
        assert (
            accounts.locked_until(session, accounts.throttle_subjects("a@example.com", "10.0.0.8"), now=start) is None
        )
        # The lock ends on its own.
        later = start + accounts.LOCK_DURATION + accounts.THROTTLE_WINDOW
        assert accounts.locked_until(session, subjects, now=later) is None
    with transaction(container.session_factory) as session:
        # Failures spread wider than the window never add up to a lock.
        step = accounts.THROTTLE_WINDOW + timedelta(seconds=1)
        for n in range(accounts.FAILURE_LIMITS["pair"] * 2):
            accounts.record_failure(session, subjects, now=later + n * step)
            assert accounts.locked_until(session, subjects, now=later + n * step) is None


def test_login_form_needs_its_own_csrf_cookie(container: Container, api_server: RunningServer, alice: Tenant):
    create_ui_user(container, alice, "alice@example.com")
    forged = httpx.post(
        f"{api_server.url}/login",
        data={"email": "alice@example.com", "password": PASSWORD, "csrf_token": "guess"},
    )
    assert forged.status_code == 401 and "expired" in forged.text
    assert "arsync_session" not in forged.headers.get("set-cookie", "")


def test_pages_need_sign_in_and_forms_need_the_csrf_token(api_server: RunningServer, alice_ui: Browser):
    anonymous = httpx.get(f"{api_server.url}/invoices?status=DRAFT")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=/invoices?status=DRAFT"
    polled = httpx.get(f"{api_server.url}/ui/sync-toolbar", headers={"HX-Request": "true"})
    assert polled.headers.get("hx-redirect") == "/login"

    without = alice_ui.client.post("/settings/erp/rest", data={"base_url": "http://127.0.0.1:9"})
    assert without.status_code == 403 and "form has expired" in without.text
    forged = alice_ui.client.post("/settings/erp/rest", data={"base_url": "http://127.0.0.1:9", "csrf_token": "x"})
    assert forged.status_code == 403
    header = alice_ui.client.post(
        "/settings/nomod", data={"api_key": "sk_test_abcdefgh"}, headers={"X-CSRF-Token": alice_ui.csrf}
    )
    assert header.status_code == 303


def test_rest_key_is_shown_once_and_never_again(
    container: Container, alice_ui: Browser, alice: Tenant, mock_erp: MockErp
):
    saved = alice_ui.client.post(
        "/settings/erp/rest", data={"csrf_token": alice_ui.csrf, "base_url": mock_erp.url, "bank_account_code": "090"}
    )
    assert saved.status_code == 200 and saved.headers["cache-control"] == "no-store"
    key = re.search(r'id="new-key" class="secret">(ask_[^<]+)<', saved.text)
    assert key, saved.text
    assert "the ERP answered. The connection is active." in saved.text
    with container.session_factory() as session:
        connection = session.scalars(select(Connection)).one()
    assert container.vault.decrypt(connection.secret_encrypted) == key.group(1)

    again = alice_ui.client.get("/settings/erp")
    assert key.group(1) not in again.text and connection.secret_hint in again.text

    rotated = alice_ui.client.post(f"/settings/erp/{connection.id}/rotate-key", data={"csrf_token": alice_ui.csrf})
    new_key = re.search(r'id="new-key" class="secret">(ask_[^<]+)<', rotated.text)
    assert new_key and new_key.group(1) != key.group(1) and "The old key no longer works." in rotated.text


def test_another_tenants_user_sees_none_of_its_records(
    container: Container, api_server: RunningServer, alice: Tenant, bob: Tenant, mock_erp: MockErp
):
    saved, _ = container.connections.save_rest(alice.tenant_id, alice.environment_id, mock_erp.url, "090")
    run = container.sync.run(saved.id)
    assert run.status == "SUCCEEDED"
    invoice = alice.client.get("/api/v1/invoices", params={"limit": 1}).json()["items"][0]
    customer_id = invoice["customerId"]
    create_ui_user(container, bob, "bob@example.com")
    browser = sign_in(api_server, "bob@example.com")
    for path in (f"/invoices/{invoice['id']}", f"/customers/{customer_id}", f"/sync-runs/{run.id}"):
        page = browser.client.get(path)
        assert page.status_code == 404, path
        assert invoice["invoiceNumber"] not in page.text
    listed = browser.client.get("/invoices")
    assert invoice["invoiceNumber"] not in listed.text and "No invoices here." in listed.text
    acted = browser.client.post(
        f"/invoices/{invoice['id']}/void", data={"csrf_token": browser.csrf}, headers={"referer": "/invoices"}
    )
    assert acted.status_code == 303
    assert alice.client.get(f"/api/v1/invoices/{invoice['id']}").json()["status"] == invoice["status"]
    switched = browser.client.post(
        "/environment", data={"csrf_token": browser.csrf, "environment_id": alice.environment_id}
    )
    assert switched.status_code == 303
    with container.session_factory() as session:
        environments = {s.environment_id for s in session.scalars(select(UiSession))}
    assert alice.environment_id not in environments
    started = browser.client.post("/ui/sync-now", data={"csrf_token": browser.csrf, "connection_id": saved.id})
    assert started.status_code == 303
    assert len(alice.client.get("/api/v1/sync-runs").json()["items"]) == 1


def test_environment_picker_and_sign_out(container: Container, api_server: RunningServer, alice: Tenant):
    with transaction(container.session_factory) as session:
        test_env = tenancy.ensure_environment(session, alice.tenant_id, "test").id
    create_ui_user(container, alice, "alice@example.com")
    browser = sign_in(api_server, "alice@example.com")
    assert browser.client.get("/").text.count("<option") == 2
    switched = browser.client.post("/environment", data={"csrf_token": browser.csrf, "environment_id": test_env})
    assert switched.status_code == 303
    assert "Overview · alice (test)" in browser.client.get("/").text

    out = browser.client.post("/logout", data={"csrf_token": browser.csrf})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    with container.session_factory() as session:
        assert session.scalars(select(UiSession)).all() == []
    assert browser.client.get("/").status_code == 303


def test_sync_now_from_the_toolbar_reports_progress_then_the_outcome(alice_ui: Browser, container, alice, mock_erp):
    saved, _ = container.connections.save_rest(alice.tenant_id, alice.environment_id, mock_erp.url, "090")
    started = alice_ui.client.post(
        "/ui/sync-now", data={"csrf_token": alice_ui.csrf, "connection_id": saved.id}, headers={"HX-Request": "true"}
    )
    assert started.status_code == 200 and 'id="sync-toolbar"' in started.text
    watching = re.search(r"watching=(run_\w+)", started.text)
    toolbar = started.text
    if watching:
        toolbar = eventually(
            _settled(alice_ui.client, f"/ui/sync-toolbar?watching={watching.group(1)}", 'hx-trigger="every 1s"'),
            "the sync to finish",
            interval=0.2,
        )
    assert "Sync finished" in toolbar or "Last sync:" in toolbar
    runs = alice_ui.client.get("/sync-runs")
    assert runs.status_code == 200 and "<svg" in runs.text and "SUCCEEDED" in runs.text
    # The invoice list keeps the ERP's own status apart from arsync's pushes.
    listed = alice_ui.client.get("/invoices").text
    assert '<th class="hide-narrow" title="The ERP\'s own status of the invoice' in listed
    assert re.search(r'<span title="The ERP\'s own status">status \w+</span>', listed)

    # Full sync, offered next to Sync now, reads everything again rather than what changed since.
    assert 'name="full" value="true"' in toolbar and ">Full sync</button>" in toolbar
    full = alice_ui.client.post("/ui/sync-now", data={"csrf_token": alice_ui.csrf, "connection_id": saved.id,
                                                      "full": "true"})  # fmt: skip
    assert full.status_code == 303
    with container.session_factory() as session:
        latest = session.scalars(select(SyncRun).order_by(SyncRun.started_at.desc())).first()
    assert latest is not None and latest.modified_since is None


def test_reconcile_from_the_toolbar_shows_ledger_against_the_erp(
    alice_ui: Browser, container: Container, alice: Tenant, mock_erp: MockErp
):
    saved, _ = container.connections.save_rest(alice.tenant_id, alice.environment_id, mock_erp.url, "090")
    assert container.sync.run(saved.id).status == "SUCCEEDED"
    mock_erp.data.delete("invoices", [4])
    toolbar = alice_ui.client.get("/ui/sync-toolbar").text
    assert 'name="kind" value="reconcile"' in toolbar and ">Reconcile</button>" in toolbar
    started = alice_ui.client.post("/ui/sync-now", data={"csrf_token": alice_ui.csrf, "connection_id": saved.id,
                                                         "kind": "reconcile"})  # fmt: skip
    assert started.status_code == 303
    run_page = started.headers["location"].split("?")[0]
    page = eventually(_settled(alice_ui.client, run_page, 'hx-trigger="every 1s"'), "the reconciliation", interval=0.2)
    assert "<h1>Reconciliation" in page and "Ledger against the ERP" in page
    assert "<strong>Ledger equals ERP</strong>" in page
    assert "gone from the ERP, kept here for audit and no longer owed: <code>INV-0000005</code>" in page
    row = re.search(r"<td>Invoices</td>\s*((?:<td class=\"num\">[\d,]+</td>)+)</tr>", page)
    assert row is not None and re.findall(r">([\d,]+)<", row.group(1)) == ["229", "230", "229", "1", "0", "0"]
    assert "ZAR outstanding" in page and "≠" not in page


def test_a_runs_counts_say_what_they_count(alice_ui: Browser, container: Container, alice: Tenant, mock_erp: MockErp):
    saved, _ = container.connections.save_rest(alice.tenant_id, alice.environment_id, mock_erp.url, "090")
    counts = {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0, "pages": 1, "records": 0}
    stats = {
        "debtors": counts | {"records": 300, "created": 360, "inferred": 60},
        "invoices": counts | {"records": 40, "created": 40},
        "payments": counts | {"records": 9, "created": 12, "applied_late": 3, "skipped": 2},
    }
    with transaction(container.session_factory) as session:
        run = SyncRun(connection_id=saved.id, tenant_id=alice.tenant_id, environment_id=alice.environment_id,
                      trigger="manual", status="SUCCEEDED", finished_at=utcnow(), stats=stats)  # fmt: skip
        session.add(run)
        session.flush()
        run_id = run.id
    page = alice_ui.client.get(f"/sync-runs/{run_id}").text
    assert '<th class="num">Fetched</th>' in page
    assert '360 <span class="muted">(incl. 60 named by invoices)</span>' in page
    assert '12 <span class="muted">(incl. 3 waiting since an earlier run)</span>' in page
    assert "New debtors can outnumber those fetched" in page


def test_nomod_settings_mask_the_key_and_keep_it_when_left_empty(container: Container, alice_ui: Browser, alice):
    key = "sk_test_secret_0123456789"
    saved = alice_ui.client.post(
        "/settings/nomod",
        data={"csrf_token": alice_ui.csrf, "api_key": key, "invoice_sync_outbound": "true"},
        follow_redirects=True,
    )
    assert "Invoice sync to Nomod is on." in saved.text
    assert key not in saved.text and "sk_…6789" in saved.text
    assert 'name="invoice_sync_outbound" value="true" checked' in saved.text

    kept = alice_ui.client.post(
        "/settings/nomod", data={"csrf_token": alice_ui.csrf, "api_key": ""}, follow_redirects=True
    )
    assert "Invoice sync to Nomod is off." in kept.text
    with container.session_factory() as session:
        stored = session.scalars(select(NomodConnection)).one()
    assert container.vault.decrypt(stored.api_key_encrypted) == key and not stored.invoice_sync_outbound

    refused = alice_ui.client.post("/settings/nomod", data={"csrf_token": alice_ui.csrf, "api_key": "pk_live_x"})
    assert refused.status_code == 400 and "Nomod API key: apiKey must be a Nomod secret key" in refused.text


def test_nomod_setup_is_finished_in_the_ui_with_the_webhook_url_and_secret(
    container: Container, alice_ui: Browser, alice: Tenant
):
    key, secret = "sk_test_secret_0123456789", signing.new_secret()
    first = alice_ui.client.post(
        "/settings/nomod", data={"csrf_token": alice_ui.csrf, "api_key": key}, follow_redirects=True
    )
    url = f"/api/v1/webhooks/nomod/{alice.tenant_id}/{alice.environment_id}"
    assert re.search(rf'id="webhook-url" class="secret">http://127\.0\.0\.1:\d+{url}<', first.text)
    assert "payments cannot arrive until the webhook secret is set" in first.text
    saved = alice_ui.client.post(
        "/settings/nomod",
        data={"csrf_token": alice_ui.csrf, "api_key": "", "webhook_secret": secret},
        follow_redirects=True,
    )
    assert secret not in saved.text and "payments cannot arrive" not in saved.text
    with container.session_factory() as session:
        stored = session.scalars(select(NomodConnection)).one()
    assert stored.webhook_secret_encrypted and container.vault.decrypt(stored.webhook_secret_encrypted) == secret
    # Saved again with the field empty, the secret stays.
    alice_ui.client.post("/settings/nomod", data={"csrf_token": alice_ui.csrf, "api_key": ""})
    with container.session_factory() as session:
        kept = session.scalars(select(NomodConnection)).one()
    assert container.vault.decrypt(kept.webhook_secret_encrypted or "") == secret


def test_customers_are_created_and_edited_from_the_ui(alice_ui: Browser, alice: Tenant, bob: Tenant):
    form = alice_ui.client.get("/customers/new")
    assert form.status_code == 200 and "<h1>New customer</h1>" in form.text

    bad = alice_ui.client.post(
        "/customers", data={"csrf_token": alice_ui.csrf, "name": "Ann", "email": "ann.example.com"}
    )
    assert bad.status_code == 400 and "Please check the form. email:" in bad.text
    assert 'value="ann.example.com"' in bad.text  # what was typed stays in the form
    assert alice.client.get("/api/v1/customers").json()["items"] == []

    made = alice_ui.client.post(
        "/customers",
        data={"csrf_token": alice_ui.csrf, "name": " Ada Lovelace ", "email": "ada@example.com", "phone": ""},
        follow_redirects=True,
    )
    assert made.status_code == 200 and "Customer created." in made.text and "<h1>Ada Lovelace</h1>" in made.text
    (created,) = alice.client.get("/api/v1/customers").json()["items"]
    assert (created["name"], created["email"], created["phone"]) == ("Ada Lovelace", "ada@example.com", None)

    edit = alice_ui.client.get(f"/customers/{created['id']}/edit")
    assert edit.status_code == 200 and 'value="ada@example.com"' in edit.text
    saved = alice_ui.client.post(
        f"/customers/{created['id']}/edit",
        data={"csrf_token": alice_ui.csrf, "name": "Ada King", "email": "", "phone": "+44 20 7946 0000"},
        follow_redirects=True,
    )
    assert "Customer saved." in saved.text
    after = alice.client.get(f"/api/v1/customers/{created['id']}").json()
    assert (after["name"], after["email"], after["phone"]) == ("Ada King", None, "+44 20 7946 0000")

    unnamed = alice_ui.client.post(
        f"/customers/{created['id']}/edit", data={"csrf_token": alice_ui.csrf, "name": "", "email": "a@example.com"}
    )
    assert unnamed.status_code == 400 and "name:" in unnamed.text
    assert alice.client.get(f"/api/v1/customers/{created['id']}").json()["name"] == "Ada King"

    # Another tenant's customer cannot be read or changed from here.
    theirs = bob.client.post("/api/v1/customers", json={"name": "Bob's client"}).json()
    assert alice_ui.client.get(f"/customers/{theirs['id']}/edit").status_code == 404
    stolen = alice_ui.client.post(f"/customers/{theirs['id']}/edit", data={"csrf_token": alice_ui.csrf, "name": "X"})
    assert stolen.status_code == 400 and "It may have been deleted" in stolen.text
    assert bob.client.get(f"/api/v1/customers/{theirs['id']}").json()["name"] == "Bob's client"


def test_sandbox_runs_refuse_addresses_arsync_does_not_call(alice_ui: Browser, container: Container):
    refused = alice_ui.client.post(
        "/sandbox/runs",
        data={"csrf_token": alice_ui.csrf, "base_url": "http://169.254.169.254/latest", "token": "t"},
        follow_redirects=True,
    )
    assert "169.254.169.254: a link-local" in refused.text and "run=" not in str(refused.url)
    with container.outbound.private_addresses(allowed=False):
        private = alice_ui.client.post(
            "/sandbox/runs",
            data={"csrf_token": alice_ui.csrf, "base_url": "http://127.0.0.1:9", "token": "t"},
            follow_redirects=True,
        )
        assert "ARSYNC_OUTBOUND_ALLOW_PRIVATE is off" in private.text and "run=" not in str(private.url)
        builtin = alice_ui.client.post(
            "/sandbox/runs", data={"csrf_token": alice_ui.csrf, "builtin": "true"}, follow_redirects=False
        )
        assert builtin.status_code == 303 and "run=" in builtin.headers["location"]  # arsync's own mock is fine


def test_the_built_in_sandbox_target_never_comes_from_the_host_header(
    alice_ui: Browser, api_server: RunningServer, container: Container
):
    """A forged Host once pointed the built-in run at any loopback port or the metadata address."""
    calls: list[str] = []
    listener = FastAPI()

    @listener.post("/{path:path}")
    async def record(path: str) -> dict[str, str]:
        calls.append(path)
        return {}

    with serve_in_thread(listener) as bait, container.outbound.private_addresses(allowed=False):
        for forged in (bait.url.removeprefix("http://"), "169.254.169.254"):
            started = alice_ui.client.post(
                "/sandbox/runs", data={"csrf_token": alice_ui.csrf, "builtin": "true"},
                headers={"Host": forged}, follow_redirects=False,
            )  # fmt: skip
            assert started.status_code == 303, started.text
            run_id = started.headers["location"].split("run=")[1].split("&")[0]
            panel = eventually(
                _settled(alice_ui.client, f"/sandbox/runs/{run_id}", "hx-trigger"),
                "the sandbox run to end",
                timeout=120,
                interval=0.2,
            )
            assert "No blocking failures." in panel and forged not in panel
    assert calls == []
    # The mock's control surface is not on the server at all.
    for path in ("/sandbox/mock-erp/_mock/state", "/sandbox/mock-erp/health"):
        assert httpx.get(api_server.url + path).status_code == 404


INVOICE_ACTIONS = {"finalize": "Finalize", "dispatch": "Dispatch to the ERP", "void": "Void"}


def _invoice_in(alice: Tenant, container: Container, state: str, number: str) -> str:
    customer_id = alice.client.post("/api/v1/customers", json={"name": f"Customer {number}"}).json()["id"]
    created = alice.client.post("/api/v1/invoices", json={
        "customerId": customer_id, "invoiceNumber": number, "issueDate": "2026-03-01", "dueDate": "2026-03-31",
        "currency": "USD", "lines": [{"description": "Work", "quantity": 1, "unitPrice": "100"}],
    }).json()  # fmt: skip
    invoice_id: str = created["id"]
    if state != "draft":
        assert alice.client.post(f"/api/v1/invoices/{invoice_id}/finalize").status_code == 200
    if state == "part-paid":
        application = alice.client.post("/api/v1/cash-applications", json={
            "invoiceId": invoice_id, "amount": "40", "date": "2026-03-10", "reference": "EFT",
        }).json()  # fmt: skip
        assert alice.client.post(f"/api/v1/cash-applications/{application['id']}/approve").status_code == 200
    if state == "dispatched":
        link_to_erp(container.session_factory, customer_id, f"DEB-{number}")
        assert alice.client.post(f"/api/v1/invoices/{invoice_id}/dispatch").status_code == 200
    if state in ("imported draft", "imported"):
        with transaction(container.session_factory) as session:  # as a sync would have stored it
            row = session.get(Invoice, invoice_id)
            assert row is not None
            row.erp_hash, row.erp_invoice_id = bytes(16), f"ERP-{number}"
    return invoice_id


@pytest.mark.parametrize("state", ["draft", "finalized", "part-paid", "dispatched", "imported draft", "imported"])
def test_the_invoice_page_offers_exactly_the_actions_the_ledger_accepts(
    container: Container, alice_ui: Browser, alice: Tenant, state: str
):
    """An imported invoice once offered Dispatch, which always answered 409 ERP_OWNED."""
    for action, label in INVOICE_ACTIONS.items():
        invoice_id = _invoice_in(alice, container, state, f"{state}-{action}".replace(" ", "-"))
        page = alice_ui.client.get(f"/invoices/{invoice_id}")
        assert page.status_code == 200, page.text[:300]
        offered = f">{label}</button>" in page.text
        listed = alice.client.get(f"/api/v1/invoices/{invoice_id}").json()["allowedActions"]
        accepted = alice.client.post(f"/api/v1/invoices/{invoice_id}/{action}")
        if (state, action) == ("dispatched", "dispatch"):
            # Not offered again; the API answers a repeat with the dispatched invoice (safe to retry).
            assert not offered and action not in listed and accepted.status_code == 200
            continue
        assert offered == (action in listed) == (accepted.status_code == 200), (state, action, accepted.text)


def test_the_invoice_form_picks_customers_lists_currencies_and_says_what_is_wrong_where(
    alice_ui: Browser, alice: Tenant, bob: Tenant
):
    acme = alice.client.post("/api/v1/customers", json={"name": "Acme Trading", "email": "ap@acme.example"}).json()
    alice.client.post("/api/v1/customers", json={"name": "Zeta Foods"})
    bob.client.post("/api/v1/customers", json={"name": "Acme of another tenant"})
    form = alice_ui.client.get("/invoices/new")
    assert '<option value="KWD" ' in form.text and "KWD · Kuwaiti Dinar" in form.text
    assert 'name="q"' in form.text and 'hx-get="/ui/customer-options"' in form.text
    found = alice_ui.client.get("/ui/customer-options", params={"q": "acme"})
    assert f'value="{acme["id"]}"' in found.text and "Acme Trading (ap@acme.example)" in found.text
    assert "another tenant" not in found.text and "Zeta" not in found.text
    assert "No customer matches" in alice_ui.client.get("/ui/customer-options", params={"q": "nobody"}).text

    lines = {f"line{n}_{field}": value for n in range(7) for field, value in
             (("description", f"Item {n}"), ("quantity", "2"), ("unit_price", "1.5"))}  # fmt: skip
    bad = alice_ui.client.post("/invoices", data={
        "csrf_token": alice_ui.csrf, "customer_id": acme["id"], "invoice_number": "F-1", "currency": "KWD",
        "issue_date": "2026-03-10", "due_date": "2026-03-01", **lines, "line4_quantity": "two",
    })  # fmt: skip
    assert bad.status_code == 400
    assert '<p class="field-error" id="line4_quantity-error">Must be a plain decimal below' in bad.text
    assert 'value="two"' in bad.text and 'value="Item 6"' in bad.text  # what was typed stays, all seven lines
    assert "^[A-Z]" not in bad.text
    fixed = alice_ui.client.post("/invoices", data={
        "csrf_token": alice_ui.csrf, "customer_id": acme["id"], "invoice_number": "F-1", "currency": "KWD",
        "issue_date": "2026-03-10", "due_date": "2026-03-01", **lines,
    })  # fmt: skip
    assert fixed.status_code == 400 and 'id="due_date-error">DueDate must not be before issueDate.' in fixed.text
    created = alice_ui.client.post("/invoices", data={
        "csrf_token": alice_ui.csrf, "customer_id": acme["id"], "invoice_number": "F-1", "currency": "KWD",
        "issue_date": "2026-03-01", "due_date": "2026-03-31", **lines,
    })  # fmt: skip
    assert created.status_code == 303
    invoice_id = created.headers["location"].split("?")[0].rsplit("/", 1)[1]
    invoice = alice.client.get(f"/api/v1/invoices/{invoice_id}").json()
    assert invoice["amountTotal"] == "21.000" and len(invoice["lines"]) == 7

    # A draft is edited in the same form: one line fewer, another number.
    edit = alice_ui.client.get(f"/invoices/{invoice_id}/edit")
    assert edit.status_code == 200 and 'value="Item 6"' in edit.text and "a draft keeps its customer" in edit.text
    fewer = {k: v for k, v in lines.items() if not k.startswith("line6_")}
    saved = alice_ui.client.post(f"/invoices/{invoice_id}/edit", data={
        "csrf_token": alice_ui.csrf, "invoice_number": "F-1b", "currency": "KWD", "issue_date": "2026-03-01",
        "due_date": "2026-03-31", **fewer,
    })  # fmt: skip
    assert saved.status_code == 303
    edited = alice.client.get(f"/api/v1/invoices/{invoice_id}").json()
    assert (edited["invoiceNumber"], edited["amountTotal"], len(edited["lines"])) == ("F-1b", "18.000", 6)
    alice.client.post(f"/api/v1/invoices/{invoice_id}/finalize")
    refused = alice_ui.client.get(f"/invoices/{invoice_id}/edit", follow_redirects=True)
    assert (
        refused.url.path == f"/invoices/{invoice_id}" and "Only a draft made in arsync can be edited." in refused.text
    )


def test_the_trend_page_draws_owed_by_month_with_axes_dso_and_top_debtors(alice_ui: Browser, alice: Tenant):
    empty = alice_ui.client.get("/reports/trend")
    assert empty.status_code == 200 and "Nothing is owed" in empty.text
    customer_id = alice.client.post("/api/v1/customers", json={"name": "Trend Buyer"}).json()["id"]
    today = date.today()
    created = alice.client.post("/api/v1/invoices", json={
        "customerId": customer_id, "invoiceNumber": "TR-1", "issueDate": (today - timedelta(days=40)).isoformat(),
        "dueDate": today.isoformat(), "currency": "EUR",
        "lines": [{"description": "Work", "quantity": 1, "unitPrice": "1800"}],
    }).json()  # fmt: skip
    assert alice.client.post(f"/api/v1/invoices/{created['id']}/finalize").status_code == 200

    page = alice_ui.client.get("/reports/trend", params={"currency": "eur"})
    assert page.status_code == 200
    html = page.text
    assert 'data-testid="dso">90.0 days<' in html  # all of it owed, invoiced within the 90 days
    assert html.count('class="tick"') >= 10 and "<svg" in html  # both charts have axis labels
    assert html.count('<tr><td data-label="Month">') == 12 and "1,800.00 EUR" in html
    assert ">Trend Buyer</a>: 1,800.00 EUR" in html
    unknown = alice_ui.client.get("/reports/trend", params={"currency": "XYZ"})
    assert unknown.status_code == 200 and '<option value="EUR" selected>' in unknown.text  # falls back to one owed


def test_a_failed_payment_push_shows_why_on_its_invoice_and_can_be_sent_again(
    alice_ui: Browser, alice: Tenant, container: Container, mock_erp: MockErp
):
    assert alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url}).status_code == 200
    customer_id = alice.client.post("/api/v1/customers", json={"name": "Refused Payments Ltd"}).json()["id"]
    link_to_erp(container.session_factory, customer_id, "DEB-000001")
    invoice = alice.client.post("/api/v1/invoices", json={
        "customerId": customer_id, "invoiceNumber": "PAY-FAIL-1", "issueDate": "2026-03-01",
        "dueDate": "2026-03-31", "currency": "USD", "lines": [{"description": "Work", "quantity": 1, "unitPrice": 90}],
    }).json()  # fmt: skip
    alice.client.post(f"/api/v1/invoices/{invoice['id']}/finalize")
    with transaction(container.session_factory) as session:  # in the ERP by an id the ERP no longer knows
        row = session.get(Invoice, invoice["id"])
        assert row is not None
        row.erp_invoice_id = "INV-DELETED-IN-THE-ERP"
    application = alice.client.post("/api/v1/cash-applications", json={
        "invoiceId": invoice["id"], "amount": "90", "date": "2026-03-05", "reference": "EFT 7",
    }).json()  # fmt: skip
    assert alice.client.post(f"/api/v1/cash-applications/{application['id']}/approve").status_code == 200
    payment = eventually(
        lambda: next((p for p in alice.client.get("/api/v1/payments", params={"invoiceId": invoice["id"]}).json()[
            "items"] if p["push"] and p["push"]["status"] == "FAILED"), None),
        "the payment push to fail",
    )  # fmt: skip

    page = alice_ui.client.get(f"/invoices/{invoice['id']}").text
    assert f'id="payment-{payment["id"]}-failure"' in page and "The ERP did not accept" not in page
    assert payment["push"]["lastError"]["message"].split(":")[0] in page  # the ERP's own words
    assert ">Send the payment again</button>" in page
    again = alice_ui.client.post(
        f"/invoices/{invoice['id']}/payments/{payment['id']}/retry-push", data={"csrf_token": alice_ui.csrf}
    )
    assert again.status_code == 303
    shown = alice_ui.client.get(f"/invoices/{invoice['id']}").text
    assert "Sending the payment to the ERP again." in shown
    push = alice.client.get(f"/api/v1/pushes/{payment['push']['id']}").json()
    assert push["manualRetries"] == 1


def test_a_payment_waiting_for_its_invoice_says_so_without_a_retry_that_cannot_help(
    alice_ui: Browser, alice: Tenant, mock_erp: MockErp
):
    assert alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url}).status_code == 200
    customer_id = alice.client.post("/api/v1/customers", json={"name": "Cash Before ERP"}).json()["id"]
    invoice = alice.client.post("/api/v1/invoices", json={
        "customerId": customer_id, "invoiceNumber": "PAY-WAIT-1", "issueDate": "2026-03-01",
        "dueDate": "2026-03-31", "currency": "USD", "lines": [{"description": "Work", "quantity": 1, "unitPrice": 90}],
    }).json()  # fmt: skip
    alice.client.post(f"/api/v1/invoices/{invoice['id']}/finalize")
    application = alice.client.post("/api/v1/cash-applications", json={
        "invoiceId": invoice["id"], "amount": "90", "date": "2026-03-05", "reference": "EFT 8",
    }).json()  # fmt: skip
    alice.client.post(f"/api/v1/cash-applications/{application['id']}/approve")
    eventually(
        lambda: next((p for p in alice.client.get("/api/v1/payments", params={"invoiceId": invoice["id"]}).json()[
            "items"] if p["push"] and p["push"]["status"] == "FAILED"), None),
        "the payment push to wait",
    )  # fmt: skip
    page = alice_ui.client.get(f"/invoices/{invoice['id']}").text
    assert "is not in the ERP yet" in page and "sent again by itself" in page
    assert ">Send the payment again</button>" not in page


def test_a_customer_statement_ages_what_is_owed_and_lists_recent_payments(alice_ui: Browser, alice: Tenant):
    customer_id = alice.client.post("/api/v1/customers", json={"name": "Statement Ltd"}).json()["id"]
    today = date.today()
    ids = []
    for number, due_days_ago, amount in (("ST-1", 45, "200.00"), ("ST-2", -10, "50.00")):
        due = today - timedelta(days=due_days_ago)
        created = alice.client.post("/api/v1/invoices", json={
            "customerId": customer_id, "invoiceNumber": number, "issueDate": (due - timedelta(days=30)).isoformat(),
            "dueDate": due.isoformat(), "currency": "GBP",
            "lines": [{"description": "Work", "quantity": 1, "unitPrice": amount}],
        }).json()  # fmt: skip
        alice.client.post(f"/api/v1/invoices/{created['id']}/finalize")
        ids.append(created["id"])
    cash = alice.client.post("/api/v1/cash-applications", json={
        "invoiceId": ids[0], "amount": "80.00", "date": today.isoformat(), "reference": "part"}).json()  # fmt: skip
    assert alice.client.post(f"/api/v1/cash-applications/{cash['id']}/approve").status_code == 200

    customer_page = alice_ui.client.get(f"/customers/{customer_id}").text
    assert f'href="/customers/{customer_id}/statement?currency=GBP"' in customer_page
    assert 'id="customer-payments"' in customer_page and "80.00 GBP" in customer_page

    page = alice_ui.client.get(f"/customers/{customer_id}/statement", params={"currency": "gbp"}).text
    assert page.index(">ST-1<") < page.index(">ST-2<")  # by due date
    assert 'data-label="Paid">80.00 GBP<' in page and 'data-label="Days overdue">45<' in page
    assert 'data-testid="statement-total"><strong>170.00 GBP</strong>' in page  # 120.00 + 50.00
    assert 'data-label="31–60 days">120.00 GBP<' in page and 'data-label="Current">50.00 GBP<' in page
    assert 'id="statement-payments"' in page and f'<td data-label="Date">{today}</td>' in page
    nobody = alice.client.post("/api/v1/customers", json={"name": "Owes Nothing"}).json()["id"]
    assert "has no statement" in alice_ui.client.get(f"/customers/{nobody}/statement").text


def test_each_connections_sync_schedule_is_shown_and_set(alice_ui: Browser, alice: Tenant, mock_erp: MockErp):
    connection = alice.client.put("/api/v1/connections/erp-rest", json={"baseUrl": mock_erp.url}).json()
    settings = alice_ui.client.get("/settings/erp").text
    assert 'id="schedules"' in settings and "The server&#39;s schedule (<code>0 2 * * *</code>)" in settings

    bad = alice_ui.client.post(f"/settings/erp/{connection['id']}/schedule",
                               data={"csrf_token": alice_ui.csrf, "sync_schedule": "every hour"},
                               follow_redirects=True)  # fmt: skip
    assert "five-field cron" in bad.text
    saved = alice_ui.client.post(f"/settings/erp/{connection['id']}/schedule",
                                 data={"csrf_token": alice_ui.csrf, "sync_schedule": "30 */6 * * *"},
                                 follow_redirects=True)  # fmt: skip
    assert "Schedule saved: its own (30 */6 * * *)" in saved.text
    assert alice.client.get(f"/api/v1/connections/{connection['id']}").json()["syncSchedule"] == "30 */6 * * *"
    toolbar = alice_ui.client.get("/invoices").text
    assert re.search(r"Next scheduled: \d{4}-\d\d-\d\d \d\d:30:00 UTC", toolbar), toolbar[:2000]

    back = alice.client.patch(f"/api/v1/connections/{connection['id']}", json={"syncSchedule": None})
    assert back.status_code == 200 and back.json()["syncSchedule"] is None
    refused = alice.client.patch(f"/api/v1/connections/{connection['id']}", json={"syncSchedule": "0 2 * *"})
    assert refused.status_code == 422 and "five-field cron" in refused.text
