"""The demo's Nomod round trip, driven through the platform API like a user would.

A synced customer gets a new KWD invoice. Finalizing it sends the customer and the invoice to
the mock Nomod; dispatching it pushes it to the mock ERP; the payment link comes back; paying
it in the mock Nomod sends the signed webhook, which records the payment in arsync and pushes
it to the mock ERP.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
from rich.console import Console

from arsync.tenancy.service import api_headers

POLL_SECONDS = 30.0


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
