"""The demo's Nomod round trip, driven through the platform API like a user would.

A synced customer gets a new KWD invoice. Finalizing it sends the customer and the invoice to
the mock Nomod; dispatching it pushes it to the mock ERP; the payment link comes back; paying
it in the mock Nomod sends the signed webhook, which records the payment in arsync and pushes
it to the mock ERP.

The set-up pieces are here too: the demo tenant, its UI user, the mock Nomod that keeps its
objects between runs, and the API on a local port. ``arsync demo`` strings them together.
"""

from __future__ import annotations

import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
from rich.console import Console
from sqlalchemy import select

from arsync.accounts import service as accounts
from arsync.accounts.models import User
from arsync.app import create_app
from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.errors import InvalidInput
from arsync.mocks.nomod import MockNomodState, create_mock_nomod_app
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.tenancy import service as tenancy
from arsync.tenancy.models import Tenant
from arsync.tenancy.service import api_headers

POLL_SECONDS = 30.0

DEMO_TENANT = "demo"
DEMO_ENVIRONMENT = "prod"
DEMO_DEBTORS, DEMO_INVOICES, DEMO_PAYMENTS = 300, 3000, 2500
DEMO_USER = "demo@example.com"
DEMO_NOMOD_KEY = "sk_test_arsync_demo"
DEMO_NOMOD_PORT = 8710
DEMO_API_PORT = 8000


class WalkthroughFailed(Exception):
    pass


@dataclass
class Walkthrough:
    api_url: str
    api_key: str
    tenant_id: str
    environment_id: str
    nomod_url: str
    console: Console

    def run(self, invoice_number: str) -> dict[str, Any]:
        with httpx.Client(
            base_url=f"{self.api_url}/api/v1",
            headers=api_headers(self.api_key, self.tenant_id, self.environment_id),
            timeout=30,
        ) as api:
            customer = self._customer(api)
            say = self.console.print
            say(f"customer: {customer['name']} ({customer['id']}, {customer['email']})")
            today = date.today()
            invoice = _ok(api.post("/invoices", json={
                "customerId": customer["id"], "invoiceNumber": invoice_number, "currency": "KWD",
                "issueDate": today.isoformat(), "dueDate": (today + timedelta(days=30)).isoformat(),
                "lines": [{"description": "Consulting, hours", "quantity": "2", "unitPrice": "12.345"}],
            }))  # fmt: skip
            say(f"draft invoice {invoice['invoiceNumber']} ({invoice['id']}): {invoice['amountTotal']} KWD")
            _ok(api.post(f"/invoices/{invoice['id']}/finalize"))
            synced = self._wait(
                api,
                f"/invoices/{invoice['id']}",
                lambda i: (i.get("nomod") or {}).get("status") in ("SYNCED", "FAILED"),
            )
            nomod = synced["nomod"]
            if nomod["status"] != "SYNCED":
                raise WalkthroughFailed(f"Nomod invoice sync failed: {nomod['error']}")
            say(f"finalized → Nomod invoice {nomod['nomodInvoiceId']}")
            _ok(api.post(f"/invoices/{invoice['id']}/dispatch"))
            pushed = self._wait(api, f"/invoices/{invoice['id']}", lambda i: i["push"]["status"] != "PENDING")
            say(f"dispatched → ERP invoice push {pushed['push']['status']} (erpInvoiceId {pushed['erpInvoiceId']})")
            link = _ok(api.post(f"/invoices/{invoice['id']}/payment-link"))
            say(f"payment link ({link['kind']}): [bold]{link['url']}[/bold]")
            paid = _ok(httpx.post(f"{self.nomod_url}/_mock/pay", json={"invoiceId": link["nomodId"]}, timeout=30))
            say(f"paid in the mock Nomod: charge {paid['charge']['id']}, webhook HTTP {paid['delivery'].get('status')}")
            settled = self._wait(api, f"/invoices/{invoice['id']}", lambda i: i["status"] == "PAID")
            payments = _ok(api.get("/payments", params={"invoiceId": invoice["id"]}))["items"]
            payment = self._wait(
                api,
                f"/payments/{payments[0]['id']}",
                lambda p: bool(p.get("push")) and p["push"]["status"] != "PENDING",
            )
            say(f"invoice {settled['status']}, outstanding {settled['amountOutstanding']} KWD; payment "
                f"{payment['id']} ({payment['source']}) → ERP payment push {payment['push']['status']}")  # fmt: skip
            integrations = _ok(api.get(f"/customers/{customer['id']}/integrations"))
            say(f"integrations: {integrations}")
            return integrations

    @staticmethod
    def _customer(api: httpx.Client) -> dict[str, Any]:
        items: list[dict[str, Any]] = _ok(api.get("/customers", params={"limit": 50}))["items"]
        for item in items:
            if item["erpDebtorId"] and item["email"]:
                return item
        raise WalkthroughFailed("no synced customer with an email")

    @staticmethod
    def _wait(api: httpx.Client, path: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """GET ``path`` until ``done`` says so, for at most POLL_SECONDS."""
        deadline = time.monotonic() + POLL_SECONDS
        while True:
            record = _ok(api.get(path))
            if done(record):
                return record
            if time.monotonic() > deadline:
                raise WalkthroughFailed(f"{path} did not get there in {POLL_SECONDS:.0f} s: {record}")
            time.sleep(0.1)


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise WalkthroughFailed(f"{response.request.method} {response.request.url.path}: "
                                f"HTTP {response.status_code} {response.text[:500]}")  # fmt: skip
    body: dict[str, Any] = response.json()
    return body


def demo_user(c: Container, tenant_id: str) -> str:
    """The demo's UI user, with a new password each run (returned to be printed)."""
    password = secrets.token_urlsafe(12)
    with transaction(c.session_factory) as session:
        if session.scalar(select(User.id).where(User.email == DEMO_USER)) is None:
            accounts.create_user(session, tenant_id, DEMO_USER, password)
        else:
            accounts.set_password(session, DEMO_USER, password)
    return password


def demo_scope(c: Container) -> tuple[str, str, str]:
    """The demo tenant and environment (created on first use) and a fresh API key."""
    with transaction(c.session_factory) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == DEMO_TENANT))
        if tenant is None:
            created = tenancy.create_tenant(session, DEMO_TENANT, DEMO_ENVIRONMENT)
            return created.tenant_id, created.environment_id, created.api_key
        env = tenancy.ensure_environment(session, tenant.id, DEMO_ENVIRONMENT)
        tenancy.revoke_api_keys(session, tenant.id, env.id)
        _, key = tenancy.issue_api_key(session, tenant.id, env.id)
        return tenant.id, env.id, key


@dataclass
class DemoNomod:
    url: str
    state: MockNomodState


@contextmanager
def demo_nomod(c: Container) -> Iterator[DemoNomod]:
    """The mock Nomod on 127.0.0.1:8710 (or a free port), keeping its objects in the data directory."""
    stored = c.settings.data_dir / "mock-nomod.json"
    state = MockNomodState(api_key=DEMO_NOMOD_KEY)
    if stored.exists():
        state.load(stored.read_bytes())
    app_ = create_mock_nomod_app(state)
    try:
        server = serve_in_thread(app_, port=DEMO_NOMOD_PORT)
    except OSError:
        server = serve_in_thread(app_)
    state.base_url = server.url
    try:
        with server:
            yield DemoNomod(server.url, state)
    finally:
        stored.write_bytes(state.dump())


def serve_api(c: Container, port: int | None = None) -> RunningServer:
    """The API on 127.0.0.1:``port``; without one, on 8000, or a free port when 8000 is taken.
    A port asked for that is taken is an error, not a silent other port."""
    app_ = create_app(c, background_jobs=True)
    if port is not None:
        try:
            return serve_in_thread(app_, port=port, lifespan="on")
        except OSError as exc:
            taken = f"port {port} on 127.0.0.1 is taken ({exc.strerror}); choose another with --port"
            raise InvalidInput(taken) from None
    try:
        return serve_in_thread(app_, port=DEMO_API_PORT, lifespan="on")
    except OSError:
        return serve_in_thread(app_, lifespan="on")


def wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM, whatever signal disposition the process inherited."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
