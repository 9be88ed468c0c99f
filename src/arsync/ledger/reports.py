"""What is owed, read from the ledger as an AR team reads it: aging buckets, balances, credit.

Everything here is one aggregate statement over the ledger's indexes, never a cached figure
that could go stale. "Outstanding" is the amount still owed on FINALIZED invoices; drafts are
not owed yet, paid or voided invoices owe nothing, and an invoice the ERP no longer has (marked
by a reconciliation) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from arsync.ledger.models import CashApplication, Customer, Invoice, InvoiceStatus, Payment
from arsync.tenancy.scope import Scope, in_scope

# Days past due, as collections tools bucket them.
BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")
BUCKET_LABELS = {"current": "Current", "1-30": "1–30 days", "31-60": "31–60 days", "61-90": "61–90 days",
                 "90+": "Over 90 days"}  # fmt: skip


def _bucket_bounds(today: date) -> list[tuple[str, date | None, date | None]]:
    """Each bucket as due dates from (inclusive) and before (exclusive); None is open-ended."""
    edges = [today - timedelta(days=days) for days in (30, 60, 90)]
    return [("current", today, None), ("1-30", edges[0], today), ("31-60", edges[1], edges[0]),
            ("61-90", edges[2], edges[1]), ("90+", None, edges[2])]  # fmt: skip


def bucket_of(due_date: Any, today: date) -> ColumnElement[str]:
    """The aging bucket of a due date, as SQL (comparisons with fixed dates, so any index on the
    due date serves and SQLite and PostgreSQL agree)."""
    return case(*((due_date >= since, name) for name, since, _ in _bucket_bounds(today) if since), else_="90+")


def bucket_on(due: date, today: date) -> str:
    """The aging bucket of a due date, in Python: the same bounds as :func:`bucket_of`."""
    return next(name for name, since, _ in _bucket_bounds(today) if since is None or due >= since)


def owed_invoices(scope: Scope) -> list[ColumnElement[bool]]:
    """The invoices still owed: finalized, not fully paid, and still in the ERP (models.OWED)."""
    return [
        in_scope(Invoice, scope),
        Invoice.status == InvoiceStatus.FINALIZED,
        Invoice.amount_outstanding > Decimal(0),
        Invoice.erp_deleted_at.is_(None),
    ]


@dataclass
class AgingRow:
    """One line of the report: a currency's (or one customer's, in one currency) outstanding by bucket."""

    currency: str
    buckets: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(BUCKETS, Decimal(0)))
    invoices: int = 0
    customer_id: str | None = None
    customer_name: str | None = None

    @property
    def total(self) -> Decimal:
        return sum(self.buckets.values(), Decimal(0))

    @property
    def overdue(self) -> Decimal:
        return self.total - self.buckets["current"]


@dataclass
class Aging:
    as_of: date
    by_currency: list[AgingRow]
    by_customer: list[AgingRow]  # per currency, the largest balances first
    open_balances: int  # how many (customer, currency) balances are owed, of which ``by_customer`` is the top
    customers_in: str | None = None  # the one currency ``by_customer`` and ``open_balances`` cover, or every one


def aging(session: Session, scope: Scope, today: date, *, top: int = 20, customers_in: str | None = None) -> Aging:
    """Outstanding by currency and by customer, in the five buckets, as of ``today``. The customers
    owing most are ranked in every currency, or only in ``customers_in``: the ranking sums every
    open balance it covers, so narrowed to one currency it reads that currency's rows alone."""
    by_customer, open_balances = aging_by_customer(session, scope, today, top=top, currency=customers_in)
    return Aging(today, aging_by_currency(session, scope, today), by_customer, open_balances, customers_in)


def aging_by_currency(session: Session, scope: Scope, today: date) -> list[AgingRow]:
    """What each currency's finalized invoices owe, by bucket, in currency order."""
    bucket = bucket_of(Invoice.due_date, today).label("bucket")
    by_currency: dict[str, AgingRow] = {}
    for currency, name, amount, count in session.execute(
        select(Invoice.currency, bucket, func.sum(Invoice.amount_outstanding), func.count())
        .where(*owed_invoices(scope))
        .group_by(Invoice.currency, bucket)
    ):
        row = by_currency.setdefault(currency, AgingRow(currency))
        row.buckets[name] += amount
        row.invoices += count
    return [by_currency[c] for c in sorted(by_currency)]


def aging_by_customer(
    session: Session, scope: Scope, today: date, *, top: int, currency: str | None
) -> tuple[list[AgingRow], int]:
    """The ``top`` customers owing most in each currency (or in ``currency``), by bucket, and how
    many (customer, currency) balances are open in all."""
    bucket = bucket_of(Invoice.due_date, today).label("bucket")
    largest, open_balances = _largest_balances(session, scope, top, currency)
    by_customer = {key: AgingRow(key[1], customer_id=key[0]) for key in largest}
    if largest:
        for customer_id, in_currency, name, amount, count in session.execute(
            select(Invoice.customer_id, Invoice.currency, bucket, func.sum(Invoice.amount_outstanding), func.count())
            .where(*owed_invoices(scope), Invoice.customer_id.in_({customer_id for customer_id, _ in largest}))
            .group_by(Invoice.customer_id, Invoice.currency, bucket)
        ):
            if (customer_id, in_currency) in by_customer:
                row = by_customer[(customer_id, in_currency)]
                row.buckets[name] += amount
                row.invoices += count
    names = {customer_id: name for customer_id, name in session.execute(
        select(Customer.id, Customer.name).where(Customer.id.in_({c for c, _ in largest})))}  # fmt: skip
    for row in by_customer.values():
        row.customer_name = names.get(row.customer_id or "")
    return [by_customer[key] for key in largest], open_balances


def _largest_balances(
    session: Session, scope: Scope, top: int, currency: str | None
) -> tuple[list[tuple[str, str]], int]:
    """The ``top`` (customer, currency) balances of each currency (or of ``currency``), largest
    first, and how many such balances are open. Amounts in different currencies do not compare,
    so the ranking is per currency; it is done in the database, so only those rows come back."""
    if session.get_bind().dialect.name == "postgresql":
        # One balance per customer is summed in memory: with the default 4 MB the sums of 50,000
        # customers spill to disk and take twice as long. For this transaction only.
        session.execute(text("SET LOCAL work_mem = '64MB'"))
    owed = owed_invoices(scope) + ([Invoice.currency == currency] if currency else [])
    balances = (
        select(Invoice.customer_id, Invoice.currency, func.sum(Invoice.amount_outstanding).label("owed"))
        .where(*owed)
        .group_by(Invoice.customer_id, Invoice.currency)
        .subquery()
    )
    ranked = select(
        balances.c.customer_id,
        balances.c.currency,
        func.row_number()
        .over(partition_by=balances.c.currency, order_by=(balances.c.owed.desc(), balances.c.customer_id))
        .label("rank"),
        func.count().over().label("balances"),
    ).subquery()
    rows = session.execute(
        select(ranked.c.customer_id, ranked.c.currency, ranked.c.balances)
        .where(ranked.c["rank"] <= top)
        .order_by(ranked.c.currency, ranked.c["rank"])
    ).all()
    return [(customer_id, currency) for customer_id, currency, _ in rows], rows[0].balances if rows else 0


@dataclass(frozen=True)
class Balance:
    """A customer's position in one currency."""

    currency: str
    outstanding: Decimal
    overdue: Decimal
    credit: Decimal
    open_invoices: int


def customer_balances(session: Session, scope: Scope, customer_id: str, today: date) -> list[Balance]:
    """What the customer owes, how much of it is overdue, and its credit, per currency."""
    overdue = case((Invoice.due_date < today, Invoice.amount_outstanding), else_=Decimal(0))
    zero = Decimal(0)
    balances = {
        currency: Balance(currency, Decimal(outstanding), Decimal(late), zero, count)
        for currency, outstanding, late, count in session.execute(
            select(Invoice.currency, func.sum(Invoice.amount_outstanding), func.sum(overdue), func.count())
            .where(*owed_invoices(scope), Invoice.customer_id == customer_id)
            .group_by(Invoice.currency)
        )
    }
    for currency, credit in credit_balances(session, scope, customer_id).items():
        owed = balances.get(currency, Balance(currency, zero, zero, zero, 0))
        balances[currency] = Balance(currency, owed.outstanding, owed.overdue, credit, owed.open_invoices)
    return [balances[currency] for currency in sorted(balances)]


def credit_balances(session: Session, scope: Scope, customer_id: str) -> dict[str, Decimal]:
    """What the customer paid beyond its invoices and arsync kept as its credit, per currency."""
    rows = session.execute(
        select(Invoice.currency, func.sum(CashApplication.credited_amount))
        .join(Invoice, Invoice.id == CashApplication.invoice_id)
        .where(
            in_scope(CashApplication, scope),
            CashApplication.status == "APPROVED",
            CashApplication.credited_amount.is_not(None),
            Invoice.customer_id == customer_id,
        )
        .group_by(Invoice.currency)
    ).all()
    return {currency: amount for currency, amount in rows if amount}


# Over time ----------------------------------------------------------------------------------

DSO_DAYS = 90
BILLED = (InvoiceStatus.FINALIZED, InvoiceStatus.PAID)  # invoiced for real: not drafts, not voided


@dataclass(frozen=True)
class Month:
    """One calendar month of one currency: what was invoiced, what was collected, and what was
    still owed when it ended (or today, for the month under way)."""

    first_day: date
    invoiced: Decimal
    collected: Decimal
    outstanding: Decimal


def _month_start(day: date, back: int = 0) -> date:
    months = day.year * 12 + day.month - 1 - back
    return date(months // 12, months % 12 + 1, 1)


def trend(session: Session, scope: Scope, currency: str, today: date, *, months: int = 12) -> list[Month]:
    """The last ``months`` months, oldest first.

    What was owed at each month's end is worked back from what is owed today: add back what was
    collected after it, take off what was invoiced after it. It is read from the ledger's invoices
    and payments, so an amount the ERP settled without a payment in arsync (a credit note, say)
    shows as owed until today.
    """
    since = _month_start(today, months - 1)
    billed = [in_scope(Invoice, scope), Invoice.currency == currency, Invoice.status.in_(BILLED)]
    invoiced = dict(session.execute(
        select(Invoice.issue_date, func.sum(Invoice.amount_total))
        .where(*billed, Invoice.issue_date >= since, Invoice.issue_date <= today).group_by(Invoice.issue_date)
    ).all())  # fmt: skip
    collected = dict(session.execute(
        select(Payment.payment_date, func.sum(Payment.amount)).join(Invoice, Invoice.id == Payment.invoice_id)
        .where(*billed, in_scope(Payment, scope), Payment.payment_date >= since, Payment.payment_date <= today)
        .group_by(Payment.payment_date)
    ).all())  # fmt: skip
    owed_now = session.scalar(select(func.coalesce(func.sum(Invoice.amount_outstanding), 0))
                              .where(*owed_invoices(scope), Invoice.currency == currency))  # fmt: skip
    starts = [_month_start(today, back) for back in range(months - 1, -1, -1)]

    def in_month(sums: dict[date, Decimal], first_day: date) -> Decimal:
        end = _month_start(first_day, -1)
        return sum((Decimal(v) for day, v in sums.items() if first_day <= day < end), Decimal(0))

    figures = [(first_day, in_month(invoiced, first_day), in_month(collected, first_day)) for first_day in starts]
    result: list[Month] = []
    owed = Decimal(owed_now or 0)
    for first_day, billed_in, collected_in in reversed(figures):
        result.append(Month(first_day, billed_in, collected_in, owed))
        owed = owed - billed_in + collected_in  # what was owed when the month before ended
    return list(reversed(result))


def days_sales_outstanding(session: Session, scope: Scope, currency: str, today: date) -> Decimal | None:
    """DSO over the last 90 days: what is owed now ÷ what was invoiced in those days × 90. None
    when nothing was invoiced in them."""
    window = [in_scope(Invoice, scope), Invoice.currency == currency, Invoice.status.in_(BILLED),
              Invoice.issue_date > today - timedelta(days=DSO_DAYS), Invoice.issue_date <= today]  # fmt: skip
    invoiced = session.scalar(select(func.sum(Invoice.amount_total)).where(*window))
    if not invoiced:
        return None
    owed = session.scalar(
        select(func.sum(Invoice.amount_outstanding)).where(*owed_invoices(scope), Invoice.currency == currency)
    )
    return (Decimal(owed or 0) / Decimal(invoiced) * DSO_DAYS).quantize(Decimal("0.1"))


def top_debtors(session: Session, scope: Scope, currency: str, *, top: int = 10) -> list[tuple[str, str, Decimal]]:
    """The ``top`` customers owing most in ``currency``: (customer id, name, owed), largest first."""
    owed = func.sum(Invoice.amount_outstanding).label("owed")
    largest = (
        select(Invoice.customer_id, owed)
        .where(*owed_invoices(scope), Invoice.currency == currency)
        .group_by(Invoice.customer_id)
        .order_by(owed.desc(), Invoice.customer_id)
        .limit(top)
        .subquery()
    )
    rows = session.execute(
        select(largest.c.customer_id, Customer.name, largest.c.owed)
        .join(Customer, Customer.id == largest.c.customer_id)
        .order_by(largest.c.owed.desc(), largest.c.customer_id)
    ).all()
    return [(customer_id, name, Decimal(amount)) for customer_id, name, amount in rows]


def currencies_owed(session: Session, scope: Scope) -> list[str]:
    """Currencies anything is owed in, by code."""
    return list(session.scalars(select(Invoice.currency).where(*owed_invoices(scope)).group_by(Invoice.currency)
                                .order_by(Invoice.currency)))  # fmt: skip


# A customer's statement ---------------------------------------------------------------------

STATEMENT_PAYMENT_DAYS = 90


@dataclass(frozen=True)
class StatementLine:
    invoice_id: str
    invoice_number: str
    issue_date: date
    due_date: date
    total: Decimal
    outstanding: Decimal
    days_overdue: int
    bucket: str

    @property
    def paid(self) -> Decimal:
        return self.total - self.outstanding


@dataclass(frozen=True)
class Statement:
    """An open-item statement: every invoice still owed in one currency, aged, with the payments
    of the last 90 days and the credit kept for the customer."""

    currency: str
    as_of: date
    lines: list[StatementLine]
    buckets: dict[str, Decimal]
    payments: list[tuple[date, str, Decimal]]  # (paid on, invoice number, amount), newest first
    credit: Decimal

    @property
    def total(self) -> Decimal:
        return sum(self.buckets.values(), Decimal(0))


def statement(session: Session, scope: Scope, customer_id: str, currency: str, today: date) -> Statement:
    rows = session.execute(
        select(Invoice.id, Invoice.invoice_number, Invoice.issue_date, Invoice.due_date, Invoice.amount_total,
               Invoice.amount_outstanding)
        .where(*owed_invoices(scope), Invoice.customer_id == customer_id, Invoice.currency == currency)
        .order_by(Invoice.due_date, Invoice.invoice_number)
    ).all()  # fmt: skip
    lines = [
        StatementLine(r.id, r.invoice_number, r.issue_date, r.due_date, Decimal(r.amount_total),
                      Decimal(r.amount_outstanding), max((today - r.due_date).days, 0), bucket_on(r.due_date, today))
        for r in rows
    ]  # fmt: skip
    buckets = dict.fromkeys(BUCKETS, Decimal(0))
    for line in lines:
        buckets[line.bucket] += line.outstanding
    payments = session.execute(
        select(Payment.payment_date, Invoice.invoice_number, Payment.amount)
        .join(Invoice, Invoice.id == Payment.invoice_id)
        .where(in_scope(Payment, scope), Invoice.customer_id == customer_id, Invoice.currency == currency,
               Payment.payment_date > today - timedelta(days=STATEMENT_PAYMENT_DAYS))
        .order_by(Payment.payment_date.desc(), Payment.id.desc())
    ).all()  # fmt: skip
    credit = credit_balances(session, scope, customer_id).get(currency, Decimal(0))
    return Statement(currency, today, lines, buckets,
                     [(paid_on, number, Decimal(amount)) for paid_on, number, amount in payments], credit)  # fmt: skip
