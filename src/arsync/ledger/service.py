"""Customers, invoices, payments and cash applications within one (tenant, environment).

Every function takes the caller's session and scope and never commits: the request or job
that calls it owns the transaction.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.orm import Session

from arsync.db import update_if, utcnow
from arsync.errors import (
    DuplicateInvoiceNumber,
    ErpOwned,
    InvalidInput,
    InvalidState,
    OverApplication,
    PrerequisiteMissing,
)
from arsync.ledger import repository, schemas
from arsync.ledger.listing import InvoiceQuery, PaymentQuery
from arsync.ledger.models import (
    CASH_APPLICABLE,
    CREDITABLE,
    DISPATCHABLE,
    EDITABLE,
    FINALIZABLE,
    VOIDABLE,
    CashApplication,
    Customer,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Payment,
)
from arsync.money import decimal_places, exponent, format_amount
from arsync.schemas import PageParams
from arsync.tenancy.scope import Scope, get_scoped, in_scope, paginate, paginate_counted, paginate_rows

# Customers ------------------------------------------------------------------------------


def create_customer(session: Session, scope: Scope, body: schemas.CustomerCreate) -> Customer:
    customer = Customer(
        tenant_id=scope.tenant_id,
        environment_id=scope.environment_id,
        name=body.name.strip(),
        email=body.email,
        phone=body.phone,
        external_id=body.external_id,
        metadata_=body.metadata,
    )
    session.add(customer)
    session.flush()
    return customer


def list_customers(
    session: Session,
    scope: Scope,
    params: PageParams,
    *,
    name: str | None,
    email: str | None,
    erp_debtor_id: str | None,
) -> tuple[list[Row[Any]], bool]:
    statement = select(*repository.CUSTOMER_READ_COLUMNS).where(in_scope(Customer, scope))
    if name:
        statement = statement.where(func.lower(Customer.name).contains(name.lower(), autoescape=True))
    if email:
        statement = statement.where(func.lower(Customer.email) == email.lower())
    if erp_debtor_id:
        statement = statement.where(Customer.erp_debtor_id == erp_debtor_id)
    return paginate_rows(session, statement.order_by(Customer.id), params)


def get_customer(session: Session, scope: Scope, customer_id: str) -> Customer:
    return get_scoped(session, Customer, customer_id, scope, "customer")


def update_customer(session: Session, scope: Scope, customer_id: str, body: schemas.CustomerUpdate) -> Customer:
    customer = get_customer(session, scope, customer_id)
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        raise InvalidInput("name cannot be removed", details={"field": "name"})
    for field, value in changes.items():
        setattr(customer, "metadata_" if field == "metadata" else field, value)
    customer.updated_at = utcnow()
    return customer


def merge_customer(session: Session, scope: Scope, customer_id: str, debtor_id: str) -> Customer:
    """Fold a customer made in arsync into the ERP debtor it really is: its invoices move to the
    debtor's record, which keeps the ERP's id, and the arsync record goes. The caller moves what
    other features hold of the customer first."""
    customer = get_customer(session, scope, customer_id)
    debtor = get_customer(session, scope, debtor_id)
    if customer.id == debtor.id:
        raise InvalidInput("a customer cannot be merged into itself", details={"field": "debtorCustomerId"})
    if customer.erp_debtor_id:
        raise InvalidState(f"customer {customer.name} is already ERP debtor {customer.erp_debtor_id}; nothing to link")
    if not debtor.erp_debtor_id:
        raise InvalidInput(
            f"customer {debtor.name} is not an ERP debtor; choose one synced from the ERP",
            details={"field": "debtorCustomerId"},
        )
    session.execute(update(Invoice).where(Invoice.customer_id == customer.id).values(customer_id=debtor.id))
    for field in ("email", "phone"):
        if getattr(debtor, field) is None and getattr(customer, field) is not None:
            setattr(debtor, field, getattr(customer, field))
    debtor.updated_at = utcnow()
    session.delete(customer)
    session.flush()
    return debtor


# Invoices -------------------------------------------------------------------------------


def _line_rows(lines: list[schemas.LineIn], currency: str) -> list[dict[str, Any]]:
    """Line amounts are quantity × unit price, rounded half-up to the currency's decimals."""
    unit = Decimal(10) ** -exponent(currency)
    rows = []
    for position, line in enumerate(lines, start=1):
        # Quantities and unit prices carry up to 6 decimals (schemas.PositiveQuantity, UnitPrice).
        amount = (line.quantity * line.unit_price).quantize(unit, rounding=ROUND_HALF_UP)
        rows.append(
            {
                "position": position,
                "description": line.description,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "amount": amount,
            }
        )
    return rows


def _check_dates(issue_date: Any, due_date: Any) -> None:
    if due_date < issue_date:
        raise InvalidInput("dueDate must not be before issueDate", details={"field": "dueDate"})


def _replace_lines(session: Session, invoice: Invoice, rows: list[dict[str, Any]]) -> None:
    session.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id))
    session.add_all(InvoiceLine(invoice_id=invoice.id, **row) for row in rows)
    total = sum((row["amount"] for row in rows), Decimal(0))
    invoice.amount_total = total
    invoice.amount_outstanding = total


def _number_taken(session: Session, scope: Scope, number: str, except_id: str | None = None) -> bool:
    statement = select(Invoice.id).where(in_scope(Invoice, scope), Invoice.invoice_number == number)
    if except_id:
        statement = statement.where(Invoice.id != except_id)
    return session.scalar(statement.limit(1)) is not None


def create_invoice(session: Session, scope: Scope, body: schemas.InvoiceCreate) -> Invoice:
    customer = get_customer(session, scope, body.customer_id)
    _check_dates(body.issue_date, body.due_date)
    if _number_taken(session, scope, body.invoice_number):
        raise DuplicateInvoiceNumber(f"invoice number {body.invoice_number!r} is already used")
    invoice = Invoice(
        tenant_id=scope.tenant_id,
        environment_id=scope.environment_id,
        customer_id=customer.id,
        invoice_number=body.invoice_number,
        issue_date=body.issue_date,
        due_date=body.due_date,
        currency=body.currency,
        amount_total=Decimal(0),
        amount_outstanding=Decimal(0),
        status=InvoiceStatus.DRAFT,
    )
    session.add(invoice)
    session.flush()
    _replace_lines(session, invoice, _line_rows(body.lines, body.currency))
    session.flush()
    return invoice


def list_invoices(
    session: Session, scope: Scope, params: PageParams, query: InvoiceQuery, *, total: int | None = None
) -> tuple[list[Invoice], bool]:
    """A page of invoices; given how many the query selects (``total``), a late page is read from the end."""
    if total is None:
        return paginate(session, query.rows(scope), params)
    return paginate_counted(session, query.rows(scope), query.rows(scope, backwards=True), params, total)


def get_invoice(session: Session, scope: Scope, invoice_id: str) -> Invoice:
    return get_scoped(session, Invoice, invoice_id, scope, "invoice")


def invoice_lines(session: Session, invoice_ids: list[str]) -> dict[str, list[InvoiceLine]]:
    grouped: dict[str, list[InvoiceLine]] = {invoice_id: [] for invoice_id in invoice_ids}
    if invoice_ids:
        for line in session.scalars(
            select(InvoiceLine)
            .where(InvoiceLine.invoice_id.in_(invoice_ids))
            .order_by(InvoiceLine.invoice_id, InvoiceLine.position)
        ):
            grouped[line.invoice_id].append(line)
    return grouped


def _editable(invoice: Invoice, action: str) -> None:
    if invoice.erp_hash is not None:
        raise ErpOwned(
            f"invoice {invoice.id} was imported from the ERP, which owns it; {action} it there and sync",
        )


def _require_status(invoice: Invoice, allowed: tuple[str, ...], action: str) -> None:
    if invoice.status not in allowed:
        raise InvalidState(
            f"cannot {action} an invoice in status {invoice.status}; it must be {' or '.join(allowed)}",
        )


def _move_invoice(
    session: Session,
    invoice: Invoice,
    allowed: tuple[str, ...],
    action: str,
    *conditions: Any,
    refused: str | None = None,
    **values: Any,
) -> None:
    """Change an invoice's state only if it is still in one of ``allowed`` (and ``conditions``
    hold), in one conditional UPDATE; otherwise 409, with ``refused`` as the reason when the
    status was right."""
    if not update_if(session, invoice, Invoice.status.in_(allowed), *conditions, updated_at=utcnow(), **values):
        _require_status(invoice, allowed, action)
        raise InvalidState(refused or f"invoice {invoice.id} changed while it was being {action}ed; try again")


def update_invoice(session: Session, scope: Scope, invoice_id: str, body: schemas.InvoiceUpdate) -> Invoice:
    invoice = get_invoice(session, scope, invoice_id)
    _editable(invoice, "change")
    _require_status(invoice, EDITABLE, "change")
    changes = body.model_dump(exclude_unset=True, exclude={"lines"})
    for field, value in changes.items():
        if value is None:
            raise InvalidInput(f"{field} cannot be removed", details={"field": field})
        setattr(invoice, field, value)
    _check_dates(invoice.issue_date, invoice.due_date)
    if "invoice_number" in changes and _number_taken(session, scope, invoice.invoice_number, invoice.id):
        raise DuplicateInvoiceNumber(f"invoice number {invoice.invoice_number!r} is already used")
    if body.lines is not None or "currency" in changes:
        lines = body.lines
        if lines is None:
            existing = invoice_lines(session, [invoice.id])[invoice.id]
            lines = [
                schemas.LineIn(description=line.description, quantity=line.quantity, unit_price=line.unit_price)
                for line in existing
            ]
        _replace_lines(session, invoice, _line_rows(lines, invoice.currency))
    invoice.updated_at = utcnow()
    session.flush()
    return invoice


def finalize_invoice(session: Session, scope: Scope, invoice_id: str) -> Invoice:
    invoice = get_invoice(session, scope, invoice_id)
    _editable(invoice, "finalize")
    _require_status(invoice, FINALIZABLE, "finalize")
    _move_invoice(session, invoice, FINALIZABLE, "finalize", status=InvoiceStatus.FINALIZED)
    return invoice


def void_invoice(session: Session, scope: Scope, invoice_id: str) -> Invoice:
    invoice = get_invoice(session, scope, invoice_id)
    _editable(invoice, "void")
    _require_status(invoice, VOIDABLE, "void")
    if invoice.sent_to_erp:
        raise InvalidState(
            f"invoice {invoice.invoice_number} was dispatched to the ERP; void it there, so both agree",
        )
    paid = "cannot void an invoice that has payments applied"
    if invoice.amount_outstanding != invoice.amount_total:
        raise InvalidState(paid)
    # Payments lower amount_outstanding under the invoice's row lock, so the same condition in
    # the UPDATE keeps a payment approved meanwhile from being voided away.
    untouched = Invoice.amount_outstanding == Invoice.amount_total
    _move_invoice(session, invoice, VOIDABLE, "void", untouched, refused=paid, status=InvoiceStatus.VOIDED)
    return invoice


def customers_in_erp(session: Session, customer_ids: set[str]) -> set[str]:
    """Which of these customers are linked to an ERP debtor: only their invoices can be dispatched,
    since an invoice push names the ERP's debtor."""
    if not customer_ids:
        return set()
    linked = select(Customer.id).where(Customer.id.in_(customer_ids), Customer.erp_debtor_id.is_not(None))
    return set(session.scalars(linked))


def mark_dispatched(session: Session, scope: Scope, invoice_id: str) -> tuple[Invoice, bool]:
    """Mark the invoice dispatched; marking twice keeps the first time. This records no push:
    dispatching is ``PushFlows.dispatch_invoice``, which calls this.

    Returns the invoice and whether this call dispatched it (only one of any number of
    concurrent calls does: the UPDATE is conditional on ``dispatched_at`` being unset).
    """
    invoice = get_invoice(session, scope, invoice_id)
    _editable(invoice, "dispatch")
    _require_status(invoice, DISPATCHABLE, "dispatch")
    if invoice.dispatched_at is None and invoice.customer_id not in customers_in_erp(session, {invoice.customer_id}):
        customer = get_customer(session, scope, invoice.customer_id)
        raise PrerequisiteMissing(
            f"customer {customer.name} is not in the ERP yet, so its invoice cannot be sent there",
            f"link the customer to its ERP debtor (POST /api/v1/customers/{customer.id}/merge, or the customer's "
            f"page: Link to an ERP debtor), or on Xero create it there (POST /api/v1/customers/{customer.id}"
            "/erp-debtor); then dispatch",
        )
    now = utcnow()
    first = update_if(session, invoice, Invoice.dispatched_at.is_(None), Invoice.status.in_(DISPATCHABLE),
                      dispatched_at=now, updated_at=now)  # fmt: skip
    if not first and invoice.dispatched_at is None:
        _require_status(invoice, DISPATCHABLE, "dispatch")
    return invoice, first


# Payments and cash applications --------------------------------------------------------


def list_payments(
    session: Session, scope: Scope, params: PageParams, query: PaymentQuery, *, total: int | None = None
) -> tuple[list[Payment], bool]:
    """A page of payments; given how many the query selects (``total``), a late page is read from the end."""
    if total is None:
        return paginate(session, query.rows(scope), params)
    return paginate_counted(session, query.rows(scope), query.rows(scope, backwards=True), params, total)


def get_payment(session: Session, scope: Scope, payment_id: str) -> Payment:
    return get_scoped(session, Payment, payment_id, scope, "payment")


def create_cash_application(session: Session, scope: Scope, body: schemas.CashApplicationCreate) -> CashApplication:
    invoice = get_invoice(session, scope, body.invoice_id)
    _require_status(invoice, CASH_APPLICABLE, "apply cash to")
    if decimal_places(body.amount) > exponent(invoice.currency):
        raise InvalidInput(
            f"amount {body.amount} has more decimals than {invoice.currency} allows", details={"field": "amount"}
        )
    _refuse_over_application(body.amount, invoice, pending=_pending_total(session, invoice.id))
    application = CashApplication(
        tenant_id=scope.tenant_id,
        environment_id=scope.environment_id,
        invoice_id=invoice.id,
        amount=body.amount,
        application_date=body.date,
        reference=body.reference,
        status="PENDING",
    )
    session.add(application)
    session.flush()
    return application


def list_cash_applications(
    session: Session, scope: Scope, params: PageParams, *, status: str | None
) -> tuple[list[CashApplication], bool]:
    statement = select(CashApplication).where(in_scope(CashApplication, scope))
    if status:
        statement = statement.where(CashApplication.status == status)
    return paginate(session, statement.order_by(CashApplication.id), params)


def get_cash_application(session: Session, scope: Scope, application_id: str) -> CashApplication:
    return get_scoped(session, CashApplication, application_id, scope, "cash application")


def approve_cash_application(
    session: Session,
    scope: Scope,
    application_id: str,
    *,
    keep_rest_as_credit: bool = False,
) -> CashApplication:
    """Record the payment and lower the invoice's outstanding amount exactly, once.

    With ``keep_rest_as_credit`` money that is more than the invoice still owes is applied up to
    the outstanding amount (nothing, on a paid invoice) and the rest is kept as the customer's
    credit (``credited_amount``); without it, such money is refused.

    The invoice row is locked first (every change to its outstanding amount takes that lock),
    then the application moves from PENDING in a conditional UPDATE: of any number of
    concurrent approvals exactly one records a payment, and the others get 409.
    """
    application = get_cash_application(session, scope, application_id)
    invoice = session.scalars(select(Invoice).where(Invoice.id == application.invoice_id).with_for_update()).one()
    session.refresh(application)
    _require_pending(application, "approve")
    if application.currency not in (None, invoice.currency):
        raise InvalidState(
            f"the money of cash application {application.id} is in {application.currency} and invoice "
            f"{invoice.invoice_number} is in {invoice.currency}; reject it and record the payment in "
            f"{invoice.currency}",
        )
    if keep_rest_as_credit:
        _require_status(invoice, CREDITABLE, "apply cash to")
        applied = min(application.amount, invoice.amount_outstanding)
    else:
        _require_status(invoice, CASH_APPLICABLE, "apply cash to")
        _refuse_over_application(application.amount, invoice)
        applied = application.amount
    credited = application.amount - applied
    now = utcnow()
    _claim_pending(session, application, "approve", status="APPROVED", approved_at=now,
                   credited_amount=credited if credited else None)  # fmt: skip
    if applied == 0:
        return application
    payment = Payment(
        tenant_id=scope.tenant_id,
        environment_id=scope.environment_id,
        invoice_id=invoice.id,
        amount=applied,
        payment_date=application.application_date,
        source=application.source,
    )
    session.add(payment)
    session.flush()
    invoice.amount_outstanding -= applied
    if invoice.amount_outstanding == 0:
        invoice.status = InvoiceStatus.PAID
    invoice.updated_at = now
    application.payment_id = payment.id
    return application


def _pending_total(session: Session, invoice_id: str) -> Decimal:
    pending = select(func.sum(CashApplication.amount)).where(
        CashApplication.invoice_id == invoice_id, CashApplication.status == "PENDING"
    )
    return session.scalar(pending) or Decimal(0)


def _refuse_over_application(amount: Decimal, invoice: Invoice, *, pending: Decimal = Decimal(0)) -> None:
    """Checked when the application is recorded (counting the ones still waiting for approval,
    which would otherwise over-apply together) and again when it is approved (the invoice may
    have been paid in between)."""
    room = invoice.amount_outstanding - pending
    if amount > room:
        outstanding = format_amount(invoice.amount_outstanding, invoice.currency)
        waiting = (
            f", and {format_amount(pending, invoice.currency)} of it is already waiting for approval"
            if pending else ""
        )  # fmt: skip
        raise OverApplication(
            f"amount {format_amount(amount, invoice.currency)} {invoice.currency} exceeds the outstanding "
            f"{outstanding} {invoice.currency}{waiting}",
        )


def reject_cash_application(session: Session, scope: Scope, application_id: str) -> CashApplication:
    """Set a PENDING cash application aside: no payment is recorded."""
    application = get_cash_application(session, scope, application_id)
    _require_pending(application, "reject")
    _claim_pending(session, application, "reject", status="REJECTED")
    return application


def _require_pending(application: CashApplication, action: str) -> None:
    if application.status != "PENDING":
        raise InvalidState(
            f"cannot {action} cash application {application.id}: it is {application.status}, not PENDING",
        )


def _claim_pending(session: Session, application: CashApplication, action: str, **values: Any) -> None:
    """Move the application out of PENDING only if no one else has (see :func:`arsync.db.update_if`)."""
    if not update_if(session, application, CashApplication.status == "PENDING", **values):
        _require_pending(application, action)
