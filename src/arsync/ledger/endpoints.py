"""``/api/v1`` routes for customers, invoices, payments and cash applications."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from arsync.bootstrap import Container
from arsync.ledger import flows, reports, schemas, views
from arsync.ledger import service as ledger
from arsync.ledger.listing import Direction, InvoiceQuery, InvoiceSort, PaymentQuery, PaymentSort, PaymentSource
from arsync.ledger.models import InvoiceStatus
from arsync.nomod import repository as nomod_repository
from arsync.schemas import IsoDate, Page
from arsync.tenancy.scope import not_found
from arsync.web.deps import ContainerDep, CredentialsDep, PagingDep, ScopeDep, SessionDep, authenticate
from arsync.web.errors import ERROR_RESPONSES
from arsync.web.pg_reads import PgReads
from arsync.web.responses import json_response, page_response

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)


async def _in_read_session(request: Request, read: Callable[[Session], Response]) -> Response:
    """Run ``read`` in a worker thread with a read session (the routes that choose their own path)."""
    container: Container = request.app.state.container

    def run() -> Response:
        with container.read_session_factory() as session:
            return read(session)

    return await run_in_threadpool(run)


# Customers ------------------------------------------------------------------------------


@router.post("/customers", status_code=201, response_model=schemas.CustomerRead, tags=["customers"])
def create_customer(body: schemas.CustomerCreate, scope: ScopeDep, session: SessionDep) -> schemas.CustomerRead:
    """Create a customer (debtor)."""
    return views.customer_read(ledger.create_customer(session, scope, body))


@router.get("/customers", response_model=Page[schemas.CustomerRead], tags=["customers"])
async def list_customers(
    request: Request,
    credentials: CredentialsDep,
    paging: PagingDep,
    name: Annotated[str | None, Query(max_length=200, description="Part of the name, any case")] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    erp_debtor_id: Annotated[str | None, Query(alias="erpDebtorId", max_length=200)] = None,
) -> Response:
    """List customers, filtered by name, email or ERP debtor id."""
    pg_reads: PgReads | None = request.app.state.pg_reads
    if pg_reads is not None:
        body = await pg_reads.customer_page(credentials, paging, name=name, email=email, erp_debtor_id=erp_debtor_id)
        return Response(body, media_type="application/json")

    def read(session: Session) -> Response:
        scope = authenticate(session, credentials)
        rows, more = ledger.list_customers(session, scope, paging, name=name, email=email, erp_debtor_id=erp_debtor_id)
        return page_response([views.customer_wire(row) for row in rows], paging, more)

    return await _in_read_session(request, read)


@router.get("/customers/{customer_id}", response_model=schemas.CustomerRead, tags=["customers"])
async def get_customer(customer_id: str, request: Request, credentials: CredentialsDep) -> Response:
    """Get one customer."""
    pg_reads: PgReads | None = request.app.state.pg_reads
    if pg_reads is not None:
        body = await pg_reads.customer(credentials, customer_id)
        if body is None:
            raise not_found("customer", customer_id)
        return Response(body, media_type="application/json")

    def read(session: Session) -> Response:
        scope = authenticate(session, credentials)
        return json_response(views.customer_read(ledger.get_customer(session, scope, customer_id)))

    return await _in_read_session(request, read)


@router.patch("/customers/{customer_id}", response_model=schemas.CustomerRead, tags=["customers"])
def update_customer(
    customer_id: str, body: schemas.CustomerUpdate, scope: ScopeDep, session: SessionDep
) -> schemas.CustomerRead:
    """Change a customer's fields; omitted fields stay as they are."""
    return views.customer_read(ledger.update_customer(session, scope, customer_id, body))


@router.get("/customers/{customer_id}/integrations", response_model=schemas.IntegrationsRead, tags=["customers"])
def customer_integrations(customer_id: str, scope: ScopeDep, session: SessionDep) -> schemas.IntegrationsRead:
    """The customer's links to payment providers, e.g. its Nomod customer id."""
    customer = ledger.get_customer(session, scope, customer_id)
    return schemas.IntegrationsRead(**nomod_repository.customer_integrations(session, scope, customer))


@router.post("/customers/{customer_id}/merge", response_model=schemas.CustomerRead, tags=["customers"])
def merge_customer(
    customer_id: str, body: schemas.CustomerMerge, scope: ScopeDep, session: SessionDep, container: ContainerDep
) -> schemas.CustomerRead:
    """Link a customer made in arsync to its ERP debtor: its invoices (and Nomod customer) move to
    the debtor's record, which keeps the ERP's id, and this customer is removed. Pushes that failed
    for want of the link go again. Answers the debtor."""
    debtor = flows.merge_customer(session, scope, customer_id, body.debtor_customer_id, pushes=container.pushes)
    return views.customer_read(debtor)


@router.post("/customers/{customer_id}/erp-debtor", response_model=schemas.CustomerRead, tags=["customers"])
def create_erp_debtor(customer_id: str, scope: ScopeDep, container: ContainerDep) -> schemas.CustomerRead:
    """Create a customer made in arsync as a contact in the connected Xero organisation and link it
    to that contact; its invoices can then be dispatched. Safe to repeat: a contact made before is
    found again (it carries the customer's id as its ContactNumber). REST middleware cannot create
    debtors: link the customer to a synced one instead (``POST /customers/{id}/merge``)."""
    return views.customer_read(container.debtors.create_in_erp(scope, customer_id))


@router.get("/customers/{customer_id}/balance", response_model=schemas.CustomerBalanceRead, tags=["customers"])
def customer_balance(customer_id: str, scope: ScopeDep, session: SessionDep) -> schemas.CustomerBalanceRead:
    """What the customer owes, how much is overdue, and its credit, per currency, as of today."""
    customer = ledger.get_customer(session, scope, customer_id)
    today = date.today()
    balances = reports.customer_balances(session, scope, customer.id, today)
    return views.customer_balance_read(customer.id, today, balances)


@router.get("/reports/aging", response_model=schemas.AgingRead, tags=["reports"])
def aging_report(
    scope: ScopeDep,
    session: SessionDep,
    top: Annotated[int, Query(ge=1, le=500)] = 20,
    currency: Annotated[
        str | None, Query(pattern="^[A-Z]{3}$", description="Rank the customers in this currency only (faster)")
    ] = None,
) -> schemas.AgingRead:
    """Outstanding on finalized invoices by days past due (current, 1–30, 31–60, 61–90, 90+), per
    currency and, per currency (or in ``currency``), for the ``top`` customers that owe most."""
    return views.aging_read(reports.aging(session, scope, date.today(), top=top, customers_in=currency))


# Invoices -------------------------------------------------------------------------------


@router.post("/invoices", status_code=201, response_model=views.InvoiceRead, tags=["invoices"])
def create_invoice(body: schemas.InvoiceCreate, scope: ScopeDep, session: SessionDep) -> views.InvoiceRead:
    """Create a DRAFT invoice; its total is computed exactly from the lines."""
    return views.invoice_reads(session, [ledger.create_invoice(session, scope, body)])[0]


@router.get("/invoices", response_model=Page[views.InvoiceRead], tags=["invoices"])
def list_invoices(
    scope: ScopeDep,
    session: SessionDep,
    paging: PagingDep,
    status: InvoiceStatus | None = None,
    customer_id: Annotated[str | None, Query(alias="customerId", max_length=40)] = None,
    due_before: Annotated[IsoDate | None, Query(alias="dueBefore")] = None,
    due_after: Annotated[IsoDate | None, Query(alias="dueAfter")] = None,
    issued_before: Annotated[IsoDate | None, Query(alias="issuedBefore")] = None,
    issued_after: Annotated[IsoDate | None, Query(alias="issuedAfter")] = None,
    currency: Annotated[str | None, Query(pattern="^[A-Z]{3}$")] = None,
    overdue: Annotated[bool, Query(description="Only finalized invoices still owed and past due today")] = False,
    q: Annotated[str | None, Query(max_length=200, description="Part of the invoice number or customer name")] = None,
    sort: Annotated[InvoiceSort, Query()] = "id",
    order: Annotated[Direction, Query()] = "asc",
) -> Response:
    """List invoices, filtered and sorted; the same filters as the UI's list and its CSV export."""
    query = InvoiceQuery(
        search=q, status=status, customer_id=customer_id, currency=currency, issued_from=issued_after,
        issued_to=issued_before, due_from=due_after, due_to=due_before, overdue_on=date.today() if overdue else None,
        sort=sort, direction=order,
    )  # fmt: skip
    rows, more = ledger.list_invoices(session, scope, paging, query)
    return json_response(
        Page(items=views.invoice_reads(session, rows), page=paging.page, limit=paging.limit, has_more=more)
    )


@router.get("/invoices/{invoice_id}", response_model=views.InvoiceRead, tags=["invoices"])
def get_invoice(invoice_id: str, scope: ScopeDep, session: SessionDep) -> Response:
    """Get one invoice with its lines."""
    return json_response(views.invoice_reads(session, [ledger.get_invoice(session, scope, invoice_id)])[0])


@router.patch("/invoices/{invoice_id}", response_model=views.InvoiceRead, tags=["invoices"])
def update_invoice(
    invoice_id: str, body: schemas.InvoiceUpdate, scope: ScopeDep, session: SessionDep
) -> views.InvoiceRead:
    """Change a DRAFT invoice; new lines recompute the total."""
    return views.invoice_reads(session, [ledger.update_invoice(session, scope, invoice_id, body)])[0]


@router.post("/invoices/{invoice_id}/finalize", response_model=views.InvoiceRead, tags=["invoices"])
def finalize_invoice(
    invoice_id: str, scope: ScopeDep, session: SessionDep, container: ContainerDep
) -> views.InvoiceRead:
    """DRAFT → FINALIZED. With Nomod's outbound invoice sync on, the invoice then goes to Nomod (see ``nomod``)."""
    invoice = flows.finalize_invoice(session, scope, invoice_id, nomod=container.nomod)
    return views.invoice_reads(session, [invoice])[0]


@router.post("/invoices/{invoice_id}/void", response_model=views.InvoiceRead, tags=["invoices"])
def void_invoice(invoice_id: str, scope: ScopeDep, session: SessionDep) -> views.InvoiceRead:
    """DRAFT or FINALIZED (with nothing paid) → VOIDED."""
    return views.invoice_reads(session, [ledger.void_invoice(session, scope, invoice_id)])[0]


@router.post("/invoices/{invoice_id}/dispatch", response_model=views.InvoiceRead, tags=["invoices"])
def dispatch_invoice(
    invoice_id: str, scope: ScopeDep, session: SessionDep, container: ContainerDep
) -> views.InvoiceRead:
    """Dispatch a finalized invoice; it is pushed to the ERP right after (see ``push``)."""
    return views.invoice_reads(session, [container.pushes.dispatch_invoice(session, scope, invoice_id)])[0]


# Payments and cash applications --------------------------------------------------------


@router.get("/payments", response_model=Page[views.PaymentRead], tags=["payments"])
def list_payments(
    scope: ScopeDep,
    session: SessionDep,
    paging: PagingDep,
    invoice_id: Annotated[str | None, Query(alias="invoiceId", max_length=40)] = None,
    customer_id: Annotated[str | None, Query(alias="customerId", max_length=40)] = None,
    currency: Annotated[str | None, Query(pattern="^[A-Z]{3}$")] = None,
    source: Annotated[PaymentSource | None, Query()] = None,
    paid_before: Annotated[IsoDate | None, Query(alias="paidBefore")] = None,
    paid_after: Annotated[IsoDate | None, Query(alias="paidAfter")] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Part of the invoice number, customer name or ERP payment id")
    ] = None,
    sort: Annotated[PaymentSort, Query()] = "id",
    order: Annotated[Direction, Query()] = "asc",
) -> Response:
    """List payments, filtered and sorted; the same filters as the UI's list and its CSV export."""
    query = PaymentQuery(
        search=q, invoice_id=invoice_id, customer_id=customer_id, currency=currency, source=source,
        paid_from=paid_after, paid_to=paid_before, sort=sort, direction=order,
    )  # fmt: skip
    rows, more = ledger.list_payments(session, scope, paging, query)
    return json_response(
        Page(items=views.payment_reads(session, rows), page=paging.page, limit=paging.limit, has_more=more)
    )


@router.get("/payments/{payment_id}", response_model=views.PaymentRead, tags=["payments"])
def get_payment(payment_id: str, scope: ScopeDep, session: SessionDep) -> Response:
    """Get one payment."""
    return json_response(views.payment_reads(session, [ledger.get_payment(session, scope, payment_id)])[0])


@router.post(
    "/cash-applications", status_code=201, response_model=schemas.CashApplicationRead, tags=["cash applications"]
)
def create_cash_application(
    body: schemas.CashApplicationCreate, scope: ScopeDep, session: SessionDep
) -> schemas.CashApplicationRead:
    """Record money received against a finalized invoice, PENDING until approved."""
    return views.cash_application_reads(session, [ledger.create_cash_application(session, scope, body)])[0]


@router.get("/cash-applications", response_model=Page[schemas.CashApplicationRead], tags=["cash applications"])
def list_cash_applications(
    scope: ScopeDep, session: SessionDep, paging: PagingDep, status: schemas.CashApplicationStatus | None = None
) -> Response:
    """List cash applications, optionally by status."""
    rows, more = ledger.list_cash_applications(session, scope, paging, status=status)
    return json_response(
        Page(items=views.cash_application_reads(session, rows), page=paging.page, limit=paging.limit, has_more=more)
    )


@router.get(
    "/cash-applications/{application_id}", response_model=schemas.CashApplicationRead, tags=["cash applications"]
)
def get_cash_application(application_id: str, scope: ScopeDep, session: SessionDep) -> Response:
    """Get one cash application."""
    application = ledger.get_cash_application(session, scope, application_id)
    return json_response(views.cash_application_reads(session, [application])[0])


@router.post(
    "/cash-applications/{application_id}/approve",
    response_model=schemas.CashApplicationRead,
    tags=["cash applications"],
)
def approve_cash_application(
    application_id: str,
    scope: ScopeDep,
    session: SessionDep,
    container: ContainerDep,
    keep_rest_as_credit: Annotated[bool, Query(alias="keepRestAsCredit")] = False,
) -> schemas.CashApplicationRead:
    """PENDING → APPROVED: records the payment and lowers the invoice's outstanding amount, once.

    A second approval (or a concurrent one) gets 409 INVALID_STATE and records nothing.
    Over-application is refused, unless ``keepRestAsCredit=true``: then what the invoice still
    owes is applied and the rest is kept as the customer's credit (``creditedAmount``).
    """
    approved = container.pushes.approve_cash_application(
        session, scope, application_id, keep_rest_as_credit=keep_rest_as_credit
    )
    return views.cash_application_reads(session, [approved])[0]


@router.post(
    "/cash-applications/{application_id}/reject",
    response_model=schemas.CashApplicationRead,
    tags=["cash applications"],
)
def reject_cash_application(application_id: str, scope: ScopeDep, session: SessionDep) -> schemas.CashApplicationRead:
    """PENDING → REJECTED: the money is not applied and no payment is recorded."""
    return views.cash_application_reads(session, [ledger.reject_cash_application(session, scope, application_id)])[0]
