"""The mock's state: organisations and their records, grants and tokens, limits and faults."""

from __future__ import annotations

import base64
import hashlib
import random
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

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
    """Handle a matching request, then answer late (a client timeout after Xero committed); or,
    with ``status`` (on ``/connect/revocation``), refuse it with that status and change nothing."""

    method: str = "PUT"
    path: str = "/Invoices"
    delay: float = Field(default=0, ge=0)
    times: int = Field(default=1, ge=1)
    status: int | None = Field(default=None, ge=400, le=599)


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
            self.store_invoice(org, {
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
            self.store_payment(org, invoice, amount, date(2026, 2, 1) + timedelta(days=n % 20), "090",
                                updated + timedelta(hours=2, minutes=n))  # fmt: skip
        unpaid = [i for i in receivable if i["AmountPaid"] == 0 and i["AmountDue"] > 1]
        if payments and unpaid:
            # A reversal: Xero keeps the payment with Status DELETED and the invoice owes it again.
            reversed_payment = self.store_payment(org, unpaid[-1], Decimal("1.00"), date(2026, 2, 3), "090",
                                                   updated + timedelta(hours=3))  # fmt: skip
            self.delete_payment(org, reversed_payment["PaymentID"], updated + timedelta(hours=3, minutes=1))
        self.organisations[org.tenant_id] = org
        return org

    def store_contact(self, org: Organisation, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        """A contact as ``PUT /Contacts`` answers it (xero_accounting.yaml, its 200 example): ACTIVE,
        and not yet a customer, which only an ACCREC invoice makes it (components.schemas.Contact.IsCustomer)."""
        contact_id = str(uuid.uuid4())
        contact = {
            "ContactID": contact_id, "ContactStatus": "ACTIVE", "Name": body["Name"],
            "EmailAddress": str(body.get("EmailAddress") or ""), "IsSupplier": False, "IsCustomer": False,
            "UpdatedDateUTC": xero_date(now), "_updated": now,
        }  # fmt: skip
        if body.get("ContactNumber"):
            contact["ContactNumber"] = str(body["ContactNumber"])
        org.contacts[contact_id] = contact
        return contact

    def store_invoice(
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
        if body.get("Type", "ACCREC") == "ACCREC" and not contact.get("IsCustomer"):
            contact["IsCustomer"] = True  # set by the first sales invoice (components.schemas.Contact.IsCustomer)
            contact["UpdatedDateUTC"], contact["_updated"] = xero_date(now), now
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

    def store_payment(self, org: Organisation, invoice: dict[str, Any], amount: Decimal, paid_on: date,
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
