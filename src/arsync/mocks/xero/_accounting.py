"""The Accounting API: guarded, rate-limited lists and idempotent creates of contacts, invoices and payments."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from arsync.mocks.xero._http import json_response, validation_error, xero_problem
from arsync.mocks.xero._state import (
    ACCOUNTING,
    BANK_ACCOUNT_CODES,
    ENDPOINT_SCOPES,
    SALES_ACCOUNT_CODES,
    MockXeroState,
    Organisation,
    xero_date,
)


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
        return validation_error("page and pageSize must be whole numbers")
    items = chosen[(page - 1) * size : page * size]
    count = len(chosen)
    return json_response({
        "Id": str(uuid.uuid4()), "Status": "OK", "ProviderName": "arsync",
        "DateTimeUTC": xero_date(datetime.now(UTC)),
        "pagination": {"page": page, "pageSize": size, "pageCount": -(-count // size), "itemCount": count},
        key: [_public(r) for r in items],
    })  # fmt: skip


async def idempotent(request: Request, org: Organisation, create: Callable[[Any], Response]) -> Response:
    # Idempotency-Key: at most 128 characters (xero_accounting.yaml, parameters.idempotencyKey).
    # A key seen before gets its first answer again, whatever it was; the same key with another
    # body is refused (Xero's idempotent-requests guide).
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) > 128:
        return validation_error("Idempotency-Key must be at most 128 characters")
    raw = await request.body()
    fingerprint = hashlib.sha256(request.url.path.encode() + b"?" + request.url.query.encode() + b"\n" + raw)
    if key and key in org.idempotent_answers:
        status, body, seen = org.idempotent_answers[key]
        if seen != fingerprint.hexdigest():
            return validation_error("The Idempotency-Key has been used with a different request")
        return Response(body, status_code=status, media_type="application/json")
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return validation_error("the body is not JSON")
    response: Response = create(parsed)
    if key:
        org.idempotent_answers[key] = (response.status_code, bytes(response.body), fingerprint.hexdigest())
    return response


def create_contacts(state: MockXeroState, org: Organisation, body: Any) -> Response:
    items = body.get("Contacts", [body]) if isinstance(body, dict) else []
    created = []
    for item in items:
        name = str(item.get("Name") or "").strip()
        if not name:
            # The message Xero gives a contact it cannot identify (xero_accounting.yaml, the 400
            # example of paths./Invoices.put).
            return validation_error("The Contact must contain at least 1 of the following elements to identify "
                                    "the contact: Name, ContactID, ContactNumber")  # fmt: skip
        # Lengths: components.schemas.Contact (Name, EmailAddress 255; ContactNumber 50).
        if len(name) > 255 or len(str(item.get("EmailAddress") or "")) > 255:
            return validation_error("Name and EmailAddress must be at most 255 characters")
        if len(str(item.get("ContactNumber") or "")) > 50:
            return validation_error("ContactNumber must be at most 50 characters")
        # Names are unique among active contacts (the 400 example of paths./Contacts.put). Whether
        # the comparison ignores case: unknown; here it does, the stricter reading.
        if any(c["Name"].lower() == name.lower() and c.get("ContactStatus") == "ACTIVE" for c in org.contacts.values()):
            return validation_error(f"The contact name {name} is already assigned to another contact. The contact "
                                    "name must be unique across all active contacts.")  # fmt: skip
        created.append(_public(state.store_contact(org, item | {"Name": name}, datetime.now(UTC))))
    return json_response({"Id": str(uuid.uuid4()), "Status": "OK", "Contacts": created})


def create_invoices(state: MockXeroState, org: Organisation, body: Any, unit_places: int) -> Response:
    items = body.get("Invoices", [body]) if isinstance(body, dict) else []
    created = []
    for item in items:
        contact = (item.get("Contact") or {}).get("ContactID")
        if contact not in org.contacts:
            return validation_error(f"Contact {contact!r} does not exist")
        if item.get("Type") not in {"ACCREC", "ACCPAY"} or not item.get("LineItems") or not item.get("Date"):
            return validation_error("Type, Date and LineItems are required")
        for line in item["LineItems"]:
            if "LineAmount" not in line:
                continue
            unit = Decimal(str(line.get("UnitAmount", 0))).quantize(Decimal(10) ** -unit_places)
            expected = (Decimal(str(line.get("Quantity", 1))) * unit).quantize(Decimal("0.01"))
            if Decimal(str(line["LineAmount"])) != expected:
                # Xero recomputes the line from the rounded unit amount and refuses a mismatch.
                return validation_error(f"The line total {line['LineAmount']} does not match the expected "
                                   f"line total {expected}")  # fmt: skip
        if item.get("Status") == "AUTHORISED":  # a DRAFT may leave accounts for later; this may not
            for line in item["LineItems"]:
                code = line.get("AccountCode")
                if not code:
                    return validation_error("Account code must be specified")
                if code not in SALES_ACCOUNT_CODES:
                    return validation_error(f"Account code '{code}' is not a valid code for this document.")
        created.append(_public(state.store_invoice(org, item, datetime.now(UTC), unit_places)))
    return json_response({"Id": str(uuid.uuid4()), "Status": "OK", "Invoices": created})


def create_payments(state: MockXeroState, org: Organisation, body: Any) -> Response:
    items = body.get("Payments", [body]) if isinstance(body, dict) else []
    created = []
    for item in items:
        invoice = org.invoices.get((item.get("Invoice") or {}).get("InvoiceID", ""))
        if invoice is None:
            return validation_error("Invoice could not be found")
        code = (item.get("Account") or {}).get("Code")
        if code not in BANK_ACCOUNT_CODES:
            return validation_error(f"Account code {code!r} is not a bank account")
        amount = Decimal(str(item.get("Amount", "0")))
        if amount <= 0 or amount > invoice["AmountDue"]:
            return validation_error("Payment amount exceeds the amount outstanding on this document")
        paid_on = date.fromisoformat(str(item.get("Date", ""))[:10])
        created.append(_public(state.store_payment(org, invoice, amount, paid_on, code, datetime.now(UTC))))
    return json_response({"Id": str(uuid.uuid4()), "Status": "OK", "Payments": created})


def accounting_routes(state: MockXeroState) -> APIRouter:
    router = APIRouter()

    async def guarded(request: Request, handler: Any) -> Response:
        if state.config.expire_tokens_at_call and state.calls + 1 == state.config.expire_tokens_at_call:
            state.expire_access_tokens()
            state.config.expire_tokens_at_call = 0  # once
        grant = state.grant_for(request.headers.get("authorization"))
        if grant is None:
            return xero_problem(401, "Unauthorized", "TokenExpired: token expired or invalid",
                            {"WWW-Authenticate": 'Bearer error="invalid_token"'})  # fmt: skip
        endpoint = request.url.path.removeprefix(ACCOUNTING)
        needed = ENDPOINT_SCOPES.get(endpoint, {}).get(request.method, set())
        if needed and not needed & grant.scopes:
            # Status for a token without the scope: unknown; Xero's docs describe it as unauthorised.
            return xero_problem(401, "Unauthorized", f"AuthorizationUnsuccessful: the token lacks {sorted(needed)[0]}")
        tenant_id = request.headers.get("xero-tenant-id", "")
        org = state.organisations.get(tenant_id)
        if org is None or tenant_id not in grant.tenant_ids:
            return xero_problem(
                403, "Forbidden", "AuthenticationUnsuccessful: xero-tenant-id is missing or not allowed"
            )
        refusal = state.admit(org)
        if refusal is not None:
            problem, retry_after = refusal
            return xero_problem(429, "Too Many Requests", f"You have exceeded the {problem} rate limit",
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

    async def list_contacts(request: Request, org: Organisation) -> Response:
        return page_of(request, list(org.contacts.values()), "Contacts")

    async def list_invoices(request: Request, org: Organisation) -> Response:
        return page_of(request, list(org.invoices.values()), "Invoices")

    async def list_payments(request: Request, org: Organisation) -> Response:
        return page_of(request, list(org.payments.values()), "Payments")

    for path, lister in (("/Contacts", list_contacts), ("/Invoices", list_invoices), ("/Payments", list_payments)):

        async def route(request: Request, lister: Any = lister) -> Response:
            return await guarded(request, lister)

        router.add_api_route(f"{ACCOUNTING}{path}", route, methods=["GET"], include_in_schema=False)

    async def put_contacts(request: Request, org: Organisation) -> Response:
        return await idempotent(request, org, lambda body: create_contacts(state, org, body))

    async def put_invoices(request: Request, org: Organisation) -> Response:
        unit_places = 4 if request.query_params.get("unitdp") == "4" else 2
        return await idempotent(request, org, lambda body: create_invoices(state, org, body, unit_places))

    async def put_payments(request: Request, org: Organisation) -> Response:
        return await idempotent(request, org, lambda body: create_payments(state, org, body))

    for path, writer in (("/Contacts", put_contacts), ("/Invoices", put_invoices), ("/Payments", put_payments)):

        async def write(request: Request, writer: Any = writer) -> Response:
            return await guarded(request, writer)

        router.add_api_route(f"{ACCOUNTING}{path}", write, methods=["PUT"], include_in_schema=False)

    return router
