"""``arsync mock-erp``: a complete reference middleware for the Nudge REST contract v1.

It authenticates, pages, filters by ``modifiedSince`` and makes pushes idempotent exactly as
a conforming middleware should, using the contract models for every request: a push repeated
under the same ``Idempotency-Key`` header gets the id the first one got, and an invoice push
for a number already pushed gets that invoice's id (seed 000, "Idempotency"). Payments are
identified by the key alone, since two equal payments on one day are two payments. Tests, the
benchmark and the demo drive it; so can a middleware author who wants to see a correct
answer.

Besides the six contract endpoints it has a small control surface under ``/_mock`` (no auth,
loopback only; left out with ``control=False``, as for the Sandbox's built-in target) to change
records and inject faults:

* ``POST /_mock/mutate`` ``{"debtors": n, "invoices": n, "payments": n}``
* ``PUT /_mock/faults`` ``[Fault, …]`` and ``DELETE /_mock/faults``
* ``GET /_mock/state``
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from arsync.erp import contract
from arsync.mocks.erp_data import KeyReused, MockErpData
from arsync.mocks.faults import take_first

FaultKind = Literal[
    "malformed_json",
    "wrong_schema_version",
    "contract_violation",
    "endless_has_more",
    "empty_has_more",
    "repeat_page",
    "oversized_page",
]
MAX_LIMIT = 1000

# Deliberately broken variants of the mock, one contract breach each, for the sandbox's
# self-test and for showing what a failing middleware looks like (``arsync mock-erp --break``).
BREAKAGES = {
    "no-auth": "accepts any token, or none",
    "wrong-version-echo": 'answers successes with schemaVersion "2"',
    "endless-has-more": "/invoices/list never ends: hasMore is always true",
    "non-idempotent-push": "/invoices/push creates a new invoice on every retry",
    "nonstandard-errors": 'errors are {"message": …} instead of the standard body',
    "page2-500": "/payments/list answers HTTP 500 on page 2",
    "ignore-modified-since": "/debtors/list ignores modifiedSince",
    "ignore-idempotency-key": "pushes ignore Idempotency-Key: a payment sent again is stored again",
}


MAX_FAULT_DELAY_SECONDS = 120


class Fault(BaseModel):
    """One injected misbehaviour. It fires on matching requests, ``times`` times (or forever)."""

    endpoint: str = Field(description="Contract path, e.g. /invoices/list")
    page: int | None = Field(default=None, description="Only this page; any page if unset")
    status: int | None = Field(default=None, description="Answer with this HTTP status")
    code: str | None = Field(default=None, description="Contract error code for status answers")
    retry_after: int | None = None
    # arsync's own bound (no vendor rule: this is our reference middleware), so that one fault
    # cannot hold a request, and a server thread, for ever.
    delay: float = Field(default=0, ge=0, le=MAX_FAULT_DELAY_SECONDS, description="Seconds to wait before handling")
    delay_after: float = Field(
        default=0, ge=0, le=MAX_FAULT_DELAY_SECONDS, description="Seconds to wait after handling"
    )
    kind: FaultKind | None = None
    times: int | None = Field(default=None, ge=1)


_faults_adapter = TypeAdapter(list[Fault])


@dataclass
class MockErpState:
    """Everything a test may want to inspect or change while the mock runs."""

    data: MockErpData = field(default_factory=MockErpData)
    token: str | None = None
    service: str = "arsync-mock-erp"
    faults: list[Fault] = field(default_factory=list)
    breakages: frozenset[str] = frozenset()
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set_faults(self, faults: list[Fault]) -> None:
        with self._lock:
            self.faults = list(faults)

    def take_fault(self, endpoint: str, page: int | None) -> Fault | None:
        with self._lock:
            return take_first(
                self.faults, lambda fault: fault.endpoint == endpoint and (fault.page is None or fault.page == page)
            )

    def token_ok(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        presented = header.removeprefix("Bearer ").strip()
        if self.token is not None:
            return presented == self.token
        return presented.startswith("ask_") and len(presented) > 4


def _plain_json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = payload if isinstance(payload, bytes) else contract.dumps(payload)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def standard_error_response(
    code: str, message: str, *, field_errors: list[dict[str, str]] | None = None,
    status: int | None = None, headers: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    """The contract's standard error body."""
    body: dict[str, Any] = {"schemaVersion": contract.SCHEMA_VERSION, "error": message, "code": code}
    if field_errors is not None:
        body["details"] = {"fieldErrors": field_errors}
    return _plain_json(body, status or contract.HTTP_STATUS_FOR_CODE.get(code, 400), headers)


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(part) for part in error["loc"]) or "body", "message": error["msg"]}
        for error in exc.errors()
    ]


def _faulty_page(kind: str, key: str, records: list[Any], page: int, limit: int) -> Any:
    if kind == "wrong_schema_version":
        return {"schemaVersion": "2", key: records, "hasMore": False}
    if kind == "contract_violation":
        broken = [dict(r) for r in records] or [{}]
        first_key = next(iter(broken[0]), None)
        if first_key:
            broken[0].pop(first_key)
        return {"schemaVersion": "1", key: broken, "hasMore": True}
    if kind == "empty_has_more":
        return {"schemaVersion": "1", key: [], "hasMore": True}
    if kind == "oversized_page":
        return {"schemaVersion": "1", key: records * (limit // max(len(records), 1) + 2), "hasMore": True}
    return None


def create_mock_erp_app(state: MockErpState, *, control: bool = True) -> FastAPI:
    """The mock middleware as an ASGI app bound to ``state``; ``control`` adds ``/_mock``."""
    app = FastAPI(title="arsync mock ERP (Nudge REST contract v1)", docs_url=None, redoc_url=None)
    data = state.data
    broken = state.breakages
    unknown = broken - BREAKAGES.keys()
    if unknown:
        raise ValueError(f"unknown breakage {sorted(unknown)}; choose from {', '.join(BREAKAGES)}")

    def error_response(code: str, message: str, **kwargs: Any) -> Response:
        if "nonstandard-errors" in broken:
            status = kwargs.get("status") or contract.HTTP_STATUS_FOR_CODE.get(code, 400)
            return Response(orjson.dumps({"message": message}), status_code=status, media_type="application/json")
        return standard_error_response(code, message, **kwargs)

    def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        if "wrong-version-echo" in broken and status == 200 and isinstance(payload, dict):
            payload = payload | {"schemaVersion": "2"}
        return _plain_json(payload, status, headers)

    async def handle(request: Request, endpoint: str) -> Response:
        raw = await request.body()
        page_hint: int | None = None
        try:
            parsed = orjson.loads(raw) if raw else None
            if isinstance(parsed, dict) and isinstance(parsed.get("page"), int):
                page_hint = parsed["page"]
        except orjson.JSONDecodeError:
            parsed = None
        state.requests.append(
            {
                "endpoint": endpoint,
                "page": page_hint,
                "modifiedSince": parsed.get("modifiedSince") if isinstance(parsed, dict) else None,
                "authorized": state.token_ok(request.headers.get("authorization")),
                "body": parsed if endpoint.endswith("/push") else None,
                "idempotencyKey": request.headers.get("idempotency-key"),
            }
        )
        fault = state.take_fault(endpoint, page_hint)
        if fault and fault.delay:
            await asyncio.sleep(fault.delay)
            if await request.is_disconnected():
                # The client gave up while the request waited: it is dropped unhandled, as a
                # server that cancels abandoned requests would. (Whether a given middleware
                # does is unknown; one that goes on and commits is what Idempotency-Key covers.)
                return Response(status_code=499)
        if fault and fault.status:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
            code = fault.code or ("INTERNAL_ERROR" if fault.status >= 500 else "BAD_REQUEST")
            return error_response(code, f"injected HTTP {fault.status}", status=fault.status, headers=headers)
        if fault and fault.kind == "malformed_json":
            return Response(b'{"schemaVersion": "1", "oops', media_type="application/json")

        if "page2-500" in broken and endpoint == "/payments/list" and page_hint == 2:
            return Response(b"Internal Server Error", status_code=500, media_type="text/plain")
        if "no-auth" not in broken and not state.token_ok(request.headers.get("authorization")):
            return error_response("UNAUTHORIZED", contract.UNAUTHORIZED_MESSAGE)
        if parsed is None or not isinstance(parsed, dict):
            return error_response("INVALID_JSON", "Request body must be a JSON object")
        if parsed.get("schemaVersion") != contract.SCHEMA_VERSION:
            return error_response(
                "BAD_REQUEST",
                f'Unsupported schemaVersion {parsed.get("schemaVersion")!r}; this server speaks "1"',
            )
        request_model, _ = contract.ENDPOINTS[endpoint]
        try:
            body = request_model.model_validate_json(raw)
        except ValidationError as exc:
            return error_response("VALIDATION_FAILED", "Request failed validation", field_errors=_field_errors(exc))

        key = None if "ignore-idempotency-key" in broken else request.headers.get("idempotency-key")
        try:
            response = answer(endpoint, body, fault, key)
        except KeyReused as exc:
            # A reused key with another body is refused, not replayed: 422, as in the IETF draft
            # "The Idempotency-Key HTTP Header Field" and developer.zuora.com/docs/guides/idempotent-requests.
            reused = [{"field": "Idempotency-Key", "message": "reused with another body"}]
            return error_response("VALIDATION_FAILED", str(exc), field_errors=reused)
        if fault and fault.delay_after:
            await asyncio.sleep(fault.delay_after)
        return response

    def answer(endpoint: str, body: Any, fault: Fault | None, idempotency_key: str | None) -> Response:
        if endpoint == "/health":
            return _json({"schemaVersion": "1", "ok": True, "service": state.service})
        if isinstance(body, contract.ListRequest):
            if body.limit > MAX_LIMIT:
                return error_response(
                    "VALIDATION_FAILED", "Request failed validation",
                    field_errors=[{"field": "limit", "message": f"must be at most {MAX_LIMIT}"}],
                )  # fmt: skip
            entity = endpoint.split("/")[1]
            return list_page(entity, body, fault)
        if isinstance(body, contract.InvoicePushRequest):
            if not data.knows_debtor(body.erp_debtor_id):
                return error_response(
                    "VALIDATION_FAILED", "Unknown debtor",
                    field_errors=[{"field": "erpDebtorId", "message": "no such debtor in the ERP"}],
                )  # fmt: skip
            pushed = body.model_dump(by_alias=True, mode="json") | {
                "lines": [line.model_dump(by_alias=True) for line in body.lines]
            }
            erp_id, _ = data.push_invoice(pushed, idempotent="non-idempotent-push" not in broken, key=idempotency_key)
            return _json({"schemaVersion": "1", "erpInvoiceId": erp_id})
        assert isinstance(body, contract.PaymentPushRequest)
        if not data.knows_invoice(body.erp_invoice_id):
            return error_response(
                "VALIDATION_FAILED", "Unknown invoice",
                field_errors=[{"field": "erpInvoiceId", "message": "no such invoice in the ERP"}],
            )  # fmt: skip
        erp_id, _ = data.push_payment(
            body.model_dump(by_alias=True, mode="json") | {"amount": body.amount}, key=idempotency_key
        )
        return _json({"schemaVersion": "1", "erpPaymentId": erp_id})

    def list_page(entity: str, body: contract.ListRequest, fault: Fault | None) -> Response:
        page, limit = body.page, body.limit
        modified_since = body.modified_since
        if "ignore-modified-since" in broken and entity == "debtors":
            modified_since = None
        if "endless-has-more" in broken and entity == "invoices":
            everything, _ = data.page(entity, 1, data.size(entity), modified_since)
            if not everything:
                return _json({"schemaVersion": "1", entity: [], "hasMore": False})
            start = (page - 1) * limit
            records = [everything[(start + n) % len(everything)] for n in range(min(limit, len(everything)))]
            return _json({"schemaVersion": "1", entity: records, "hasMore": True})
        if fault and fault.kind == "repeat_page":
            page = 1
        if fault and fault.kind == "endless_has_more":
            # Real records, cycled forever with hasMore: true; no page repeats the one before,
            # so only a page cap can stop the client.
            size = max(data.size(entity), 1)
            records = [data.record(entity, ((page - 1) * limit + n) % size) for n in range(min(limit, size))]
            return _json({"schemaVersion": "1", entity: records, "hasMore": True})
        records, has_more = data.page(entity, page, limit, modified_since)
        if fault and fault.kind == "repeat_page":
            has_more = True
        if fault and fault.kind:
            faulty = _faulty_page(fault.kind, entity, records, page, limit)
            if faulty is not None:
                return _json(faulty)
        return _json({"schemaVersion": "1", entity: records, "hasMore": has_more})

    for path in contract.ENDPOINTS:

        async def endpoint(request: Request, _path: str = path) -> Response:
            return await handle(request, _path)

        app.add_api_route(path, endpoint, methods=["POST"], include_in_schema=True)

    if control:
        _add_control(app, state)
    return app


def _add_control(app: FastAPI, state: MockErpState) -> None:
    data = state.data

    @app.post("/_mock/mutate", include_in_schema=False)
    async def mutate(request: Request) -> Response:
        try:
            counts = {str(k): int(v) for k, v in orjson.loads(await request.body()).items()}
            changed = data.mutate(counts)
        except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError) as exc:
            return _plain_json({"error": str(exc)}, 400)
        return _plain_json({"changed": changed})

    @app.put("/_mock/faults", include_in_schema=False)
    async def put_faults(request: Request) -> Response:
        try:
            state.set_faults(_faults_adapter.validate_json(await request.body()))
        except ValidationError as exc:
            return _plain_json({"error": str(exc)}, 400)
        return _plain_json({"faults": len(state.faults)})

    @app.delete("/_mock/faults", include_in_schema=False)
    async def clear_faults() -> Response:
        state.set_faults([])
        return _plain_json({"faults": 0})

    @app.get("/_mock/state", include_in_schema=False)
    async def get_state() -> Response:
        return _plain_json({"data": data.stats(), "faults": len(state.faults), "requests": len(state.requests)})
