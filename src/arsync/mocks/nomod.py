"""``arsync mock-nomod``: a stateful stand-in for the parts of Nomod's API arsync uses.

Each rule it enforces names its public source beside it: Nomod's API reference pages
(nomod.com/docs/api-reference: create-contact, invoices/create, generate-link, charges/detail,
requests-responses, webhooks) or flexprice's production Nomod client
(flexprice/flexprice ``internal/integration/nomod/``). Where neither says, the rule is marked
"unknown" and the mock takes the strict reading, so arsync cannot come to rely on leniency.

Errors have Nomod's shape, ``{"error": {"message", "code"}}``, with Nomod's documented codes;
the messages are the mock's own words, so a client that reads messages instead of codes fails.

Routes: ``POST /v1/customers``, ``POST /v1/invoices``, ``POST /v1/links``, their lists
(``GET`` with ``page``/``page_size``), ``GET /v1/invoices/{id}`` and ``GET /v1/charges/{id}``.
The control surface under ``/_mock`` (no auth, loopback only):

* ``POST /_mock/pay`` ``{"invoiceId" | "linkId"}``: a paid charge, and its signed webhook sent
  to the URL set with ``PUT /_mock/webhook`` ``{"url", "secret", "shape"}``; ``shape`` is
  ``event`` (``{"eventId", "type": "charge.completed", "data": {"id"}}``) or ``flat``
  (``{"id", "invoice_id" | "payment_link_id"}``), the two bodies seen in the wild
* ``PUT /_mock/faults`` ``[NomodFault, …]`` and ``DELETE /_mock/faults``: 5xx, 429, delays
* ``GET /_mock/state``
"""

from __future__ import annotations

import asyncio
import html
import itertools
import re
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field, TypeAdapter

from arsync.mocks.faults import take_first
from arsync.money import exponent
from arsync.nomod import signing

# Nomod checks the email format (invalid_email, requests-responses); its exact rule is unknown.
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class NomodFault(BaseModel):
    """One injected misbehaviour on requests whose path starts with ``path``."""

    path: str = Field(description="e.g. /v1/customers")
    status: int | None = Field(default=None, description="Answer with this status (5xx, 429)")
    retry_after: int | None = None
    delay: float = Field(default=0, ge=0, description="Seconds to wait before answering")
    after_handling: bool = Field(default=False, description="Handle the request, then misbehave")
    times: int | None = Field(default=None, ge=1)


_faults_adapter = TypeAdapter(list[NomodFault])


class NomodValidationError(Exception):
    def __init__(self, message: str, code: str = "invalid", status: int = 400) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


# Field limits: Nomod API reference (create-contact; invoices/create; generate-link).
CUSTOMER_FIELDS = {
    "first_name": 150, "last_name": 150, "email": 254, "phone_number": 15, "business_name": 50,
    "job_title": 50, "country": 2, "province": 64, "street": 100, "city": 100, "zip_code": 16,
}  # fmt: skip
INVOICE_FIELDS = {"customer", "currency", "items", "due_date", "invoice_number", "title", "note",
                  "discount_percentage", "shipping_address_required", "starts_at", "custom_fields", "allow_tabby",
                  "allow_tamara", "allow_service_fee", "success_url", "failure_url"}  # fmt: skip
LINK_FIELDS = {"currency", "items", "title", "note", "discount_percentage", "shipping_address_required",
               "allow_tip", "custom_fields", "success_url", "failure_url", "allow_tabby", "allow_tamara",
               "allow_service_fee", "payment_expiry_limit", "expiry_date"}  # fmt: skip
# The fee the mock adds when allow_service_fee is on (Nomod's default, invoices/create). Nomod's
# real rate depends on the merchant's plan: unknown; this one is the mock's.
MOCK_SERVICE_FEE_RATE = Decimal("0.025")


@dataclass
class MockNomodState:
    """Everything a test may want to inspect or change while the mock runs."""

    api_key: str | None = None  # None: any sk_test_… key
    base_url: str = "http://127.0.0.1"
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_shape: str = "event"  # event | flat
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[NomodFault] = field(default_factory=list)
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    paid_invoices: dict[str, str | None] = field(default_factory=dict)  # charge id -> Nomod invoice id
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _references: itertools.count[int] = field(default_factory=lambda: itertools.count(100_001))

    def key_ok(self, presented: str | None) -> bool:
        # X-API-KEY; test keys start sk_test_ (API reference, authentication).
        if not presented:
            return False
        if self.api_key is not None:
            return presented == self.api_key
        return presented.startswith("sk_test_") and len(presented) > len("sk_test_")

    def take_fault(self, path: str) -> NomodFault | None:
        with self._lock:
            return take_first(self.faults, lambda fault: path.startswith(fault.path))

    # Resources ------------------------------------------------------------------------------

    def create_customer(self, body: dict[str, Any]) -> dict[str, Any]:
        _known_fields(body, set(CUSTOMER_FIELDS))
        for name, limit in CUSTOMER_FIELDS.items():
            _optional_string(body, name, limit)
        first_name = body.get("first_name")
        if not first_name or not first_name.strip():
            # first_name is required and not blank (create-contact).
            raise NomodValidationError("first_name: this field is required.", "field_required")
        email = body.get("email")
        if email is not None and not EMAIL.match(email):
            raise NomodValidationError("email: enter a valid email address.", "invalid_email")
        with self._lock:
            # One customer per email: no code is documented for it (unknown); Nomod's dashboard
            # refuses a second contact with the same email, so the mock does too.
            if email and any((c.get("email") or "").lower() == email.lower() for c in self.customers.values()):
                raise NomodValidationError("A customer with this email already exists.", "invalid")
            customer_id = str(uuid.uuid4())
            record: dict[str, Any] = {"id": customer_id, "created": _now()}
            record |= {name: body.get(name, "") for name in CUSTOMER_FIELDS}
            self.customers[customer_id] = record
            return record

    def create_invoice(self, body: dict[str, Any]) -> dict[str, Any]:
        _known_fields(body, INVOICE_FIELDS)
        customer = body.get("customer")
        if not isinstance(customer, str) or not customer:
            raise NomodValidationError("customer: this field is required.", "field_required")
        currency = _currency(body)
        items, total = _items(body, currency)
        due_date = body.get("due_date")
        if not isinstance(due_date, str) or not DATE.match(due_date):
            raise NomodValidationError("due_date: this field is required.", "field_required")
        # A due date before the start date (today unless starts_at) is invalid_due_date (invoices/create).
        if date.fromisoformat(due_date) < datetime.now(UTC).date():
            raise NomodValidationError("due_date: must not be earlier than the start date.", "invalid_due_date")
        _optional_string(body, "invoice_number", 30)
        _optional_string(body, "title", 50)
        _optional_string(body, "note", 280)
        with self._lock:
            if customer not in self.customers:
                raise NomodValidationError("customer: invalid customer.", "invalid_customer")
            invoice_id = str(uuid.uuid4())
            record = {
                "id": invoice_id,
                "reference_id": str(next(self._references)),
                "customer": {"id": customer} | {k: self.customers[customer][k] for k in ("first_name", "email")},
                "currency": currency,
                "items": items,
                "amount": str(total),
                "due_date": due_date,
                "invoice_number": body.get("invoice_number", ""),
                "title": body.get("title", ""),
                "note": body.get("note", ""),
                "service_fee": _service_fee(body, total, currency),
                "status": "unpaid",  # paid, unpaid, overdue, cancelled, scheduled (flexprice dto.go)
                "url": f"{self.base_url}/pay/invoice/{invoice_id}",
                "created": _now(),
            }
            self.invoices[invoice_id] = record
            return record

    def create_link(self, body: dict[str, Any]) -> dict[str, Any]:
        _known_fields(body, LINK_FIELDS)
        currency = _currency(body)
        items, total = _items(body, currency)
        _optional_string(body, "title", 50)
        _optional_string(body, "note", 280)
        with self._lock:
            link_id = str(uuid.uuid4())
            record = {
                "id": link_id,
                "reference_id": str(next(self._references)),
                "title": body.get("title", ""),
                "note": body.get("note", ""),
                "currency": currency,
                "items": items,
                "amount": str(total),
                "service_fee": _service_fee(body, total, currency),
                # enabled/disabled; a link stays payable until it expires (generate-link).
                "status": "enabled",
                "url": f"{self.base_url}/pay/link/{link_id}",
                "created": _now(),
            }
            self.links[link_id] = record
            return record

    def pay(self, invoice_id: str | None, link_id: str | None) -> dict[str, Any]:
        """A paid charge shaped as ``GET /v1/charges/{id}`` answers (charges/detail; flexprice
        ChargeResponse): ``total`` as a decimal string, ``link`` as an object for link payments,
        and no ``invoice`` or ``amount`` key. What a charge says of the Nomod invoice it paid is
        unknown, so the mock says nothing beyond the payer's customer."""
        with self._lock:
            invoice = self.invoices.get(invoice_id or "")
            link = self.links.get(link_id or "")
            target = invoice or link
            if target is None:
                raise NomodValidationError("Not found.", "not_found", 404)
            if invoice is not None:
                if invoice["status"] == "paid":
                    # Paying a paid invoice: Nomod's answer is unknown; the mock refuses it.
                    raise NomodValidationError("This invoice is already paid.", "invalid")
                invoice["status"] = "paid"
            fee = Decimal(target.get("service_fee", "0"))  # objects kept by an older mock have none
            charge: dict[str, Any] = {
                "id": str(uuid.uuid4()),
                "reference_id": next(self._references),
                "created": _now(),
                "items": [
                    item | {"total_amount": str(Decimal(item["amount"]) * item["quantity"])} for item in target["items"]
                ],
                "currency": target["currency"],
                "discount": "0",
                "service_fee": str(fee),
                "status": "paid",
                "tip": "0",
                "tax": "0",
                "total": str(Decimal(target["amount"]) + fee),
                "refund_total": "0",
                "note": "",
                "payment_method": "card",
            }
            if link is not None:
                charge["link"] = {"id": link["id"], "reference_id": link["reference_id"], "status": link["status"]}
            if invoice is not None:
                charge["customer"] = invoice["customer"]
            self.charges[charge["id"]] = charge
            self.paid_invoices[charge["id"]] = invoice["id"] if invoice else None
            return charge

    def listing(self, kind: str, query: Mapping[str, str]) -> dict[str, Any]:
        """``{count, next, previous, results}`` with ``page`` and ``page_size`` (API reference, pagination)."""
        records = list(getattr(self, kind).values())
        try:
            page, size = int(query.get("page", "1")), int(query.get("page_size", "10"))
        except ValueError:
            raise NomodValidationError("Invalid page.", "invalid") from None
        if page < 1 or not 1 <= size <= 100:
            raise NomodValidationError("Invalid page.", "invalid")
        chunk = records[(page - 1) * size : page * size]
        more = page * size < len(records)
        return {"count": len(records), "next": f"?page={page + 1}" if more else None,
                "previous": f"?page={page - 1}" if page > 1 else None, "results": chunk}  # fmt: skip

    def dump(self) -> bytes:
        """The stored objects as JSON, for :meth:`load` (the demo keeps them between runs)."""
        with self._lock:
            kept = {"customers": self.customers, "invoices": self.invoices, "links": self.links,
                    "charges": self.charges}  # fmt: skip
            return orjson.dumps(kept)

    def load(self, raw: bytes) -> None:
        stored = orjson.loads(raw)
        with self._lock:
            self.customers = dict(stored.get("customers", {}))
            self.invoices = dict(stored.get("invoices", {}))
            self.links = dict(stored.get("links", {}))
            self.charges = dict(stored.get("charges", {}))

    def stats(self) -> dict[str, int]:
        return {
            "customers": len(self.customers),
            "invoices": len(self.invoices),
            "links": len(self.links),
            "charges": len(self.charges),
            "webhooksDelivered": sum(1 for d in self.deliveries if d.get("status") == 200),
        }


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _known_fields(body: dict[str, Any], allowed: set[str]) -> None:
    # Unknown: whether Nomod ignores or refuses undocumented fields. The mock refuses them.
    extra = sorted(set(body) - allowed)
    if extra:
        raise NomodValidationError(f"{extra[0]}: unknown field.", "invalid")


def _optional_string(body: dict[str, Any], name: str, limit: int) -> None:
    """Documented as a string of at most ``limit`` characters. JSON null: unknown; refused here."""
    if name not in body:
        return
    value = body[name]
    if value is None:
        raise NomodValidationError(f"{name}: this field may not be null.", "invalid")
    if not isinstance(value, str):
        raise NomodValidationError(f"{name}: not a valid string.", "invalid")
    if len(value) > limit:
        raise NomodValidationError(f"{name}: ensure this field has no more than {limit} characters.", "invalid")


def _currency(body: dict[str, Any]) -> str:
    # ISO 4217, three letters (invoices/create); invalid_currency (requests-responses).
    currency = body.get("currency")
    if currency is None:
        raise NomodValidationError("currency: this field is required.", "field_required")
    if not isinstance(currency, str) or not CURRENCY.match(currency):
        raise NomodValidationError("currency: not a valid currency.", "invalid_currency")
    return currency


def _service_fee(body: dict[str, Any], total: Decimal, currency: str) -> str:
    # allow_service_fee defaults to true (invoices/create, generate-link).
    allowed = body.get("allow_service_fee", True)
    if not isinstance(allowed, bool):
        raise NomodValidationError("allow_service_fee: must be a boolean.", "invalid")
    if not allowed:
        return "0"
    return str((total * MOCK_SERVICE_FEE_RATE).quantize(Decimal(10) ** -exponent(currency)))


def _items(body: dict[str, Any], currency: str) -> tuple[list[dict[str, Any]], Decimal]:
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise NomodValidationError("items: this field is required.", "field_required")
    places = exponent(currency)
    total = Decimal(0)
    cleaned: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict) or not item.get("name"):
            raise NomodValidationError("items.name: this field is required.", "field_required")
        _optional_string(item, "name", 200)  # item name ≤ 200 (invoices/create)
        amount = item.get("amount")
        # Amounts are decimal strings in major units (invoices/create).
        if not isinstance(amount, str):
            raise NomodValidationError("items.amount: a decimal string is required.", "invalid_amount")
        try:
            value = Decimal(amount)
        except InvalidOperation:
            raise NomodValidationError(f"items.amount: {amount!r} is not a number.", "invalid_amount") from None
        if not value.is_finite() or value <= 0 or -value.as_tuple().exponent > places:  # type: ignore[operator]
            raise NomodValidationError(f"items.amount: {amount!r} is not a valid {currency} amount.", "invalid_amount")
        quantity = item.get("quantity", 1)
        # Quantity 1-999: flexprice's client ("typically 1-999").
        if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= 999:
            raise NomodValidationError("items.quantity: must be a whole number from 1 to 999.", "invalid")
        total += value * quantity
        cleaned.append({"name": item["name"], "amount": amount, "quantity": quantity})
    return cleaned, total


def _error(message: str, code: str, status: int, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"error": {"message": message, "code": code}})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _ok(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def create_mock_nomod_app(state: MockNomodState) -> FastAPI:
    """The mock Nomod API as an ASGI app bound to ``state``."""
    app = FastAPI(title="arsync mock Nomod", docs_url=None, redoc_url=None)

    async def handle(request: Request, action: Any) -> Response:
        path = request.url.path
        raw = await request.body()
        state.requests.append({"method": request.method, "path": path, "body": raw.decode(errors="replace")})
        if not state.key_ok(request.headers.get("x-api-key")):
            return _error("Authentication credentials were not provided or are invalid.", "not_authenticated", 401)
        fault = state.take_fault(path)
        if fault is not None and not fault.after_handling:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status:
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
                return _error("Injected failure", _fault_code(fault.status), fault.status, headers)
        try:
            body = orjson.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise NomodValidationError("Body must be a JSON object")
            result = action(body)
        except orjson.JSONDecodeError:
            return _error("Invalid JSON", "invalid_json", 400)
        except NomodValidationError as exc:
            return _error(exc.message, exc.code, exc.status)
        if fault is not None and fault.after_handling:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status:
                return _error("Injected failure", _fault_code(fault.status), fault.status)
        return _ok(result, 201 if request.method == "POST" else 200)

    @app.post("/v1/customers")
    async def customers(request: Request) -> Response:
        return await handle(request, state.create_customer)

    @app.post("/v1/invoices")
    async def invoices(request: Request) -> Response:
        return await handle(request, state.create_invoice)

    @app.post("/v1/links")
    async def links(request: Request) -> Response:
        return await handle(request, state.create_link)

    @app.get("/v1/customers")
    async def list_customers(request: Request) -> Response:
        return await handle(request, lambda _: state.listing("customers", request.query_params))

    @app.get("/v1/invoices")
    async def list_invoices(request: Request) -> Response:
        return await handle(request, lambda _: state.listing("invoices", request.query_params))

    @app.get("/v1/links")
    async def list_links(request: Request) -> Response:
        return await handle(request, lambda _: state.listing("links", request.query_params))

    def reader(records: dict[str, dict[str, Any]], object_id: str) -> Any:
        def read(_: dict[str, Any]) -> dict[str, Any]:
            found = records.get(object_id)
            if found is None:
                raise NomodValidationError("Not found.", code="not_found", status=404)
            return found

        return read

    @app.get("/v1/invoices/{invoice_id}")
    async def get_invoice(request: Request, invoice_id: str) -> Response:
        return await handle(request, reader(state.invoices, invoice_id))

    @app.get("/v1/charges/{charge_id}")
    async def charge(request: Request, charge_id: str) -> Response:
        return await handle(request, reader(state.charges, charge_id))

    @app.get("/pay/{kind}/{object_id}", include_in_schema=False)
    async def pay_page(kind: str, object_id: str) -> Response:
        """The page a payment URL opens: what is owed, and a button that pays it."""
        target = (state.invoices if kind == "invoice" else state.links).get(object_id)
        if target is None:
            return Response("Not found", status_code=404, media_type="text/plain")
        title = html.escape(str(target.get("invoice_number") or target.get("title") or object_id))
        amount = f"{html.escape(target['amount'])} {html.escape(target['currency'])}"
        if target["status"] == "paid":
            return Response(f"<h1>{title}</h1><p>{amount}: paid</p>", media_type="text/html")
        if target.get("service_fee", "0") != "0":
            amount += f" + {html.escape(target['service_fee'])} service fee"
        form = f"<form method='post'><button type='submit'>Pay {amount}</button></form>"
        return Response(f"<h1>{title}</h1><p>Mock Nomod: {amount} due.</p>{form}", media_type="text/html")

    @app.post("/pay/{kind}/{object_id}", include_in_schema=False)
    async def pay_from_page(kind: str, object_id: str) -> Response:
        try:
            charge = state.pay(object_id if kind == "invoice" else None, object_id if kind == "link" else None)
        except NomodValidationError as exc:
            return Response(exc.message, status_code=exc.status, media_type="text/plain")
        delivery = await deliver_webhook(state, charge)
        outcome = "webhook delivered" if delivery.get("status") == 200 else f"webhook not delivered: {delivery}"
        return Response(f"<h1>Paid</h1><p>charge {charge['id']}; {html.escape(outcome)}</p>", media_type="text/html")

    @app.put("/_mock/webhook", include_in_schema=False)
    async def set_webhook(request: Request) -> Response:
        body = orjson.loads(await request.body())
        state.webhook_url, state.webhook_secret = body["url"], body["secret"]
        state.webhook_shape = body.get("shape", state.webhook_shape)
        return _ok({"ok": True})

    @app.post("/_mock/pay", include_in_schema=False)
    async def pay(request: Request) -> Response:
        body = orjson.loads(await request.body())
        try:
            charge = state.pay(body.get("invoiceId"), body.get("linkId"))
        except NomodValidationError as exc:
            return _error(exc.message, exc.code, exc.status)
        delivery = await deliver_webhook(state, charge)
        return _ok({"charge": charge, "delivery": delivery})

    @app.put("/_mock/faults", include_in_schema=False)
    async def set_faults(request: Request) -> Response:
        state.faults = _faults_adapter.validate_json(await request.body())
        return _ok({"faults": len(state.faults)})

    @app.delete("/_mock/faults", include_in_schema=False)
    async def clear_faults() -> Response:
        state.faults = []
        return _ok({"faults": 0})

    @app.get("/_mock/state", include_in_schema=False)
    async def get_state() -> Response:
        return _ok(state.stats())

    return app


def _fault_code(status: int) -> str:
    # 429 answers carry code throttled (API reference, requests-responses); a 5xx code is unknown.
    return "throttled" if status == 429 else "server_error"


def paid_event(charge: dict[str, Any], shape: str, nomod_invoice_id: str | None) -> bytes:
    """A webhook body in one of the two shapes seen in the wild (nothing else about it is known).

    ``event``: ``{"eventId", "type": "charge.completed", "data": {"id"}}`` (a third-party Nomod
    integration); ``flat``: ``{"id", "invoice_id" | "payment_link_id"}`` (flexprice's
    NomodWebhookPayload).
    """
    if shape == "flat":
        flat: dict[str, Any] = {"id": charge["id"]}
        if nomod_invoice_id:
            flat["invoice_id"] = nomod_invoice_id
        elif charge.get("link"):
            flat["payment_link_id"] = charge["link"]["id"]
        return orjson.dumps(flat)
    return orjson.dumps({"eventId": str(uuid.uuid4()), "type": "charge.completed", "data": {"id": charge["id"]}})


async def deliver_webhook(state: MockNomodState, charge: dict[str, Any]) -> dict[str, Any]:
    """POST the signed paid event to the configured URL; returns what happened."""
    if not state.webhook_url or not state.webhook_secret:
        return {"status": None, "reason": "no webhook configured (PUT /_mock/webhook)"}
    body = paid_event(charge, state.webhook_shape, state.paid_invoices.get(charge["id"]))
    headers = signing.signed_headers(state.webhook_secret, f"msg_{uuid.uuid4().hex}", body)
    async with httpx.AsyncClient(timeout=30) as client:
        try:
            response = await client.post(
                state.webhook_url, content=body, headers=headers | {"content-type": "application/json"}
            )
            delivery = {"status": response.status_code, "headers": headers, "body": body.decode()}
        except httpx.HTTPError as exc:
            delivery = {"status": None, "reason": type(exc).__name__, "headers": headers, "body": body.decode()}
    state.deliveries.append(delivery)
    return delivery
