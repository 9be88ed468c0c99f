"""Ledger pages: overview, customers, invoices (with their actions), payments, cash applications."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arsync.erp.debtors import erp_reach
from arsync.erp.push import pushes_by_invoice, pushes_by_payment
from arsync.errors import ArsyncError
from arsync.ledger import flows as ledger_flows
from arsync.ledger import reports, schemas
from arsync.ledger import service as ledger
from arsync.ledger.listing import INVOICE_SORTS, InvoiceQuery, PaymentQuery
from arsync.ledger.models import (
    CashApplication,
    Customer,
    Invoice,
    InvoiceStatus,
    Payment,
)
from arsync.ledger.views import cash_application_reads, customer_wire, invoice_reads, payment_reads
from arsync.money import format_amount
from arsync.nomod import repository as nomod_repository
from arsync.nomod.flows import PaymentLink
from arsync.schemas import PageParams
from arsync.tenancy.scope import in_scope
from arsync.ui.base import ActionDep, Ui, UiDep, act, back_to, error_advice, plain_words, redirect, render
from arsync.ui.lists import Column, Filters, PageQuery, csv_download, ledger_page, page_count, paging, sort_headers

router = APIRouter(include_in_schema=False)

SearchQuery = Annotated[str | None, Query(max_length=200)]


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
                .where(*reports.owed_invoices(scope))
                .group_by(Invoice.currency)
                .order_by(Invoice.currency)
            ).all()
        ]
        overdue = (
            session.scalar(
                select(func.count())
                .select_from(Invoice)
                .where(*reports.owed_invoices(scope), Invoice.due_date < date.today())
            )
            or 0
        )
        payments = session.scalar(select(func.count()).select_from(Payment).where(in_scope(Payment, scope))) or 0
        pending = session.scalar(
            select(func.count()).select_from(CashApplication).where(
                in_scope(CashApplication, scope), CashApplication.status == "PENDING"
            )
        ) or 0  # fmt: skip
    return ledger_page(
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
            session, ui.scope, paging(page), name=None if by_email else query or None,
            email=query if by_email else None, erp_debtor_id=None,
        )  # fmt: skip
    items = [customer_wire(row) for row in rows]
    return ledger_page(ui, request, "customers.html", customers=items, q=query, page=page, has_more=more)


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
def customer_page(
    request: Request, ui: UiDep, customer_id: str, page: PageQuery = 1, debtor_q: SearchQuery = None
) -> Response:
    debtor_q = (debtor_q or "").strip()
    with ui.db() as session:
        customer = ledger.get_customer(session, ui.scope, customer_id)
        reach = erp_reach(session, ui.scope)
        debtors = _debtors_matching(session, ui, debtor_q) if debtor_q and not customer.erp_debtor_id else []
        integrations = nomod_repository.customer_integrations(session, ui.scope, customer)
        invoices, more = ledger.list_invoices(
            session, ui.scope, paging(page), InvoiceQuery(customer_id=customer.id, sort="issued", direction="desc")
        )
        reads = invoice_reads(session, invoices)
        today = date.today()
        balances = reports.customer_balances(session, ui.scope, customer.id, today)
        newest = PaymentQuery(customer_id=customer.id, sort="date", direction="desc")
        latest, _ = ledger.list_payments(session, ui.scope, PageParams(page=1, limit=10), newest)
        payments = payment_reads(session, latest)
        payment_numbers = dict(session.execute(
            select(Invoice.id, Invoice.invoice_number).where(Invoice.id.in_({p.invoice_id for p in payments}))
        ).all())  # fmt: skip
    nomod = integrations["integrations"].get("nomod")
    return ledger_page(
        ui, request, "customer.html", customer=customer, nomod=nomod, invoices=reads, page=page, has_more=more,
        today=today, balances=balances, reach=reach, debtors=debtors, payments=payments,
        payment_numbers=payment_numbers, debtor_q=debtor_q,
        nomod_error=error_advice(nomod.get("error")) if nomod and nomod.get("error") else None,
    )  # fmt: skip


def _debtors_matching(session: Session, ui: Ui, text: str) -> list[Customer]:
    """Up to 20 customers synced from the ERP whose name or email contains ``text``."""
    like = text.lower()
    return list(
        session.scalars(
            select(Customer)
            .where(
                in_scope(Customer, ui.scope),
                Customer.erp_debtor_id.is_not(None),
                func.lower(Customer.name).contains(like, autoescape=True)
                | func.lower(Customer.email).contains(like, autoescape=True),
            )
            .order_by(Customer.name)
            .limit(20)
        )
    )


@router.post("/customers/{customer_id}/merge")
async def merge_customer(request: Request, ui: ActionDep, customer_id: str) -> Response:
    debtor_id = str((await request.form()).get("debtor_customer_id", ""))
    try:
        with ui.write() as session:
            debtor = ledger_flows.merge_customer(session, ui.scope, customer_id, debtor_id, pushes=ui.container.pushes)
            debtor_id, name, erp_id = debtor.id, debtor.name, debtor.erp_debtor_id
    except ArsyncError as exc:
        return redirect(f"/customers/{customer_id}", error=plain_words(exc))
    return redirect(
        f"/customers/{debtor_id}",
        notice=f"Linked: the invoices are now {name}'s (ERP debtor {erp_id}); any that could not be sent go now.",
    )


@router.post("/customers/{customer_id}/erp-debtor")
def create_erp_debtor(request: Request, ui: ActionDep, customer_id: str) -> Response:
    """Create the customer as a contact in the connected native ERP (Xero) and link it."""

    try:
        linked = ui.container.debtors.create_in_erp(ui.scope, customer_id)
    except ArsyncError as exc:
        return redirect(back_to(request, f"/customers/{customer_id}"), error=plain_words(exc))
    # Merged into a debtor a sync brought in meanwhile: the old customer page is gone.
    page = back_to(request, f"/customers/{linked.id}") if linked.id == customer_id else f"/customers/{linked.id}"
    return redirect(
        page, notice=f"Created in the ERP and linked (ERP debtor {linked.erp_debtor_id}); its invoices can be sent now."
    )


@router.post("/customers/{customer_id}/nomod-unlink")
def unlink_nomod_customer(request: Request, ui: ActionDep, customer_id: str) -> Response:
    """Forget the customer's Nomod customer; its next Nomod sync creates a new one."""

    def run() -> str:
        ui.container.nomod.unlink_customer(ui.scope, customer_id)
        return "Unlinked from Nomod. The next payment link or invoice sync creates a new Nomod customer."

    return act(request, f"/customers/{customer_id}", run, lambda message: message)


# Invoices -------------------------------------------------------------------------------

INVOICE_STATUSES = tuple(InvoiceStatus)


INVOICE_COLUMNS = [
    Column("number", "Number"), Column("customer", "Customer"), Column("issued", "Issued", narrow_hidden=True),
    Column("due", "Due"), Column("status", "Status"), Column("total", "Total", numeric=True),
    Column("outstanding", "Outstanding", numeric=True),
]  # fmt: skip
INVOICE_FILTERS = ("q", "status", "currency", "customer", "issued_from", "issued_to", "due_from", "due_to", "overdue",
                   "sort", "order")  # fmt: skip


def _invoice_query(filters: Filters, today: date) -> InvoiceQuery:
    return InvoiceQuery(
        search=filters.text("q"), status=filters.one_of("status", INVOICE_STATUSES),
        customer_id=filters.text("customer"), currency=filters.currency(),
        issued_from=filters.day("issued_from", "issued from"), issued_to=filters.day("issued_to", "issued to"),
        due_from=filters.day("due_from", "due from"), due_to=filters.day("due_to", "due to"),
        overdue_on=today if filters.text("overdue") else None,
        sort=filters.choice("sort", tuple(INVOICE_SORTS), "issued"),  # type: ignore[arg-type]
        direction=filters.choice("order", ("asc", "desc"), "desc"),  # type: ignore[arg-type]
    )  # fmt: skip


@router.get("/invoices", response_class=HTMLResponse)
def invoices(request: Request, ui: UiDep, page: PageQuery = 1) -> Response:
    """Newest first unless sorted otherwise; every filter is in the address, so a view can be shared."""
    today = date.today()
    filters = Filters.read(request, INVOICE_FILTERS)
    query = _invoice_query(filters, today)
    with ui.db() as session:
        totals = query.totals(session, ui.scope)
        page = min(page, page_count(totals.count))
        rows, more = ledger.list_invoices(session, ui.scope, paging(page), query, total=totals.count)
        reads = invoice_reads(session, rows)
        names = _customer_names(session, {i.customer_id for i in reads})
        customer = session.get(Customer, query.customer_id) if query.customer_id else None
    return ledger_page(
        ui, request, "invoices.html", invoices=reads, names=names, filters=filters, query=query, totals=totals,
        statuses=INVOICE_STATUSES, page=page, pages=page_count(totals.count), has_more=more, today=today,
        headers=sort_headers(filters, "/invoices", INVOICE_COLUMNS, query.sort, query.direction),
        customer_name=customer.name if customer is not None and customer.tenant_id == ui.scope.tenant_id else None,
        export_url=filters.url("/invoices.csv"), page_url=filters.url("/invoices"),
    )  # fmt: skip


@router.get("/invoices.csv")
def invoices_csv(request: Request, ui: UiDep) -> Response:
    """What the list shows with the same filters and order, every page of it."""
    query = _invoice_query(Filters.read(request, INVOICE_FILTERS), date.today())
    return csv_download(ui, "invoices", lambda session: query.csv(session, ui.scope))


def _customer_names(session: Session, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    return dict(session.execute(select(Customer.id, Customer.name).where(Customer.id.in_(ids))).all())


@router.get("/invoices/{invoice_id}", response_class=HTMLResponse)
def invoice_page(request: Request, ui: UiDep, invoice_id: str) -> Response:
    with ui.db() as session:
        row = ledger.get_invoice(session, ui.scope, invoice_id)
        invoice = invoice_reads(session, [row])[0]
        customer = session.get(Customer, invoice.customer_id)
        waiting_for_link = row.can_dispatch and "dispatch" not in invoice.allowed_actions
        reach = erp_reach(session, ui.scope)
        payments, _ = ledger.list_payments(
            session, ui.scope, PageParams(page=1, limit=100), PaymentQuery(invoice_id=invoice.id, sort="date")
        )
        payment_rows = payment_reads(session, payments)
        # A payment waiting for its invoice to reach the ERP goes by itself once it does: its
        # reason is shown, without a button that could not help.
        payment_errors = {
            p.id: (*error_advice(p.push.last_error), (p.push.last_error or {}).get("kind") != "PrerequisiteMissing")
            for p in payment_rows
            if p.push and p.push.status == "FAILED"
        }
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
    return ledger_page(
        ui, request, "invoice.html", invoice=invoice, customer=customer, payments=payment_rows,
        applications=applications, push_error=push_error, nomod_error=nomod_error, today=date.today(), reach=reach,
        waiting_for_link=waiting_for_link, payment_errors=payment_errors,
    )  # fmt: skip


@router.post("/invoices/{invoice_id}/payments/{payment_id}/retry-push")
def retry_payment_push(request: Request, ui: ActionDep, invoice_id: str, payment_id: str) -> Response:
    """Send a payment whose push FAILED to the ERP again, from its invoice's page."""

    def run() -> str:
        with ui.write() as session:
            payment = ledger.get_payment(session, ui.scope, payment_id)
            push = pushes_by_payment(session, [payment.id]).get(payment.id)
            if push is None or payment.invoice_id != invoice_id:
                return "This payment is not waiting to be sent to the ERP."
            ui.container.pushes.retry(session, ui.scope, push.id)
            return "Sending the payment to the ERP again."

    return act(request, f"/invoices/{invoice_id}", run, lambda message: message)


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
