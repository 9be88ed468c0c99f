"""Ledger pages: overview, customers, invoices (with their actions), payments, cash applications."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arsync.erp.push import pushes_by_invoice
from arsync.errors import ArsyncError, InvalidInput
from arsync.ledger import flows as ledger_flows
from arsync.ledger import schemas
from arsync.ledger import service as ledger
from arsync.ledger.models import CashApplication, Customer, Invoice, InvoiceStatus, Payment
from arsync.ledger.views import cash_application_reads, customer_wire, invoice_reads, payment_reads
from arsync.money import format_amount
from arsync.nomod import repository as nomod_repository
from arsync.nomod.flows import PaymentLink
from arsync.schemas import PageParams
from arsync.tenancy.scope import in_scope
from arsync.ui.base import ActionDep, Ui, UiDep, act, error_advice, plain_words, redirect, render
from arsync.ui.pages_sync import toolbar_context

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 25
PageQuery = Annotated[int, Query(ge=1, le=1_000_000)]
SearchQuery = Annotated[str | None, Query(max_length=200)]
NEW_INVOICE_LINES = 5


def _paging(page: int) -> PageParams:
    return PageParams(page=page, limit=PAGE_SIZE)


def _ledger_page(ui: Ui, request: Request, template: str, **context: Any) -> Response:
    return render(ui, request, template, **toolbar_context(ui), **context)


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, ui: UiDep) -> Response:
    with ui.db() as session:
        scope = ui.scope
        customers = session.scalar(select(func.count()).select_from(Customer).where(in_scope(Customer, scope))) or 0
        by_status = dict(
            session.execute(
                select(Invoice.status, func.count()).where(in_scope(Invoice, scope)).group_by(Invoice.status)
            ).all()
        )
        outstanding = [
            (currency, format_amount(amount or Decimal(0), currency), count)
            for currency, amount, count in session.execute(
                select(Invoice.currency, func.sum(Invoice.amount_outstanding), func.count())
                .where(in_scope(Invoice, scope), Invoice.status == InvoiceStatus.FINALIZED)
                .group_by(Invoice.currency)
                .order_by(Invoice.currency)
            ).all()
        ]
        overdue = (
            session.scalar(
                select(func.count())
                .select_from(Invoice)
                .where(
                    in_scope(Invoice, scope), Invoice.status == InvoiceStatus.FINALIZED, Invoice.due_date < date.today()
                )
            )
            or 0
        )
        payments = session.scalar(select(func.count()).select_from(Payment).where(in_scope(Payment, scope))) or 0
        pending = session.scalar(
            select(func.count()).select_from(CashApplication).where(
                in_scope(CashApplication, scope), CashApplication.status == "PENDING"
            )
        ) or 0  # fmt: skip
    return _ledger_page(
        ui, request, "overview.html", customers=customers, by_status=by_status, outstanding=outstanding,
        overdue=overdue, payments=payments, pending_applications=pending,
    )  # fmt: skip


# Customers ------------------------------------------------------------------------------


@router.get("/customers", response_class=HTMLResponse)
def customers(request: Request, ui: UiDep, q: SearchQuery = None, page: PageQuery = 1) -> Response:
    query = (q or "").strip()
    by_email = "@" in query
    with ui.db() as session:
        rows, more = ledger.list_customers(
            session, ui.scope, _paging(page), name=None if by_email else query or None,
            email=query if by_email else None, erp_debtor_id=None,
        )  # fmt: skip
    items = [customer_wire(row) for row in rows]
    return _ledger_page(ui, request, "customers.html", customers=items, q=query, page=page, has_more=more)


CUSTOMER_FIELDS = ("name", "email", "phone")


def _customer_form(
    request: Request, ui: Ui, values: dict[str, str], customer_id: str | None = None, error: str | None = None
) -> Response:
    return render(
        ui, request, "customer_form.html", values=values, customer_id=customer_id, error=error,
        status_code=400 if error else 200,
    )  # fmt: skip


async def _customer_values(request: Request) -> dict[str, str]:
    form = await request.form()
    return {name: value.strip() for name in CUSTOMER_FIELDS if isinstance(value := form.get(name, ""), str)}


def _customer_body(values: dict[str, str]) -> dict[str, str | None]:
    """The form as an API body: an emptied email or phone is removed."""
    return {"name": values.get("name", ""), "email": values.get("email") or None, "phone": values.get("phone") or None}


@router.get("/customers/new", response_class=HTMLResponse)
def new_customer(request: Request, ui: UiDep) -> Response:
    return _customer_form(request, ui, {})


@router.post("/customers", response_class=HTMLResponse)
async def create_customer(request: Request, ui: ActionDep) -> Response:
    values = await _customer_values(request)
    try:
        body = schemas.CustomerCreate.model_validate(_customer_body(values))
        with ui.write() as session:
            customer_id = ledger.create_customer(session, ui.scope, body).id
    except (ValidationError, ArsyncError) as exc:
        return _customer_form(request, ui, values, error=plain_words(exc))
    return redirect(f"/customers/{customer_id}", notice="Customer created.")


@router.get("/customers/{customer_id}/edit", response_class=HTMLResponse)
def edit_customer(request: Request, ui: UiDep, customer_id: str) -> Response:
    with ui.db() as session:
        customer = ledger.get_customer(session, ui.scope, customer_id)
        values = {"name": customer.name, "email": customer.email or "", "phone": customer.phone or ""}
    return _customer_form(request, ui, values, customer_id)


@router.post("/customers/{customer_id}/edit", response_class=HTMLResponse)
async def update_customer(request: Request, ui: ActionDep, customer_id: str) -> Response:
    values = await _customer_values(request)
    try:
        body = schemas.CustomerUpdate.model_validate(_customer_body(values))
        with ui.write() as session:
            ledger.update_customer(session, ui.scope, customer_id, body)
    except (ValidationError, ArsyncError) as exc:
        return _customer_form(request, ui, values, customer_id, error=plain_words(exc))
    return redirect(f"/customers/{customer_id}", notice="Customer saved.")


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
def customer_page(request: Request, ui: UiDep, customer_id: str, page: PageQuery = 1) -> Response:
    with ui.db() as session:
        customer = ledger.get_customer(session, ui.scope, customer_id)
        integrations = nomod_repository.customer_integrations(session, ui.scope, customer)
        invoices, more = ledger.list_invoices(
            session, ui.scope, _paging(page), status=None, customer_id=customer.id, due_before=None, due_after=None
        )
        reads = invoice_reads(session, invoices)
    nomod = integrations["integrations"].get("nomod")
    return _ledger_page(
        ui, request, "customer.html", customer=customer, nomod=nomod, invoices=reads, page=page, has_more=more,
        today=date.today(),
        nomod_error=error_advice(nomod.get("error")) if nomod and nomod.get("error") else None,
    )  # fmt: skip


@router.post("/customers/{customer_id}/nomod-unlink")
def unlink_nomod_customer(request: Request, ui: ActionDep, customer_id: str) -> Response:
    """Forget the customer's Nomod customer; its next Nomod sync creates a new one."""

    def run() -> str:
        ui.container.nomod.unlink_customer(ui.scope, customer_id)
        return "Unlinked from Nomod. The next payment link or invoice sync creates a new Nomod customer."

    return act(request, f"/customers/{customer_id}", run, lambda message: message)


# Invoices -------------------------------------------------------------------------------

INVOICE_STATUSES = tuple(InvoiceStatus)


@router.get("/invoices", response_class=HTMLResponse)
def invoices(
    request: Request,
    ui: UiDep,
    q: SearchQuery = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    page: PageQuery = 1,
) -> Response:
    status = status if status in INVOICE_STATUSES else None
    with ui.db() as session:
        rows, more = ledger.list_invoices(
            session, ui.scope, _paging(page), status=status, customer_id=None, due_before=None, due_after=None,
            number=(q or "").strip() or None,
        )  # fmt: skip
        reads = invoice_reads(session, rows)
        names = _customer_names(session, {i.customer_id for i in reads})
    return _ledger_page(
        ui, request, "invoices.html", invoices=reads, names=names, q=q or "", status=status,
        statuses=INVOICE_STATUSES, page=page, has_more=more, today=date.today(),
    )  # fmt: skip


def _customer_names(session: Session, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    return dict(session.execute(select(Customer.id, Customer.name).where(Customer.id.in_(ids))).all())


def _new_invoice_form(request: Request, ui: Ui, values: dict[str, Any], error: str | None = None) -> Response:
    with ui.db() as session:
        customer_id = values.get("customer_id") or ""
        customer = session.get(Customer, customer_id) if customer_id else None
        if customer is not None and (customer.tenant_id, customer.environment_id) != (
            ui.scope.tenant_id,
            ui.scope.environment_id,
        ):
            customer = None  # another tenant's, or another environment's of this tenant
    return render(
        ui, request, "invoice_new.html", values=values, customer=customer, error=error,
        line_count=NEW_INVOICE_LINES, status_code=400 if error else 200,
    )  # fmt: skip


@router.get("/invoices/new", response_class=HTMLResponse)
def new_invoice(
    request: Request, ui: UiDep, customer_id: Annotated[str | None, Query(max_length=40)] = None
) -> Response:
    today = date.today()
    values = {"customer_id": customer_id or "", "currency": "USD", "issue_date": today.isoformat(),
              "due_date": (today + timedelta(days=30)).isoformat()}  # fmt: skip
    return _new_invoice_form(request, ui, values)


@router.post("/invoices", response_class=HTMLResponse)
async def create_invoice(request: Request, ui: ActionDep) -> Response:
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    lines = []
    for index in range(NEW_INVOICE_LINES):
        description = values.get(f"line{index}_description", "").strip()
        if not description:
            continue
        lines.append({"description": description, "quantity": values.get(f"line{index}_quantity", "").strip(),
                      "unitPrice": values.get(f"line{index}_unit_price", "").strip()})  # fmt: skip
    try:
        body = schemas.InvoiceCreate.model_validate({
            "customerId": values.get("customer_id", "").strip(),
            "invoiceNumber": values.get("invoice_number", "").strip(),
            "issueDate": values.get("issue_date"), "dueDate": values.get("due_date"),
            "currency": values.get("currency", "").strip().upper(), "lines": lines,
        })  # fmt: skip
        with ui.write() as session:
            invoice = ledger.create_invoice(session, ui.scope, body)
            invoice_id = invoice.id
    except (ValidationError, ArsyncError) as exc:
        message = "Add at least one line with a description." if not lines else plain_words(exc)
        return _new_invoice_form(request, ui, values, error=message)
    return redirect(f"/invoices/{invoice_id}", notice="Draft invoice created.")


@router.get("/invoices/{invoice_id}", response_class=HTMLResponse)
def invoice_page(request: Request, ui: UiDep, invoice_id: str) -> Response:
    with ui.db() as session:
        invoice = invoice_reads(session, [ledger.get_invoice(session, ui.scope, invoice_id)])[0]
        customer = session.get(Customer, invoice.customer_id)
        payments, _ = ledger.list_payments(session, ui.scope, PageParams(page=1, limit=100), invoice_id=invoice.id)
        payment_rows = payment_reads(session, payments)
        applications = cash_application_reads(
            session,
            list(
                session.scalars(
                    select(CashApplication)
                    .where(in_scope(CashApplication, ui.scope), CashApplication.invoice_id == invoice.id)
                    .order_by(CashApplication.id)
                )
            ),
        )
    push_error = error_advice(invoice.push.last_error) if invoice.push and invoice.push.last_error else None
    nomod_error = error_advice(invoice.nomod.error) if invoice.nomod and invoice.nomod.error else None
    return _ledger_page(
        ui, request, "invoice.html", invoice=invoice, customer=customer, payments=payment_rows,
        applications=applications, push_error=push_error, nomod_error=nomod_error, today=date.today(),
    )  # fmt: skip


@router.post("/invoices/{invoice_id}/payment-link")
def payment_link(request: Request, ui: ActionDep, invoice_id: str) -> Response:
    def done(link: PaymentLink) -> str:
        return f"Payment link ready: {link.url}" if link.url else "Payment link created in Nomod."

    return act(request, f"/invoices/{invoice_id}", lambda: ui.container.nomod.payment_link(ui.scope, invoice_id), done)


InvoiceAction = Literal["finalize", "dispatch", "void", "retry-push"]


@router.post("/invoices/{invoice_id}/{verb}")
def invoice_action(request: Request, ui: ActionDep, invoice_id: str, verb: InvoiceAction) -> Response:
    """Finalize, dispatch, void, or send a failed push again; then back to the page with the outcome."""
    container = ui.container

    def run() -> str:
        with ui.write() as session:
            if verb == "finalize":
                ledger_flows.finalize_invoice(session, ui.scope, invoice_id, nomod=container.nomod)
                return "Invoice finalized."
            if verb == "dispatch":
                container.pushes.dispatch_invoice(session, ui.scope, invoice_id)
                return "Invoice dispatched; it is being sent to the ERP."
            if verb == "void":
                ledger.void_invoice(session, ui.scope, invoice_id)
                return "Invoice voided."
            if verb == "retry-push":
                ledger.get_invoice(session, ui.scope, invoice_id)
                push = pushes_by_invoice(session, [invoice_id]).get(invoice_id)
                if push is None:
                    return "This invoice has not been sent to the ERP yet."
                container.pushes.retry(session, ui.scope, push.id)
                return "Sending the invoice to the ERP again."
        raise AssertionError(verb)

    return act(request, f"/invoices/{invoice_id}", run, lambda message: message)


# Payments and cash applications --------------------------------------------------------


@router.get("/payments", response_class=HTMLResponse)
def payments(request: Request, ui: UiDep, page: PageQuery = 1) -> Response:
    with ui.db() as session:
        rows, more = ledger.list_payments(session, ui.scope, _paging(page), invoice_id=None)
        reads = payment_reads(session, rows)
        numbers = dict(
            session.execute(
                select(Invoice.id, Invoice.invoice_number).where(Invoice.id.in_({p.invoice_id for p in reads}))
            ).all()
        )
    return _ledger_page(ui, request, "payments.html", payments=reads, numbers=numbers, page=page, has_more=more)


@router.get("/cash-applications", response_class=HTMLResponse)
def cash_applications(
    request: Request,
    ui: UiDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
    page: PageQuery = 1,
    invoice: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    status = status if status in ("PENDING", "APPROVED") else None
    with ui.db() as session:
        rows, more = ledger.list_cash_applications(session, ui.scope, _paging(page), status=status)
        reads = cash_application_reads(session, rows)
        invoices = {
            i.id: i for i in session.scalars(select(Invoice).where(Invoice.id.in_({a.invoice_id for a in reads})))
        }
    return _ledger_page(
        ui, request, "cash_applications.html", applications=reads, invoices=invoices, status=status, page=page,
        has_more=more, invoice_ref=invoice or "", today=date.today(),
    )  # fmt: skip


def _find_invoice(session: Session, ui: Ui, reference: str) -> str:
    """An invoice given by id or by its number."""
    reference = reference.strip()
    found = session.scalar(
        select(Invoice.id).where(
            in_scope(Invoice, ui.scope), (Invoice.id == reference) | (Invoice.invoice_number == reference)
        )
    )
    if found is None:
        raise InvalidInput(
            f"no invoice has the number or id {reference!r} in this environment", details={"field": "invoice"}
        )
    invoice_id: str = found
    return invoice_id


@router.post("/cash-applications")
async def create_cash_application(request: Request, ui: ActionDep) -> Response:
    form = await request.form()
    values = {k: v.strip() for k, v in form.items() if isinstance(v, str)}

    def run() -> CashApplication:
        with ui.write() as session:
            body = schemas.CashApplicationCreate.model_validate({
                "invoiceId": _find_invoice(session, ui, values.get("invoice", "")),
                "amount": values.get("amount", ""), "date": values.get("date", ""),
                "reference": values.get("reference", ""),
            })  # fmt: skip
            return ledger.create_cash_application(session, ui.scope, body)

    return act(
        request,
        "/cash-applications",
        run,
        lambda a: f"Cash application of {a.amount} recorded; approve it to post the payment.",
    )


@router.post("/cash-applications/{application_id}/approve")
def approve_cash_application(request: Request, ui: ActionDep, application_id: str) -> Response:
    def run() -> str:
        with ui.write() as session:
            application = ui.container.pushes.approve_cash_application(session, ui.scope, application_id)
            return f"Approved: payment {application.payment_id} recorded and being sent to the ERP."

    return act(request, "/cash-applications", run, lambda message: message)
