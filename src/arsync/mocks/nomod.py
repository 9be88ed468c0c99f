"""``arsync mock-nomod``: a stateful stand-in for the parts of Nomod's API arsync uses.

It validates like Nomod does: an ``X-API-KEY`` (``sk_test_…``), required fields, email format,
one customer per email, amounts as decimal strings with no more places than the currency has.
Errors have Nomod's shape, ``{"error": {"message", "code"}}``.

Routes: ``POST /v1/customers``, ``POST /v1/invoices``, ``POST /v1/links``,
``GET /v1/charges/{id}``. The control surface under ``/_mock`` (no auth, loopback only):

* ``POST /_mock/pay`` ``{"invoiceId" | "linkId"}``: a paid charge, and its signed webhook sent
  to the URL set with ``PUT /_mock/webhook`` ``{"url", "secret"}``
* ``PUT /_mock/faults`` ``[NomodFault, …]`` and ``DELETE /_mock/faults``: 5xx, 429, delays
* ``GET /_mock/state``
"""

from __future__ import annotations

import asyncio
import html
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field, TypeAdapter

from arsync.mocks.faults import take_first
from arsync.money import exponent
from arsync.nomod import signing

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
    def __init__(self, message: str, code: str = "validation_error", status: int = 400) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


@dataclass
class MockNomodState:
    """Everything a test may want to inspect or change while the mock runs."""

    api_key: str | None = None  # None: any sk_test_… key
    base_url: str = "http://127.0.0.1"
    webhook_url: str | None = None
    webhook_secret: str | None = None
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[NomodFault] = field(default_factory=list)
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def key_ok(self, presented: str | None) -> bool:
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
        first_name = body.get("first_name")
        if not isinstance(first_name, str) or not first_name.strip():
            raise NomodValidationError("Missing required fields")
        email = body.get("email")
        if email is not None and (not isinstance(email, str) or not EMAIL.match(email)):
            raise NomodValidationError("Invalid email format")
        with self._lock:
            if email and any(c["email"] and c["email"].lower() == email.lower() for c in self.customers.values()):
                raise NomodValidationError("Email already exists", code="duplicate_email")
            customer_id = str(uuid.uuid4())
            record: dict[str, Any] = {
                "id": customer_id,
                "first_name": first_name,
                "last_name": body.get("last_name"),
                "email": email,
                "phone_number": body.get("phone_number"),
                "metadata": body.get("metadata") or {},
                "created": _now(),
            }
            self.customers[customer_id] = record
            return record

    def create_invoice(self, body: dict[str, Any]) -> dict[str, Any]:
        customer = body.get("customer")
        if not isinstance(customer, str) or not customer:
            raise NomodValidationError("Missing required fields")
        currency = _currency(body)
        items, total = _items(body, currency)
        due_date = body.get("due_date")
        if not isinstance(due_date, str) or not DATE.match(due_date):
            raise NomodValidationError("due_date must be YYYY-MM-DD")
        with self._lock:
            if customer not in self.customers:
                raise NomodValidationError("Customer not found", code="not_found", status=404)
            invoice_id = str(uuid.uuid4())
            record = {
                "id": invoice_id,
                "customer": customer,
                "currency": currency,
                "items": items,
                "amount": str(total),
                "due_date": due_date,
                "invoice_number": body.get("invoice_number"),
                "status": "unpaid",
                "url": f"{self.base_url}/pay/invoice/{invoice_id}",
                "created": _now(),
            }
            self.invoices[invoice_id] = record
            return record

    def create_link(self, body: dict[str, Any]) -> dict[str, Any]:
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise NomodValidationError("Missing required fields")
        currency = _currency(body)
        items, total = _items(body, currency)
        with self._lock:
            link_id = str(uuid.uuid4())
            record = {
                "id": link_id,
                "title": title,
                "currency": currency,
                "items": items,
                "amount": str(total),
                "status": "unpaid",
                "url": f"{self.base_url}/pay/link/{link_id}",
                "created": _now(),
            }
            self.links[link_id] = record
            return record

    def pay(self, invoice_id: str | None, link_id: str | None) -> dict[str, Any]:
        with self._lock:
            target = self.invoices.get(invoice_id or "") or self.links.get(link_id or "")
            if target is None:
                raise NomodValidationError("Invoice or link not found", code="not_found", status=404)
            target["status"] = "paid"
            charge = {
                "id": str(uuid.uuid4()),
                "status": "paid",
                "amount": target["amount"],
                "currency": target["currency"],
                "invoice": invoice_id if invoice_id in self.invoices else None,
                "link": link_id if link_id in self.links else None,
                "created": _now(),
            }
            self.charges[charge["id"]] = charge
            return charge

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


def _currency(body: dict[str, Any]) -> str:
    currency = body.get("currency")
    if not isinstance(currency, str) or not CURRENCY.match(currency):
        raise NomodValidationError("Missing required fields" if currency is None else "Invalid currency")
    return currency


def _items(body: dict[str, Any], currency: str) -> tuple[list[dict[str, Any]], Decimal]:
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise NomodValidationError("Missing required fields")
    places = exponent(currency)
    total = Decimal(0)
    cleaned: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict) or not item.get("name"):
            raise NomodValidationError("Missing required fields")
        amount = item.get("amount")
        if not isinstance(amount, str):
            raise NomodValidationError("amount must be a decimal string in major units")
        try:
            value = Decimal(amount)
        except InvalidOperation:
            raise NomodValidationError(f"Invalid amount {amount!r}") from None
        if not value.is_finite() or value <= 0 or -value.as_tuple().exponent > places:  # type: ignore[operator]
            raise NomodValidationError(f"Invalid amount {amount!r} for {currency}")
        quantity = item.get("quantity", 1)
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            raise NomodValidationError("quantity must be a positive integer")
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
            return _error("Invalid API key", "unauthorized", 401)
        fault = state.take_fault(path)
        if fault is not None and not fault.after_handling:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status:
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
                return _error("Injected failure", "server_error", fault.status, headers)
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
                return _error("Injected failure", "server_error", fault.status)
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

    @app.get("/v1/charges/{charge_id}")
    async def charge(request: Request, charge_id: str) -> Response:
        def read(_: dict[str, Any]) -> dict[str, Any]:
            found = state.charges.get(charge_id)
            if found is None:
                raise NomodValidationError("Charge not found", code="not_found", status=404)
            return found

        return await handle(request, read)

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


def paid_event(charge: dict[str, Any]) -> bytes:
    """The body of a "charge paid" webhook."""
    return orjson.dumps({"type": "charge.paid", "data": {"id": charge["id"], "status": charge["status"]}})


async def deliver_webhook(state: MockNomodState, charge: dict[str, Any]) -> dict[str, Any]:
    """POST the signed paid event to the configured URL; returns what happened."""
    if not state.webhook_url or not state.webhook_secret:
        return {"status": None, "reason": "no webhook configured (PUT /_mock/webhook)"}
    body = paid_event(charge)
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
