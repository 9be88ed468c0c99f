"""A complete middleware for the Sandbox's tests, written from the REST contract's text alone.

It serves all six endpoints (``/health``, the three lists, the two pushes) and shares no code
with arsync: no contract models, no mock ERP. Knobs make it behave as real middlewares do,
correctly or not:

* ``page_cap``: the server returns at most this many records a page (Xero caps at 100, Sage
  at 200); pages may then be shorter than ``limit`` with ``hasMore: true``, which is legal.
* ``has_more_from_limit``: the bug a developer adds to silence a false alarm: ``hasMore`` is
  computed as "this page was full" against the requested limit. With a page cap it stops
  every walk early.
* ``open_paths``: paths that skip the token check.

And one knob per bug the Sandbox must catch: ``reject_three_decimals``, ``ascii_only`` (500 on
other text), ``push_without_version``, ``date_only_filter`` (``modifiedSince`` compared by
date, so later changes of the same day never sync), ``slow_health`` (seconds, once) and
``overpaid_invoice``, ``hide_pushed`` (pushed invoices never show in the list),
``list_without_version`` (list and health answers lack ``schemaVersion``),
``text_content_type`` (the payments list says ``text/plain``) and ``overlap_pages`` (each invoice
page after the first starts one record early, so the boundary record comes twice) and
``us_dates`` (the last invoice's due date is written ``02/10/2026``).
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

UNAUTHORIZED = "Missing or invalid Authorization header. Use: Authorization: Bearer <token>"
ZONED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class ContractMiddleware:
    token: str = "ask_fresh_middleware"
    page_cap: int | None = None
    has_more_from_limit: bool = False
    open_paths: frozenset[str] = frozenset()
    reject_three_decimals: bool = False
    ascii_only: bool = False
    push_without_version: bool = False
    date_only_filter: bool = False
    slow_health: float = 0.0
    overpaid_invoice: bool = False
    hide_pushed: bool = False
    list_without_version: bool = False
    text_content_type: bool = False
    overlap_pages: bool = False
    us_dates: bool = False
    debtors: list[dict[str, Any]] = field(default_factory=list)
    invoices: list[dict[str, Any]] = field(default_factory=list)
    payments: list[dict[str, Any]] = field(default_factory=list)
    stamps: dict[str, datetime] = field(default_factory=dict)  # record id: when it last changed
    keys: dict[str, str] = field(default_factory=dict)  # Idempotency-Key: the id it got
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def with_records(
        cls, debtors: int = 12, invoices: int = 57, payments: int = 31, **options: Any
    ) -> ContractMiddleware:
        erp = cls(**options)
        then = datetime(2026, 1, 1, tzinfo=UTC)
        for n in range(1, debtors + 1):
            erp._add("debtors", {"erpDebtorId": f"D{n:03d}", "name": f"Débiteur {n}", "email": None}, then)
        for n in range(1, invoices + 1):
            erp._add("invoices", _invoice(f"I{n:04d}", f"INV-{n}", f"D{1 + n % debtors:03d}", "KWD", "12.345"), then)
        if erp.overpaid_invoice:
            erp.invoices[0]["amountOutstanding"] = 99.0
        if erp.us_dates:
            erp.invoices[-1]["dueDate"] = "02/10/2026"
        for n in range(1, payments + 1):
            erp._add("payments", {"erpPaymentId": f"P{n:04d}", "erpInvoiceId": f"I{n:04d}", "amount": 1.5,
                                  "paymentDate": "2026-02-01"}, then)  # fmt: skip
        return erp

    def _add(self, entity: str, record: dict[str, Any], at: datetime) -> None:
        getattr(self, entity).append(record)
        key = next(v for k, v in record.items() if k in ("erpDebtorId", "erpInvoiceId", "erpPaymentId"))
        self.stamps[key] = at


def _invoice(erp_id: str, number: str, debtor: str, currency: str, total: str) -> dict[str, Any]:
    amount = float(total)  # JSON numbers, as in the contract's examples; 12.345 prints exactly
    return {
        "erpInvoiceId": erp_id, "invoiceNumber": number, "erpDebtorId": debtor, "debtorName": None,
        "issueDate": "2026-01-10", "dueDate": "2026-02-10", "currency": currency,
        "amountTotal": amount, "amountOutstanding": amount, "status": "AUTHORISED",
        "lines": [{"description": "Service", "quantity": 1, "unitPrice": amount, "amount": amount}],
    }  # fmt: skip


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error(status: int, code: str, message: str, field_errors: list[dict[str, str]] | None = None) -> Response:
    body: dict[str, Any] = {"schemaVersion": "1", "error": message, "code": code}
    if field_errors:
        body["details"] = {"fieldErrors": field_errors}
    return _json(body, status)


def _invalid(field_name: str, message: str) -> Response:
    return _error(422, "VALIDATION_FAILED", "Request failed validation", [{"field": field_name, "message": message}])


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _money(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def create_app(erp: ContractMiddleware) -> FastAPI:
    app = FastAPI()

    def pushed(body: dict[str, Any]) -> Response:
        if erp.push_without_version:
            body = {k: v for k, v in body.items() if k != "schemaVersion"}
        return _json(body)

    def versioned(body: dict[str, Any]) -> dict[str, Any]:
        return body if erp.list_without_version else {"schemaVersion": "1"} | body

    def refused_by_quirks(raw: bytes, amounts: list[Decimal]) -> Response | None:
        if erp.ascii_only and not raw.isascii():
            return Response(b"Internal Server Error", status_code=500, media_type="text/plain")
        if erp.reject_three_decimals and any(a != a.quantize(Decimal("0.01")) for a in amounts):
            return _invalid("amount", "at most 2 decimals")
        return None

    async def parse(request: Request) -> dict[str, Any] | Response:
        if request.url.path not in erp.open_paths and request.headers.get("authorization") != f"Bearer {erp.token}":
            return _error(401, "UNAUTHORIZED", UNAUTHORIZED)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "INVALID_JSON", "Request body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "INVALID_JSON", "Request body must be a JSON object")
        if body.get("schemaVersion") != "1":
            return _error(400, "BAD_REQUEST", 'schemaVersion must be "1"')
        return body

    @app.post("/health")
    async def health(request: Request) -> Response:
        body = await parse(request)
        if isinstance(body, Response):
            return body
        if erp.slow_health:
            delay, erp.slow_health = erp.slow_health, 0.0
            await asyncio.sleep(delay)
        return _json(versioned({"ok": True, "service": "fresh-middleware"}))

    @app.post("/{entity}/list")
    async def listing(entity: str, request: Request) -> Response:
        body = await parse(request)
        if isinstance(body, Response):
            return body
        if entity not in ("debtors", "invoices", "payments"):
            return _error(404, "BAD_REQUEST", "unknown list")
        page, limit = body.get("page", 1), body.get("limit", 100)
        if not _positive_int(page):
            return _invalid("page", "must be an integer of at least 1")
        if not _positive_int(limit):
            return _invalid("limit", "must be an integer of at least 1")
        since = None
        if body.get("modifiedSince") is not None:
            raw = body["modifiedSince"]
            if not isinstance(raw, str) or not ZONED.match(raw):
                return _invalid("modifiedSince", "must be an ISO-8601 date-time with a zone")
            try:
                since = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                return _invalid("modifiedSince", "is not a real date-time")
        served = min(limit, erp.page_cap or limit)
        with erp.lock:
            id_field = {"debtors": "erpDebtorId", "invoices": "erpInvoiceId", "payments": "erpPaymentId"}[entity]
            if erp.date_only_filter and since is not None:
                day = since.date()
                records = [r for r in getattr(erp, entity) if erp.stamps[r[id_field]].date() > day]
            else:
                records = [r for r in getattr(erp, entity) if since is None or erp.stamps[r[id_field]] > since]
        if erp.hide_pushed and entity == "invoices":
            records = [r for r in records if not r["erpInvoiceId"].startswith("PUSHED-")]
        start = (page - 1) * served
        overlap = erp.overlap_pages and entity == "invoices"
        chunk = records[max(start - 1, 0) if overlap else start : start + served]
        more = len(chunk) == limit if erp.has_more_from_limit else start + served < len(records)
        answer = _json(versioned({entity: chunk, "hasMore": more}))
        if erp.text_content_type and entity == "payments":
            answer.headers["content-type"] = "text/plain; charset=utf-8"
        return answer

    @app.post("/invoices/push")
    async def push_invoice(request: Request) -> Response:
        body = await parse(request)
        if isinstance(body, Response):
            return body
        for name in ("invoiceNumber", "erpDebtorId", "currency"):
            if not isinstance(body.get(name), str) or not body[name]:
                return _invalid(name, "is required")
        for name in ("issueDate", "dueDate"):
            if not isinstance(body.get(name), str) or not DAY.match(body[name]):
                return _invalid(name, "must be YYYY-MM-DD")
        lines = body.get("lines")
        if not isinstance(lines, list) or not lines:
            return _invalid("lines", "at least one line")
        amounts = [_money(line.get("amount")) if isinstance(line, dict) else None for line in lines]
        if any(a is None for a in amounts):
            return _invalid("lines", "every line needs a numeric amount")
        quirk = refused_by_quirks(await request.body(), [a for a in amounts if a is not None])
        if quirk is not None:
            return quirk
        with erp.lock:
            if not any(d["erpDebtorId"] == body["erpDebtorId"] for d in erp.debtors):
                return _invalid("erpDebtorId", "no such debtor")
            key = request.headers.get("idempotency-key")
            same = [i for i in erp.invoices if i["invoiceNumber"] == body["invoiceNumber"]]
            if key in erp.keys or same:
                return pushed(
                    {"schemaVersion": "1", "erpInvoiceId": erp.keys.get(key or "") or same[0]["erpInvoiceId"]}
                )
            total = f"{sum(a for a in amounts if a is not None)}"
            erp_id = f"PUSHED-{len(erp.invoices) + 1}"
            record = _invoice(erp_id, body["invoiceNumber"], body["erpDebtorId"], body["currency"], total)
            record["lines"] = lines
            erp._add("invoices", record, datetime.now(UTC))
            if key:
                erp.keys[key] = erp_id
        return pushed({"schemaVersion": "1", "erpInvoiceId": erp_id})

    @app.post("/payments/push")
    async def push_payment(request: Request) -> Response:
        body = await parse(request)
        if isinstance(body, Response):
            return body
        amount = _money(body.get("amount"))
        if amount is None or amount <= 0:
            return _invalid("amount", "must be a positive number")
        quirk = refused_by_quirks(await request.body(), [amount])
        if quirk is not None:
            return quirk
        if not isinstance(body.get("paymentDate"), str) or not DAY.match(body["paymentDate"]):
            return _invalid("paymentDate", "must be YYYY-MM-DD")
        with erp.lock:
            if not any(i["erpInvoiceId"] == body.get("erpInvoiceId") for i in erp.invoices):
                return _invalid("erpInvoiceId", "no such invoice")
            key = request.headers.get("idempotency-key")
            if key and key in erp.keys:
                return pushed({"schemaVersion": "1", "erpPaymentId": erp.keys[key]})
            erp_id = f"PAID-{len(erp.payments) + 1}"
            erp._add("payments", {"erpPaymentId": erp_id, "erpInvoiceId": body["erpInvoiceId"],
                                  "amount": body["amount"], "paymentDate": body["paymentDate"]},
                     datetime.now(UTC))  # fmt: skip
            if key:
                erp.keys[key] = erp_id
        return pushed({"schemaVersion": "1", "erpPaymentId": erp_id})

    return app
