"""The invoice form: a new invoice, or a draft edited. A customer picker that searches, the ISO
4217 currencies, as many lines as needed with a running total, and each error in plain words
next to its field."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arsync.erp.debtors import erp_reach
from arsync.errors import ArsyncError, DuplicateInvoiceNumber, InvalidInput
from arsync.ledger import schemas
from arsync.ledger import service as ledger
from arsync.ledger.models import Customer, Invoice
from arsync.tenancy.scope import Scope, in_scope
from arsync.ui.base import ActionDep, Ui, UiDep, plain_words, redirect, render

router = APIRouter(include_in_schema=False)
MAX_LINES = 200
PICKER_SIZE = 20
LINE_FIELD = re.compile(r"^line(\d{1,3})_description$")

# The API's field names, as the form's.
FORM_FIELDS = {"customerId": "customer_id", "invoiceNumber": "invoice_number", "issueDate": "issue_date",
               "dueDate": "due_date", "currency": "currency", "lines": "lines"}  # fmt: skip
LINE_FIELDS = {"description": "description", "quantity": "quantity", "unitPrice": "unit_price"}


@cache
def currencies() -> list[tuple[str, str]]:
    """Every ISO 4217 currency Babel knows, as (code, English name), by code."""
    from babel.numbers import get_currency_name, list_currencies

    return sorted((code, get_currency_name(code, locale="en_US")) for code in list_currencies())


def _customer_options(session: Session, scope: Scope, text: str, chosen: str | None) -> list[Any]:
    """Up to ``PICKER_SIZE`` customers whose name or email contains ``text``, by name; the chosen
    one always among them."""
    columns = (Customer.id, Customer.name, Customer.email, Customer.erp_debtor_id)
    statement = select(*columns).where(in_scope(Customer, scope))
    if text:
        like = text.lower()
        statement = statement.where(
            func.lower(Customer.name).contains(like, autoescape=True)
            | func.lower(Customer.email).contains(like, autoescape=True)
        )
    rows = list(session.execute(statement.order_by(Customer.name, Customer.id).limit(PICKER_SIZE)))
    if chosen and all(row.id != chosen for row in rows):
        picked = session.execute(select(*columns).where(in_scope(Customer, scope), Customer.id == chosen)).first()
        rows = ([picked] if picked else []) + rows
    return rows


@router.get("/ui/customer-options", response_class=HTMLResponse)
def customer_options(
    request: Request,
    ui: UiDep,
    q: Annotated[str, Query(max_length=200)] = "",
    chosen: Annotated[str | None, Query(alias="customer_id", max_length=40)] = None,
) -> Response:
    """The picker's options for what was typed (htmx swaps them into the select)."""
    with ui.db() as session:
        options = _customer_options(session, ui.scope, q.strip(), chosen)
        reach = erp_reach(session, ui.scope)
    return render(
        ui, request, "_customer_options.html", options=options, chosen=chosen, searched=q.strip(), reach=reach
    )


def _usual_currency(session: Session, scope: Scope) -> str:
    """The currency this environment invoices in most, else USD."""
    found = session.scalar(
        select(Invoice.currency).where(in_scope(Invoice, scope)).group_by(Invoice.currency)
        .order_by(func.count().desc()).limit(1)
    )  # fmt: skip
    return found or "USD"


def _form(
    request: Request, ui: Ui, values: dict[str, str], lines: list[dict[str, str]], *, invoice_id: str | None = None,
    errors: dict[str, str] | None = None, summary: str | None = None,
) -> Response:  # fmt: skip
    with ui.db() as session:
        options = _customer_options(session, ui.scope, "", values.get("customer_id"))
        reach = erp_reach(session, ui.scope)
    return render(
        ui, request, "invoice_form.html", values=values, lines=lines or [{}], options=options, reach=reach,
        currencies=currencies(), invoice_id=invoice_id, errors=errors or {}, summary=summary,
        total=running_total(lines),
        status_code=400 if errors or summary else 200,
    )  # fmt: skip


@router.get("/invoices/new", response_class=HTMLResponse)
def new_invoice(
    request: Request, ui: UiDep, customer_id: Annotated[str | None, Query(max_length=40)] = None
) -> Response:
    today = date.today()
    with ui.db() as session:
        currency = _usual_currency(session, ui.scope)
    values = {"customer_id": customer_id or "", "currency": currency, "issue_date": today.isoformat(),
              "due_date": (today + timedelta(days=30)).isoformat()}  # fmt: skip
    return _form(request, ui, values, [{"quantity": "1"}])


async def _read(request: Request) -> tuple[dict[str, str], list[dict[str, str]], list[int]]:
    """The form's fields, its non-empty lines in order, and each line's row number on the form."""
    form = await request.form()
    values = {k: v.strip() for k, v in form.items() if isinstance(v, str)}
    rows = sorted({int(m.group(1)) for k in values if (m := LINE_FIELD.match(k))})[:MAX_LINES]
    lines, numbers = [], []
    for row in rows:
        line = {field: values.get(f"line{row}_{field}", "") for field in LINE_FIELDS.values()}
        if any(line.values()):
            lines.append(line)
            numbers.append(row)
    return values, lines, numbers


def _body(values: dict[str, str], lines: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "customerId": values.get("customer_id", ""), "invoiceNumber": values.get("invoice_number", ""),
        "issueDate": values.get("issue_date") or None, "dueDate": values.get("due_date") or None,
        "currency": values.get("currency", "").upper(),
        "lines": [{"description": line["description"], "quantity": line["quantity"], "unitPrice": line["unit_price"]}
                  for line in lines],
    }  # fmt: skip


def _plain(message: str) -> str:
    """Pydantic's and the ledger's wording, as a person filling in a form reads it."""
    message = message.removeprefix("Value error, ")
    if message.startswith("Input should be a valid date"):
        return "Enter a date like 2026-12-31."
    if message == "Field required" or "at least 1 character" in message:
        return "This is needed."
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def field_errors(exc: Exception, numbers: list[int]) -> dict[str, str]:
    """Each problem keyed by the form field it belongs to (``line3_quantity`` for a line's)."""
    errors: dict[str, str] = {}
    if isinstance(exc, ValidationError):
        for error in exc.errors():
            where = [p for p in error["loc"]]
            if where[:1] == ["lines"] and len(where) >= 2 and isinstance(where[1], int):
                row = numbers[where[1]] if where[1] < len(numbers) else 0
                part = LINE_FIELDS.get(str(where[2]) if len(where) > 2 else "", "description")
                errors.setdefault(f"line{row}_{part}", _plain(str(error["msg"])))
            else:
                errors.setdefault(FORM_FIELDS.get(str(where[0]) if where else "", "lines"), _plain(str(error["msg"])))
    elif isinstance(exc, DuplicateInvoiceNumber):
        errors["invoice_number"] = _plain(exc.message)
    elif isinstance(exc, InvalidInput) and (exc.details or {}).get("field"):
        errors[FORM_FIELDS.get(str(exc.details["field"]), "lines")] = _plain(exc.message)
    return errors


def _refused(request: Request, ui: Ui, values: dict[str, str], lines: list[dict[str, str]], numbers: list[int],
             exc: Exception, invoice_id: str | None = None) -> Response:  # fmt: skip
    shown = [dict(line, row=str(row)) for line, row in zip(lines, numbers, strict=True)]
    errors = {} if lines else {"lines": "Add at least one line with a description."}
    errors |= field_errors(exc, numbers)
    summary = None if errors else plain_words(exc)
    return _form(request, ui, values, shown, invoice_id=invoice_id, errors=errors, summary=summary)


@router.post("/invoices", response_class=HTMLResponse)
async def create_invoice(request: Request, ui: ActionDep) -> Response:
    values, lines, numbers = await _read(request)
    try:
        body = schemas.InvoiceCreate.model_validate(_body(values, lines))
        with ui.write() as session:
            invoice_id = ledger.create_invoice(session, ui.scope, body).id
    except (ValidationError, ArsyncError) as exc:
        return _refused(request, ui, values, lines, numbers, exc)
    return redirect(f"/invoices/{invoice_id}", notice="Draft invoice created.")


@router.get("/invoices/{invoice_id}/edit", response_class=HTMLResponse)
def edit_invoice(request: Request, ui: UiDep, invoice_id: str) -> Response:
    with ui.db() as session:
        invoice = ledger.get_invoice(session, ui.scope, invoice_id)
        if not invoice.can_finalize:
            return redirect(f"/invoices/{invoice_id}", error="Only a draft made in arsync can be edited.")
        lines = [
            {"description": line.description, "quantity": f"{line.quantity.normalize():f}",
             "unit_price": f"{line.unit_price.normalize():f}"}
            for line in ledger.invoice_lines(session, [invoice.id])[invoice.id]
        ]  # fmt: skip
        values = {"customer_id": invoice.customer_id, "invoice_number": invoice.invoice_number,
                  "currency": invoice.currency, "issue_date": invoice.issue_date.isoformat(),
                  "due_date": invoice.due_date.isoformat()}  # fmt: skip
    return _form(request, ui, values, lines, invoice_id=invoice_id)


@router.post("/invoices/{invoice_id}/edit", response_class=HTMLResponse)
async def update_invoice(request: Request, ui: ActionDep, invoice_id: str) -> Response:
    values, lines, numbers = await _read(request)
    try:
        body = _body(values, lines)
        update = schemas.InvoiceUpdate.model_validate({k: v for k, v in body.items() if k != "customerId"})
        with ui.write() as session:
            ledger.update_invoice(session, ui.scope, invoice_id, update)
    except (ValidationError, ArsyncError) as exc:
        return _refused(request, ui, values, lines, numbers, exc, invoice_id)
    return redirect(f"/invoices/{invoice_id}", notice="Draft saved.")


def running_total(lines: list[dict[str, str]]) -> Decimal:
    """What the lines add up to, for the form's total before JavaScript has run."""
    total = Decimal(0)
    for line in lines:
        try:
            total += Decimal(line.get("quantity") or 0) * Decimal(line.get("unit_price") or 0)
        except ArithmeticError:
            continue
    return total
