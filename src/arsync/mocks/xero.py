"""``arsync mock-xero``: a stateful stand-in for Xero's identity service and Accounting API.

It follows the rules arsync must live with:

* OAuth 2 authorization code with optional PKCE (S256). Access tokens expire (30 minutes by
  default); refresh tokens rotate on every use, the previous one keeps working for a grace
  period (it hands out the same successor again), an unused one expires, and a reused stale one
  gets ``invalid_grant``.
* ``GET /connections`` lists the organisations a token may use; every Accounting call needs the
  ``xero-tenant-id`` header.
* ``GET /api.xro/2.0/Contacts|Invoices|Payments`` page with ``page`` and ``pageSize`` (100 by
  default) and filter with ``If-Modified-Since``, ``where`` (``Field=="value"`` clauses joined
  by ``AND``) and ``InvoiceNumbers``.
* ``PUT /api.xro/2.0/Invoices|Payments`` create records; an ``Idempotency-Key`` (up to 128
  characters) replays the first answer. Lines of an AUTHORISED invoice need the code of a
  revenue account (200, 260); payments need a bank account (090, 091).
* Per organisation: at most 5 calls in flight, 60 per minute and 1,000 per day (Xero's Starter
  tier; 5,000 on higher tiers). Over a limit the answer is 429 with ``Retry-After`` and
  ``X-Rate-Limit-Problem``; every answer carries ``X-DayLimit-Remaining`` and
  ``X-MinLimit-Remaining`` (Xero's API rate limits page).
* Apps created on or after 2 March 2026 (the default) may ask only for granular scopes
  (``accounting.invoices``, ``accounting.payments``, …); each endpoint needs its scope.
* ``unitdp=4`` keeps four decimals of ``UnitAmount``; without it two, and a ``LineAmount`` that no
  longer matches is refused. Contacts include suppliers, ``/Invoices`` bills, and ``/Payments``
  reversed payments (``Status`` DELETED).

Every limit and lifetime is configurable, so tests can run the rules in seconds. The control
surface under ``/_mock`` (no auth, loopback only): ``GET /_mock/state``, ``PUT /_mock/config``,
``POST /_mock/expire-access-tokens``, ``POST /_mock/refuse-refresh``, ``PUT /_mock/faults``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import random
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from arsync.erp import contract

ACCOUNTING = "/api.xro/2.0"
# Account codes of Xero's demo organisation chart (090, 091 bank; 200, 260 revenue); a real
# organisation's chart is its own, so which codes exist is per organisation (unknown here).
BANK_ACCOUNT_CODES = ("090", "091")
# Scopes: the broad ones (xero_accounting.yaml, components.securitySchemes.OAuth2) and the granular
# ones that replace them for apps created on or after 2 March 2026 (Xero's scope-change notes).
BROAD_SCOPES = frozenset({"accounting.transactions", "accounting.transactions.read"})
GRANULAR_SCOPES = frozenset({"accounting.invoices", "accounting.invoices.read", "accounting.payments",
                             "accounting.payments.read", "accounting.banktransactions",
                             "accounting.banktransactions.read"})  # fmt: skip
KNOWN_SCOPES = BROAD_SCOPES | GRANULAR_SCOPES | {"offline_access", "openid", "profile", "email",
                                                 "accounting.contacts", "accounting.contacts.read",
                                                 "accounting.settings", "accounting.settings.read"}  # fmt: skip
# Which scope an endpoint needs: xero_accounting.yaml security per path, with the granular
# equivalents of accounting.transactions.
ENDPOINT_SCOPES = {
    "/Contacts": {"GET": {"accounting.contacts", "accounting.contacts.read"}, "PUT": {"accounting.contacts"}},
    "/Invoices": {"GET": {"accounting.invoices", "accounting.invoices.read", "accounting.transactions",
                          "accounting.transactions.read"},
                  "PUT": {"accounting.invoices", "accounting.transactions"}},
    "/Payments": {"GET": {"accounting.payments", "accounting.payments.read", "accounting.transactions",
                          "accounting.transactions.read"},
                  "PUT": {"accounting.payments", "accounting.transactions"}},
}  # fmt: skip
SALES_ACCOUNT_CODES = ("200", "260")  # revenue accounts of the standard chart


class MockXeroConfig(BaseModel):
    """The rules, tunable per test."""

    client_id: str = "arsync-demo-client"
    client_secret: str = "arsync-demo-secret"
    access_token_seconds: float = 1800
    refresh_grace_seconds: float = 1800
    refresh_idle_days: float = 60
    concurrent_limit: int = 5
    minute_limit: int = 60
    minute_window_seconds: float = 60
    day_limit: int = 1000  # Xero's Starter tier; higher tiers allow 5,000 (Xero's API limits page)
    latency_seconds: float = Field(default=0.0, ge=0, description="Added to every Accounting call")
    storm_every: int = Field(default=0, ge=0, description="Every Nth Accounting call gets a 429 (0: never)")
    storm_retry_after: int = 1
    expire_tokens_at_call: int = Field(default=0, ge=0, description="At this Accounting call, every token expires")
    granular_scopes_only: bool = Field(
        default=True,
        description="The app was created on or after 2 March 2026, so it may ask only for granular scopes",
    )


class MockXeroFault(BaseModel):
    """Handle a matching request, then answer late (a client timeout after Xero committed)."""

    method: str = "PUT"
    path: str = "/Invoices"
    delay: float = Field(default=0, ge=0)
    times: int = Field(default=1, ge=1)


@dataclass
class Grant:
    """What one authorization gave: a client, the organisations, and the current token pair."""

    client_id: str
    tenant_ids: list[str]
    scopes: frozenset[str] = frozenset()


@dataclass
class RefreshToken:
    grant: Grant
    issued_at: float
    used_at: float | None = None
    successor: dict[str, Any] | None = None
    revoked: bool = False


@dataclass
class Organisation:
    tenant_id: str
    name: str
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotent_answers: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    minute_calls: deque[float] = field(default_factory=deque)
    day_calls: int = 0
    refusals: dict[str, int] = field(default_factory=dict)


def xero_date(value: datetime | date) -> str:
    """Xero's JSON date: ``/Date(milliseconds+0000)/``."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    return f"/Date({int(value.timestamp() * 1000)}+0000)/"


def _date_string(value: date) -> str:
    return f"{value.isoformat()}T00:00:00"


class MockXeroState:
    """Everything a test may inspect or change while the mock runs."""

    def __init__(self, config: MockXeroConfig | None = None) -> None:
        self.config = config or MockXeroConfig()
        self.organisations: dict[str, Organisation] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, tuple[Grant, float]] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.faults: list[MockXeroFault] = []
        self.refuse_refresh = False
        self.refreshes = 0  # refresh tokens rotated
        self.refresh_requests = 0  # every refresh_token grant asked for, grace replays and refusals included
        self.revocations = 0
        self.calls = 0
        self._lock = threading.Lock()

    # Data -------------------------------------------------------------------------------

    def add_organisation(self, name: str, contacts: int = 0, invoices: int = 0, payments: int = 0,
                         seed: int = 1, suppliers: int = 2) -> Organisation:  # fmt: skip
        """An organisation as a real one looks: customers with ACCREC invoices, suppliers with bills
        (ACCPAY: /Contacts and /Invoices return both, xero_accounting.yaml Contacts example), and
        payments, one of them reversed (Status DELETED, components.schemas.Payment.Status)."""
        org = Organisation(str(uuid.uuid5(uuid.NAMESPACE_URL, f"xero:{name}")), name)
        rng = random.Random(seed)
        updated = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        for n in range(contacts):
            contact_id = str(uuid.UUID(int=rng.getrandbits(128)))
            org.contacts[contact_id] = {
                "ContactID": contact_id,
                "Name": f"{name} Customer {n + 1}",
                "EmailAddress": f"ar{n + 1}@customer{n + 1}.example" if n % 5 else "",
                "ContactStatus": "ACTIVE",
                "IsCustomer": True,
                "IsSupplier": False,
                "UpdatedDateUTC": xero_date(updated + timedelta(minutes=n)),
                "_updated": updated + timedelta(minutes=n),
            }
        contact_ids = list(org.contacts)
        supplier_ids = []
        for n in range(suppliers if contacts else 0):
            supplier_id = str(uuid.UUID(int=rng.getrandbits(128)))
            supplier_ids.append(supplier_id)
            org.contacts[supplier_id] = {
                "ContactID": supplier_id, "Name": f"{name} Supplier {n + 1}", "EmailAddress": "",
                "ContactStatus": "ACTIVE", "IsCustomer": False, "IsSupplier": True,
                "UpdatedDateUTC": xero_date(updated), "_updated": updated,
            }  # fmt: skip
        for n in range(invoices if contact_ids else 0):
            issued = date(2026, 1, 1) + timedelta(days=n % 60)
            lines = [
                {"Description": "Consulting", "Quantity": Decimal(1 + n % 3), "UnitAmount": Decimal(f"{100 + n}.50")},
                {"Description": "Licence", "Quantity": Decimal(1), "UnitAmount": Decimal("49.99")},
            ]
            bill = n % 10 == 9
            self._store_invoice(org, {
                "Type": "ACCPAY" if bill else "ACCREC",
                "InvoiceNumber": f"INV-{n + 1:05d}",
                "Contact": {"ContactID": (supplier_ids or contact_ids)[n % len(supplier_ids or contact_ids)] if bill
                            else contact_ids[n % len(contact_ids)]},
                "Date": issued.isoformat(),
                "DueDate": (issued + timedelta(days=30)).isoformat(),
                "CurrencyCode": "USD",
                "Status": "AUTHORISED",
                "LineAmountTypes": "Exclusive" if n % 4 == 1 else "NoTax",
                "LineItems": lines,
            }, updated + timedelta(hours=1, minutes=n),
               tax_rate=Decimal("0.15") if n % 4 == 1 else Decimal(0))  # fmt: skip
        receivable = [i for i in org.invoices.values() if i["Type"] == "ACCREC"]
        for n in range(min(payments, len(receivable))):
            invoice = receivable[n]
            amount = (invoice["AmountDue"] / 2).quantize(Decimal("0.01")) if n % 2 else invoice["AmountDue"]
            self._store_payment(org, invoice, amount, date(2026, 2, 1) + timedelta(days=n % 20), "090",
                                updated + timedelta(hours=2, minutes=n))  # fmt: skip
        unpaid = [i for i in receivable if i["AmountPaid"] == 0 and i["AmountDue"] > 1]
        if payments and unpaid:
            # A reversal: Xero keeps the payment with Status DELETED and the invoice owes it again.
            reversed_payment = self._store_payment(org, unpaid[-1], Decimal("1.00"), date(2026, 2, 3), "090",
                                                   updated + timedelta(hours=3))  # fmt: skip
            self.delete_payment(org, reversed_payment["PaymentID"], updated + timedelta(hours=3, minutes=1))
        self.organisations[org.tenant_id] = org
        return org

    def _store_invoice(
        self,
        org: Organisation,
        body: dict[str, Any],
        now: datetime,
        unit_places: int = 4,
        tax_rate: Decimal = Decimal(0),
    ) -> dict[str, Any]:
        lines: list[dict[str, Any]] = []
        total = Decimal("0.00")
        for item in body.get("LineItems") or []:
            quantity = Decimal(str(item.get("Quantity", 1)))
            # UnitAmount keeps 2 decimals unless the request says unitdp=4 (xero_accounting.yaml,
            # parameters.unitdp).
            unit = Decimal(str(item.get("UnitAmount", 0))).quantize(Decimal(10) ** -unit_places)
            amount = (
                Decimal(str(item["LineAmount"]))
                if "LineAmount" in item
                else (quantity * unit).quantize(Decimal("0.01"))
            )
            line = {"Description": str(item.get("Description", "")), "Quantity": quantity, "UnitAmount": unit,
                    "LineAmount": amount}  # fmt: skip
            if item.get("AccountCode"):
                line["AccountCode"] = str(item["AccountCode"])
            lines.append(line)
            total += amount
        # Tax on top of the lines: SubTotal + TotalTax = Total (LineAmountTypes Exclusive, as in
        # xero_accounting.yaml's GET /Invoices example).
        tax = (total * tax_rate).quantize(Decimal("0.01"))
        contact = org.contacts[body["Contact"]["ContactID"]]
        issued = date.fromisoformat(str(body["Date"])[:10])
        due = date.fromisoformat(str(body.get("DueDate") or body["Date"])[:10])
        invoice_id = str(uuid.uuid4())
        invoice = {
            "Type": body.get("Type", "ACCREC"),
            "InvoiceID": invoice_id,
            "InvoiceNumber": body.get("InvoiceNumber") or f"INV-{len(org.invoices) + 1:05d}",
            "Contact": {"ContactID": contact["ContactID"], "Name": contact["Name"]},
            "Date": xero_date(issued),
            "DateString": _date_string(issued),
            "DueDate": xero_date(due),
            "DueDateString": _date_string(due),
            "Status": body.get("Status", "DRAFT"),
            "LineAmountTypes": body.get("LineAmountTypes", "NoTax"),
            "LineItems": lines,
            "SubTotal": total,
            "TotalTax": tax,
            "Total": total + tax,
            "AmountDue": total + tax,
            "AmountPaid": Decimal("0.00"),
            "CurrencyCode": body.get("CurrencyCode", "USD"),
            "UpdatedDateUTC": xero_date(now),
            "_updated": now,
        }
        org.invoices[invoice_id] = invoice
        return invoice

    def _store_payment(self, org: Organisation, invoice: dict[str, Any], amount: Decimal, paid_on: date,
                       account_code: str, now: datetime) -> dict[str, Any]:  # fmt: skip
        payment_id = str(uuid.uuid4())
        payment = {
            "PaymentID": payment_id,
            "Date": xero_date(paid_on),
            "Amount": amount,
            "Status": "AUTHORISED",
            "PaymentType": "ACCRECPAYMENT" if invoice["Type"] == "ACCREC" else "ACCPAYPAYMENT",
            "Account": {"Code": account_code},
            "Invoice": {"InvoiceID": invoice["InvoiceID"], "InvoiceNumber": invoice["InvoiceNumber"]},
            "UpdatedDateUTC": xero_date(now),
            "_updated": now,
        }
        org.payments[payment_id] = payment
        invoice["AmountDue"] -= amount
        invoice["AmountPaid"] += amount
        if invoice["AmountDue"] == 0:
            invoice["Status"] = "PAID"
        invoice["UpdatedDateUTC"], invoice["_updated"] = xero_date(now), now
        return payment

    def delete_payment(self, org: Organisation, payment_id: str, now: datetime | None = None) -> None:
        """Reverse a payment as Xero does: it stays, with Status DELETED, and its invoice owes the amount again."""
        now = now or datetime.now(UTC)
        payment = org.payments[payment_id]
        invoice = org.invoices[payment["Invoice"]["InvoiceID"]]
        payment["Status"] = "DELETED"
        payment["UpdatedDateUTC"], payment["_updated"] = xero_date(now), now
        invoice["AmountDue"] += payment["Amount"]
        invoice["AmountPaid"] -= payment["Amount"]
        if invoice["Status"] == "PAID":
            invoice["Status"] = "AUTHORISED"
        invoice["UpdatedDateUTC"], invoice["_updated"] = xero_date(now), now

    # OAuth ------------------------------------------------------------------------------

    def issue_code(self, params: dict[str, str], tenant_ids: list[str]) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self.codes[code] = {**params, "tenant_ids": tenant_ids, "at": time.time()}
        return code

    def _token_pair(self, grant: Grant) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.time()
        self.access_tokens[access] = (grant, now + self.config.access_token_seconds)
        self.refresh_tokens[refresh] = RefreshToken(grant, issued_at=now)
        return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                "expires_in": int(self.config.access_token_seconds),
                "scope": " ".join(sorted(grant.scopes))}  # fmt: skip

    def exchange_code(self, form: dict[str, str], client_id: str) -> dict[str, Any]:
        with self._lock:
            issued = self.codes.pop(form.get("code", ""), None)
            if issued is None or time.time() - issued["at"] > 300 or issued["client_id"] != client_id:
                raise OAuthError("invalid_grant")
            if issued.get("redirect_uri") != form.get("redirect_uri"):
                raise OAuthError("invalid_grant")
            challenge = issued.get("code_challenge")
            if challenge:
                verifier = form.get("code_verifier", "")
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if digest != challenge:
                    raise OAuthError("invalid_grant")
            return self._token_pair(Grant(client_id, issued["tenant_ids"], frozenset(issued.get("scope", "").split())))

    def refresh(self, token: str, client_id: str) -> dict[str, Any]:
        # Rotation on every use, a grace period for the previous token, and expiry after 60 days
        # unused: Xero's OAuth 2.0 "refreshing access tokens" guide; invalid_grant: RFC 6749 §5.2.
        with self._lock:
            self.refresh_requests += 1
            record = self.refresh_tokens.get(token)
            now = time.time()
            if record is None or record.revoked or self.refuse_refresh or record.grant.client_id != client_id:
                raise OAuthError("invalid_grant")
            if record.used_at is None:
                if now - record.issued_at > self.config.refresh_idle_days * 86400:
                    raise OAuthError("invalid_grant")
                record.used_at = now
                record.successor = self._token_pair(record.grant)
                self.refreshes += 1
                return record.successor
            if now - record.used_at <= self.config.refresh_grace_seconds and record.successor is not None:
                return record.successor  # the grace period: the same new pair again
            raise OAuthError("invalid_grant")

    def revoke(self, token: str) -> None:
        with self._lock:
            record = self.refresh_tokens.get(token)
            if record is None:
                return
            self.revocations += 1
            for refresh in self.refresh_tokens.values():
                if refresh.grant is record.grant:
                    refresh.revoked = True
            for access, (grant, _) in list(self.access_tokens.items()):
                if grant is record.grant:
                    del self.access_tokens[access]

    def grant_for(self, authorization: str | None) -> Grant | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        with self._lock:
            found = self.access_tokens.get(authorization.removeprefix("Bearer "))
        if found is None or found[1] < time.time():
            return None
        return found[0]

    def expire_access_tokens(self) -> int:
        with self._lock:
            count = len(self.access_tokens)
            self.access_tokens = {token: (grant, 0.0) for token, (grant, _) in self.access_tokens.items()}
            return count

    # Limits -----------------------------------------------------------------------------

    def admit(self, org: Organisation) -> tuple[str, int] | None:
        # 5 concurrent, 60 a minute, a daily quota per organisation; 429 with Retry-After and
        # X-Rate-Limit-Problem: Xero's API rate limits page.
        """None if the call may go ahead (and it now counts), else (problem, retry-after seconds)."""
        config = self.config
        with self._lock:
            self.calls += 1
            now = time.monotonic()
            while org.minute_calls and now - org.minute_calls[0] >= config.minute_window_seconds:
                org.minute_calls.popleft()
            refusal: tuple[str, int] | None = None
            if org.day_calls >= config.day_limit:
                tomorrow = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
                refusal = ("day", max(int((tomorrow - datetime.now(UTC)).total_seconds()), 1))
            elif org.in_flight >= config.concurrent_limit:
                refusal = ("concurrent", 1)
            elif len(org.minute_calls) >= config.minute_limit:
                refusal = ("minute", max(int(config.minute_window_seconds - (now - org.minute_calls[0])) + 1, 1))
            elif config.storm_every and self.calls % config.storm_every == 0:
                refusal = ("storm", config.storm_retry_after)
            if refusal is not None:
                org.refusals[refusal[0]] = org.refusals.get(refusal[0], 0) + 1
                # A storm's 429 looks like a per-minute one to the client.
                return ("minute" if refusal[0] == "storm" else refusal[0]), refusal[1]
            org.in_flight += 1
            org.max_in_flight = max(org.max_in_flight, org.in_flight)
            org.minute_calls.append(now)
            org.day_calls += 1
            return None

    def release(self, org: Organisation) -> None:
        with self._lock:
            org.in_flight -= 1

    def take_fault(self, method: str, path: str) -> MockXeroFault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method == method and path.endswith(fault.path):
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "refreshes": self.refreshes,
                "refreshRequests": self.refresh_requests,
                "revocations": self.revocations,
                "calls": self.calls,
                "organisations": [
                    {"tenantId": org.tenant_id, "name": org.name, "contacts": len(org.contacts),
                     "invoices": len(org.invoices), "payments": len(org.payments),
                     "maxInFlight": org.max_in_flight, "dayCalls": org.day_calls, "refusals": dict(org.refusals),
                     "invoiceNumbers": sorted(i["InvoiceNumber"] for i in org.invoices.values())}
                    for org in self.organisations.values()
                ],
            }  # fmt: skip


class OAuthError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


# Reading helpers ----------------------------------------------------------------------------


def _modified_since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = parsedate_to_datetime(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _where(value: str | None) -> list[tuple[str, str]]:
    # The where parameter (xero_accounting.yaml, e.g. paths./Payments.get: Status=="AUTHORISED").
    """``Type=="ACCREC" AND Status=="AUTHORISED"`` as [(field, value), …]; only equality."""
    if not value:
        return []
    clauses = []
    for clause in value.split(" AND "):
        name, _, wanted = clause.partition("==")
        clauses.append((name.strip(), wanted.strip().strip('"')))
    return clauses


def _matches(record: dict[str, Any], clauses: list[tuple[str, str]]) -> bool:
    return all(str(record.get(name)) == wanted for name, wanted in clauses)


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON with Decimals written as exact numbers, as Xero writes amounts."""
    return Response(contract.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def _problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"Type": None, "Title": title, "Status": status, "Detail": detail}, status, headers)


def _validation(message: str) -> Response:
    return _json({"ErrorNumber": 10, "Type": "ValidationException", "Message": "A validation exception occurred",
                  "Elements": [{"ValidationErrors": [{"Message": message}]}]}, 400)  # fmt: skip


def _client_id(request: Request, form: dict[str, str], config: MockXeroConfig) -> str | None:
    """The client, from HTTP Basic auth or the form, if its secret is right."""
    client_id, secret = form.get("client_id"), form.get("client_secret")
    header = request.headers.get("authorization", "")
    if header.startswith("Basic "):
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
    if client_id == config.client_id and secret == config.client_secret:
        return client_id
    return None


def create_mock_xero_app(state: MockXeroState) -> FastAPI:
    app = FastAPI(title="mock Xero", openapi_url=None)

    # Identity -------------------------------------------------------------------------------

    @app.get("/identity/connect/authorize")
    async def authorize(request: Request) -> Response:
        params = dict(request.query_params)
        if params.get("response_type") != "code" or params.get("client_id") != state.config.client_id:
            return HTMLResponse("<h1>unauthorized_client</h1>", status_code=400)
        scopes = set(params.get("scope", "").split())
        if "offline_access" not in scopes:
            return HTMLResponse("<h1>invalid_scope: offline_access is needed for a refresh token</h1>", 400)
        unknown = scopes - KNOWN_SCOPES
        if state.config.granular_scopes_only:
            unknown |= scopes & BROAD_SCOPES
        if unknown:
            # Xero answers invalid_scope on its consent page (Xero's scope-change FAQ: apps created on
            # or after 2 March 2026 cannot ask for accounting.transactions).
            return HTMLResponse(f"<h1>invalid_scope: {html.escape(' '.join(sorted(unknown)))}</h1>", 400)
        orgs = "".join(
            f'<li><label><input type="checkbox" name="tenant_id" value="{o.tenant_id}" checked> '
            f"{html.escape(o.name)}</label></li>"
            for o in state.organisations.values()
        )
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
        )
        page = (
            "<!doctype html><title>Mock Xero: allow access</title><h1>arsync wants access to your organisations</h1>"
            f'<form method="post" action="/identity/connect/authorize">{hidden}<ul>{orgs}</ul>'
            '<button type="submit" name="decision" value="allow">Allow access</button> '
            '<button type="submit" name="decision" value="deny">Cancel</button></form>'
        )
        return HTMLResponse(page)

    @app.post("/identity/connect/authorize")
    async def consent(request: Request) -> Response:
        form = await request.form()
        params = {k: str(v) for k, v in form.items() if k not in {"tenant_id", "decision"}}
        redirect_uri = params.get("redirect_uri", "")
        if form.get("decision") == "deny":
            query = urlencode({"error": "access_denied", "state": params.get("state", "")})
            return RedirectResponse(f"{redirect_uri}?{query}", status_code=302)
        tenant_ids = [str(t) for t in form.getlist("tenant_id")] or list(state.organisations)
        code = state.issue_code(params, tenant_ids)
        query = urlencode({"code": code, "state": params.get("state", ""), "scope": params.get("scope", "")})
        return RedirectResponse(f"{redirect_uri}?{query}", status_code=302)

    @app.post("/connect/token")
    async def token(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        client_id = _client_id(request, form, state.config)
        if client_id is None:
            return _json({"error": "invalid_client"}, 400)
        try:
            if form.get("grant_type") == "authorization_code":
                return _json(state.exchange_code(form, client_id))
            if form.get("grant_type") == "refresh_token":
                return _json(state.refresh(form.get("refresh_token", ""), client_id))
        except OAuthError as exc:
            return _json({"error": exc.error}, 400)
        return _json({"error": "unsupported_grant_type"}, 400)

    @app.post("/connect/revocation")
    async def revocation(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        if _client_id(request, form, state.config) is None:
            return _json({"error": "invalid_client"}, 400)
        state.revoke(form.get("token", ""))
        return Response(status_code=200)

    @app.get("/connections")
    async def connections(request: Request) -> Response:
        grant = state.grant_for(request.headers.get("authorization"))
        if grant is None:
            return _problem(401, "Unauthorized", "TokenExpired: token expired or invalid")
        return _json([
            {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, t)), "tenantId": t, "tenantType": "ORGANISATION",
             "tenantName": state.organisations[t].name}
            for t in grant.tenant_ids if t in state.organisations
        ])  # fmt: skip

    # Accounting -------------------------------------------------------------------------------

    async def guarded(request: Request, handler: Any) -> Response:
        if state.config.expire_tokens_at_call and state.calls + 1 == state.config.expire_tokens_at_call:
            state.expire_access_tokens()
            state.config.expire_tokens_at_call = 0  # once
        grant = state.grant_for(request.headers.get("authorization"))
        if grant is None:
            return _problem(401, "Unauthorized", "TokenExpired: token expired or invalid",
                            {"WWW-Authenticate": 'Bearer error="invalid_token"'})  # fmt: skip
        endpoint = request.url.path.removeprefix(ACCOUNTING)
        needed = ENDPOINT_SCOPES.get(endpoint, {}).get(request.method, set())
        if needed and not needed & grant.scopes:
            # Status for a token without the scope: unknown; Xero's docs describe it as unauthorised.
            return _problem(401, "Unauthorized", f"AuthorizationUnsuccessful: the token lacks {sorted(needed)[0]}")
        tenant_id = request.headers.get("xero-tenant-id", "")
        org = state.organisations.get(tenant_id)
        if org is None or tenant_id not in grant.tenant_ids:
            return _problem(403, "Forbidden", "AuthenticationUnsuccessful: xero-tenant-id is missing or not allowed")
        refusal = state.admit(org)
        if refusal is not None:
            problem, retry_after = refusal
            return _problem(429, "Too Many Requests", f"You have exceeded the {problem} rate limit",
                            {"Retry-After": str(retry_after), "X-Rate-Limit-Problem": problem})  # fmt: skip
        try:
            if state.config.latency_seconds:
                await asyncio.sleep(state.config.latency_seconds)
            response: Response = await handler(request, org)
        finally:
            state.release(org)
        response.headers["X-MinLimit-Remaining"] = str(max(state.config.minute_limit - len(org.minute_calls), 0))
        response.headers["X-DayLimit-Remaining"] = str(max(state.config.day_limit - org.day_calls, 0))
        fault = state.take_fault(request.method, request.url.path)
        if fault is not None:
            await asyncio.sleep(fault.delay)
        return response

    def page_of(request: Request, records: list[dict[str, Any]], key: str) -> Response:
        since = _modified_since(request.headers.get("if-modified-since"))
        clauses = _where(request.query_params.get("where"))
        numbers = {n for n in request.query_params.get("InvoiceNumbers", "").split(",") if n}
        chosen = [r for r in records if _matches(r, clauses) and (since is None or r["_updated"] > since)
                  and (not numbers or r.get("InvoiceNumber") in numbers)]  # fmt: skip
        try:
            page = max(int(request.query_params.get("page", "1")), 1)
            # pageSize: xero_accounting.yaml parameters.pageSize (example 100); 1000 at most (Xero's paging docs).
            size = min(max(int(request.query_params.get("pageSize", "100")), 1), 1000)
        except ValueError:
            return _validation("page and pageSize must be whole numbers")
        items = chosen[(page - 1) * size : page * size]
        count = len(chosen)
        return _json({
            "Id": str(uuid.uuid4()), "Status": "OK", "ProviderName": "arsync",
            "DateTimeUTC": xero_date(datetime.now(UTC)),
            "pagination": {"page": page, "pageSize": size, "pageCount": -(-count // size), "itemCount": count},
            key: [_public(r) for r in items],
        })  # fmt: skip

    async def list_contacts(request: Request, org: Organisation) -> Response:
        return page_of(request, list(org.contacts.values()), "Contacts")

    async def list_invoices(request: Request, org: Organisation) -> Response:
        return page_of(request, list(org.invoices.values()), "Invoices")

    async def list_payments(request: Request, org: Organisation) -> Response:
        return page_of(request, list(org.payments.values()), "Payments")

    for path, lister in (("/Contacts", list_contacts), ("/Invoices", list_invoices), ("/Payments", list_payments)):

        async def route(request: Request, lister: Any = lister) -> Response:
            return await guarded(request, lister)

        app.add_api_route(f"{ACCOUNTING}{path}", route, methods=["GET"], include_in_schema=False)

    async def idempotent(request: Request, org: Organisation, create: Any) -> Response:
        # Idempotency-Key: at most 128 characters (xero_accounting.yaml, parameters.idempotencyKey).
        # A key seen before gets its first answer again, whatever it was; the same key with another
        # body is refused (Xero's idempotent-requests guide).
        key = request.headers.get("idempotency-key")
        if key is not None and len(key) > 128:
            return _validation("Idempotency-Key must be at most 128 characters")
        raw = await request.body()
        fingerprint = hashlib.sha256(request.url.path.encode() + b"?" + request.url.query.encode() + b"\n" + raw)
        if key and key in org.idempotent_answers:
            status, body, seen = org.idempotent_answers[key]
            if seen != fingerprint.hexdigest():
                return _validation("The Idempotency-Key has been used with a different request")
            return Response(body, status_code=status, media_type="application/json")
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _validation("the body is not JSON")
        response: Response = create(parsed)
        if key:
            org.idempotent_answers[key] = (response.status_code, bytes(response.body), fingerprint.hexdigest())
        return response

    async def put_invoices(request: Request, org: Organisation) -> Response:
        def create(body: Any) -> Response:
            items = body.get("Invoices", [body]) if isinstance(body, dict) else []
            created = []
            for item in items:
                contact = (item.get("Contact") or {}).get("ContactID")
                if contact not in org.contacts:
                    return _validation(f"Contact {contact!r} does not exist")
                if item.get("Type") not in {"ACCREC", "ACCPAY"} or not item.get("LineItems") or not item.get("Date"):
                    return _validation("Type, Date and LineItems are required")
                unit_places = 4 if request.query_params.get("unitdp") == "4" else 2
                for line in item["LineItems"]:
                    if "LineAmount" not in line:
                        continue
                    unit = Decimal(str(line.get("UnitAmount", 0))).quantize(Decimal(10) ** -unit_places)
                    expected = (Decimal(str(line.get("Quantity", 1))) * unit).quantize(Decimal("0.01"))
                    if Decimal(str(line["LineAmount"])) != expected:
                        # Xero recomputes the line from the rounded unit amount and refuses a mismatch.
                        return _validation(f"The line total {line['LineAmount']} does not match the expected "
                                           f"line total {expected}")  # fmt: skip
                if item.get("Status") == "AUTHORISED":  # a DRAFT may leave accounts for later; this may not
                    for line in item["LineItems"]:
                        code = line.get("AccountCode")
                        if not code:
                            return _validation("Account code must be specified")
                        if code not in SALES_ACCOUNT_CODES:
                            return _validation(f"Account code '{code}' is not a valid code for this document.")
                created.append(_public(state._store_invoice(org, item, datetime.now(UTC), unit_places)))
            return _json({"Id": str(uuid.uuid4()), "Status": "OK", "Invoices": created})

        return await idempotent(request, org, create)

    async def put_payments(request: Request, org: Organisation) -> Response:
        def create(body: Any) -> Response:
            items = body.get("Payments", [body]) if isinstance(body, dict) else []
            created = []
            for item in items:
                invoice = org.invoices.get((item.get("Invoice") or {}).get("InvoiceID", ""))
                if invoice is None:
                    return _validation("Invoice could not be found")
                code = (item.get("Account") or {}).get("Code")
                if code not in BANK_ACCOUNT_CODES:
                    return _validation(f"Account code {code!r} is not a bank account")
                amount = Decimal(str(item.get("Amount", "0")))
                if amount <= 0 or amount > invoice["AmountDue"]:
                    return _validation("Payment amount exceeds the amount outstanding on this document")
                paid_on = date.fromisoformat(str(item.get("Date", ""))[:10])
                created.append(_public(state._store_payment(org, invoice, amount, paid_on, code, datetime.now(UTC))))
            return _json({"Id": str(uuid.uuid4()), "Status": "OK", "Payments": created})

        return await idempotent(request, org, create)

    for path, writer in (("/Invoices", put_invoices), ("/Payments", put_payments)):

        async def write(request: Request, writer: Any = writer) -> Response:
            return await guarded(request, writer)

        app.add_api_route(f"{ACCOUNTING}{path}", write, methods=["PUT"], include_in_schema=False)

    # Control ------------------------------------------------------------------------------------

    @app.get("/_mock/state")
    async def mock_state() -> Response:
        return _json(state.summary())

    @app.put("/_mock/config")
    async def mock_config(config: MockXeroConfig) -> Response:
        state.config = config
        return _json(config.model_dump())

    @app.post("/_mock/expire-access-tokens")
    async def mock_expire() -> Response:
        return _json({"expired": state.expire_access_tokens()})

    @app.post("/_mock/refuse-refresh")
    async def mock_refuse() -> Response:
        state.refuse_refresh = True
        return _json({"refuseRefresh": True})

    @app.put("/_mock/faults")
    async def mock_faults(faults: list[MockXeroFault]) -> Response:
        state.faults = list(faults)
        return _json({"faults": len(faults)})

    return app


def mock_xero_settings(base_url: str, config: MockXeroConfig) -> dict[str, str]:
    """The ARSYNC_XERO_* settings that point arsync at a mock on ``base_url``."""
    return {
        "ARSYNC_XERO_CLIENT_ID": config.client_id,
        "ARSYNC_XERO_CLIENT_SECRET": config.client_secret,
        "ARSYNC_XERO_AUTHORIZE_URL": f"{base_url}/identity/connect/authorize",
        "ARSYNC_XERO_TOKEN_URL": f"{base_url}/connect/token",
        "ARSYNC_XERO_REVOKE_URL": f"{base_url}/connect/revocation",
        "ARSYNC_XERO_API_URL": base_url,
    }
