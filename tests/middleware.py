"""An independent ERP middleware for tests: the REST contract, written from its text alone.

It implements the Nudge REST contract v1's list endpoints (``/health``, ``/debtors/list``,
``/invoices/list``, ``/payments/list``) and shares no code with arsync's client or its mock
ERP, so the two cannot agree by construction. Its quirks are the ones real middlewares have:

* ``clock_offset``: its clock runs this many seconds off ours (negative: behind);
* it stamps changes with whole seconds and filters ``modifiedSince`` with a strict ``>``
  (a fair reading of "changed after that point");
* ``outage``: the next n requests get 503, as during a deploy or an ERP restart;
* ``delay``: each list answer takes this long;
* ``hidden_invoices``: invoices the ERP does not list yet (a payment may arrive first).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class Record:
    body: dict[str, Any]
    stamped: datetime


@dataclass
class SkewedMiddleware:
    clock_offset: float = 0.0
    token: str = "ask_independent"
    outage: int = 0
    delay: float = 0.0  # seconds before each list answer: a slow ERP
    debtors: dict[str, Record] = field(default_factory=dict)
    invoices: dict[str, Record] = field(default_factory=dict)
    payments: dict[str, Record] = field(default_factory=dict)
    hidden_invoices: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> datetime:
        return (datetime.now(UTC) + timedelta(seconds=self.clock_offset)).replace(microsecond=0)

    # Changing the ERP's data -----------------------------------------------------------

    def put_debtor(self, debtor_id: str, name: str) -> None:
        with self.lock:
            self.debtors[debtor_id] = Record({"erpDebtorId": debtor_id, "name": name, "email": None}, self.now())

    def put_invoice(self, invoice_id: str, debtor_id: str, total: str, outstanding: str) -> None:
        body = {
            "erpInvoiceId": invoice_id,
            "invoiceNumber": f"N-{invoice_id}",
            "erpDebtorId": debtor_id,
            "debtorName": None,
            "issueDate": "2026-03-01",
            "dueDate": "2026-03-31",
            "currency": "USD",
            "amountTotal": total,
            "amountOutstanding": outstanding,
            "status": "AUTHORISED",
            "lines": [{"description": "Work", "quantity": "1", "unitPrice": total, "amount": total}],
        }
        with self.lock:
            self.invoices[invoice_id] = Record(body, self.now())

    def put_payment(self, payment_id: str, invoice_id: str, amount: str) -> None:
        body = {"erpPaymentId": payment_id, "erpInvoiceId": invoice_id, "amount": amount, "paymentDate": "2026-03-10"}
        with self.lock:
            self.payments[payment_id] = Record(body, self.now())

    def reveal_invoice(self, invoice_id: str) -> None:
        with self.lock:
            self.hidden_invoices.discard(invoice_id)
            self.invoices[invoice_id].stamped = self.now()

    # Serving ---------------------------------------------------------------------------

    def listing(self, entity: str, page: int, limit: int, since: datetime | None) -> tuple[list[dict[str, Any]], bool]:
        with self.lock:
            kept = {"debtors": self.debtors, "invoices": self.invoices, "payments": self.payments}[entity]
            records = list(kept.items())
            visible = [
                record.body
                for key, record in sorted(records)
                if not (entity == "invoices" and key in self.hidden_invoices)
                and (since is None or record.stamped > since)
            ]
        start = (page - 1) * limit
        return visible[start : start + limit], start + limit < len(visible)


UNAUTHORIZED = "Missing or invalid Authorization header. Use: Authorization: Bearer <token>"


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"schemaVersion": "1", "error": message, "code": code}, status_code=status)


def create_app(erp: SkewedMiddleware) -> FastAPI:
    app = FastAPI()

    @app.post("/{entity}/list")
    async def list_entity(entity: str, request: Request) -> JSONResponse:
        body = await request.json()
        erp.requests.append({"path": request.url.path, "body": body})
        if erp.outage > 0:
            erp.outage -= 1
            return _error(503, "INTERNAL_ERROR", "the ERP is restarting")
        if request.headers.get("authorization") != f"Bearer {erp.token}":
            return _error(401, "UNAUTHORIZED", UNAUTHORIZED)
        if entity not in {"debtors", "invoices", "payments"}:
            return _error(404, "BAD_REQUEST", "no such list")
        if erp.delay:
            await asyncio.sleep(erp.delay)
        raw = body.get("modifiedSince")
        since = datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None
        records, more = erp.listing(entity, int(body.get("page", 1)), int(body.get("limit", 100)), since)
        return JSONResponse({"schemaVersion": "1", entity: records, "hasMore": more})

    @app.post("/health")
    async def health(request: Request) -> JSONResponse:
        if erp.outage > 0:
            erp.outage -= 1
            return _error(503, "INTERNAL_ERROR", "the ERP is restarting")
        return JSONResponse({"schemaVersion": "1", "ok": True, "service": "independent"})

    return app


def outstanding_by_invoice(erp: SkewedMiddleware) -> dict[str, Decimal]:
    """What the ERP says each listed invoice still owes."""
    with erp.lock:
        return {
            key: Decimal(record.body["amountOutstanding"])
            for key, record in erp.invoices.items()
            if key not in erp.hidden_invoices
        }
