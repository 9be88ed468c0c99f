"""Money received: the payments list (filtered, sorted, exported) and cash applications, which
are reviewed, approved (in part, the rest kept as credit) or rejected."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from arsync.errors import InvalidInput
from arsync.ledger import schemas
from arsync.ledger import service as ledger
from arsync.ledger.listing import PAYMENT_SORTS, PaymentQuery
from arsync.ledger.models import (
    CASH_APPLICATION_STATUSES,
    CREDITABLE,
    PAYMENT_SOURCES,
    CashApplication,
    Customer,
    Invoice,
)
from arsync.ledger.views import cash_application_reads, payment_reads
from arsync.money import format_amount
from arsync.tenancy.scope import in_scope
from arsync.ui.base import ActionDep, Ui, UiDep, act
from arsync.ui.lists import Column, Filters, PageQuery, csv_download, ledger_page, page_count, paging, sort_headers

router = APIRouter(include_in_schema=False)

PAYMENT_COLUMNS = [
    Column("date", "Date"), Column("invoice", "Invoice"), Column("customer", "Customer", narrow_hidden=True),
    Column("amount", "Amount", numeric=True), Column("source", "Source"),
]  # fmt: skip
PAYMENT_FILTERS = ("q", "source", "currency", "customer", "paid_from", "paid_to", "sort", "order")


def _payment_query(filters: Filters) -> PaymentQuery:
    return PaymentQuery(
        search=filters.text("q"), currency=filters.currency(), customer_id=filters.text("customer"),
        source=filters.one_of("source", PAYMENT_SOURCES),
        paid_from=filters.day("paid_from", "paid from"), paid_to=filters.day("paid_to", "paid to"),
        sort=filters.choice("sort", tuple(PAYMENT_SORTS), "date"),  # type: ignore[arg-type]
        direction=filters.choice("order", ("asc", "desc"), "desc"),  # type: ignore[arg-type]
    )  # fmt: skip


@router.get("/payments", response_class=HTMLResponse)
def payments(request: Request, ui: UiDep, page: PageQuery = 1) -> Response:
    """Newest first unless sorted otherwise, searchable by invoice, customer or ERP payment id."""
    filters = Filters.read(request, PAYMENT_FILTERS)
    query = _payment_query(filters)
    with ui.db() as session:
        totals = query.totals(session, ui.scope)
        page = min(page, page_count(totals.count))
        rows, more = ledger.list_payments(session, ui.scope, paging(page), query, total=totals.count)
        reads = payment_reads(session, rows)
        invoices = {
            i.id: (i.invoice_number, i.customer_id)
            for i in session.execute(
                select(Invoice.id, Invoice.invoice_number, Invoice.customer_id).where(
                    Invoice.id.in_({p.invoice_id for p in reads})
                )
            )
        }
        names = dict(
            session.execute(
                select(Customer.id, Customer.name).where(Customer.id.in_({c for _, c in invoices.values()}))
            ).all()
        )
    return ledger_page(
        ui, request, "payments.html", payments=reads, invoices=invoices, names=names, filters=filters, query=query,
        totals=totals, sources=PAYMENT_SOURCES, page=page, pages=page_count(totals.count), has_more=more,
        headers=sort_headers(filters, "/payments", PAYMENT_COLUMNS, query.sort, query.direction),
        export_url=filters.url("/payments.csv"), page_url=filters.url("/payments"),
    )  # fmt: skip


@router.get("/payments.csv")
def payments_csv(request: Request, ui: UiDep) -> Response:
    """What the list shows with the same filters and order, every page of it."""
    query = _payment_query(Filters.read(request, PAYMENT_FILTERS))
    return csv_download(ui, "payments", lambda session: query.csv(session, ui.scope))


@router.get("/cash-applications", response_class=HTMLResponse)
def cash_applications(
    request: Request,
    ui: UiDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
    page: PageQuery = 1,
    invoice: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    status = status if status in CASH_APPLICATION_STATUSES else None
    with ui.db() as session:
        rows, more = ledger.list_cash_applications(session, ui.scope, paging(page), status=status)
        reads = cash_application_reads(session, rows)
        invoices = {
            i.id: i for i in session.scalars(select(Invoice).where(Invoice.id.in_({a.invoice_id for a in reads})))
        }
    offers = {a.id: _review_offer(a, invoices[a.invoice_id]) for a in reads if a.status == "PENDING"}
    return ledger_page(
        ui, request, "cash_applications.html", applications=reads, invoices=invoices, status=status, page=page,
        has_more=more, invoice_ref=invoice or "", today=date.today(), offers=offers,
        statuses=CASH_APPLICATION_STATUSES,
    )  # fmt: skip


def _review_offer(application: schemas.CashApplicationRead, invoice: Invoice) -> dict[str, Any]:
    """What a pending cash application can become: approved as it is, or applied in part with
    the rest kept as credit; rejecting is always offered. Mirrors the ledger's own checks."""
    amount = Decimal(application.amount)
    same_currency = application.currency == invoice.currency
    fits = same_currency and invoice.can_apply_cash and amount <= invoice.amount_outstanding
    credit = None
    if same_currency and not fits and invoice.status in CREDITABLE:
        applied = min(amount, invoice.amount_outstanding)
        credit = {"applied": format_amount(applied, invoice.currency),
                  "rest": format_amount(amount - applied, invoice.currency)}  # fmt: skip
    return {"approve": fits, "credit": credit}


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
async def approve_cash_application(request: Request, ui: ActionDep, application_id: str) -> Response:
    keep_rest_as_credit = (await request.form()).get("remainder") == "credit"

    def run() -> str:
        with ui.write() as session:
            application = ui.container.pushes.approve_cash_application(
                session, ui.scope, application_id, keep_rest_as_credit=keep_rest_as_credit
            )
            read = cash_application_reads(session, [application])[0]
        kept = f" {read.credited_amount} {read.currency} kept as the customer's credit." if read.credited_amount else ""
        if application.payment_id is None:
            return f"Approved: nothing was owed, so all of it is the customer's credit.{kept}"
        return f"Approved: payment {application.payment_id} recorded and being sent to the ERP.{kept}"

    return act(request, "/cash-applications", run, lambda message: message)


@router.post("/cash-applications/{application_id}/reject")
def reject_cash_application(request: Request, ui: ActionDep, application_id: str) -> Response:
    def run() -> str:
        with ui.write() as session:
            ledger.reject_cash_application(session, ui.scope, application_id)
        return "Rejected: no payment was recorded."

    return act(request, "/cash-applications", run, lambda message: message)
