"""How invoice and payment lists are filtered, sorted, counted and exported.

One query object per list serves the API, the pages and the CSV export alike, so a page, its
totals and its export always show the same rows. Every sort ends on the id, so pages never
repeat or skip a row between two reads.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal, TypeVar, get_args

from sqlalchemy import Boolean, ColumnElement, Select, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from arsync.ledger.models import PAYMENT_SOURCES, Customer, Invoice, InvoiceStatus, Payment
from arsync.money import format_amount
from arsync.tenancy.scope import Scope, in_scope

Direction = Literal["asc", "desc"]
InvoiceSort = Literal["id", "number", "issued", "due", "total", "outstanding", "customer", "status"]
PaymentSource = Literal["erp", "cash_application", "nomod"]
PaymentSort = Literal["id", "date", "amount", "invoice", "customer", "source"]
EXPORT_BATCH = 2000
AnySelect = Select[*tuple[Any, ...]]
Statement = TypeVar("Statement", bound=AnySelect)


def _contains(column: Any, text: str) -> ColumnElement[bool]:
    return func.lower(column).contains(text.lower(), autoescape=True)


def _ordered(column: Any, id_column: Any, direction: Direction, backwards: bool) -> list[Any]:
    """ORDER BY the sort column, then the id the same way, so equal values keep one order.
    ``backwards`` gives exactly the reverse order (NULLs too: each database puts them at one end)."""
    if (direction == "desc") != backwards:
        return [column.desc(), id_column.desc()]
    return [column.asc(), id_column.asc()]


class _OneOf(ColumnElement[bool]):
    """``column`` is one of the values ``subquery`` selects.

    SQLAlchemy's ``in_`` renders ``IN (SELECT …)``, which PostgreSQL checks row by row as a
    filter. Written ``= ANY(ARRAY(SELECT …))``, the subquery runs once and its values are looked
    up in the column's index, and in an OR with another indexed condition both indexes are read
    (a bitmap OR) instead of the whole table.
    """

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [  # noqa: RUF012 (SQLAlchemy reads it from the class)
        ("column", InternalTraversal.dp_clauseelement),
        ("subquery", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: Any, subquery: AnySelect) -> None:
        self.column = column
        self.subquery = subquery.scalar_subquery()


@compiles(_OneOf)
def _one_of_in(element: _OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column.in_(element.subquery), **kw)


@compiles(_OneOf, "postgresql")
def _one_of_any_array(element: _OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} = ANY(ARRAY{compiler.process(element.subquery, **kw)})"


def _customer_named(scope: Scope, text: str) -> ColumnElement[bool]:
    """The invoice's customer's name contains ``text``: the few matching customers are found
    first (from the name's trigram index, migration 0018), then their invoices by customer id."""
    named = select(Customer.id).where(in_scope(Customer, scope), _contains(Customer.name, text))
    return _OneOf(Invoice.customer_id, named)


@dataclass(frozen=True)
class Totals:
    count: int
    by_currency: list[tuple[str, Decimal, Decimal]]  # currency, total, outstanding (or paid)


# Invoices -------------------------------------------------------------------------------

INVOICE_CSV_HEADER = (
    "invoice_id",
    "invoice_number",
    "customer_id",
    "customer_name",
    "issue_date",
    "due_date",
    "currency",
    "amount_total",
    "amount_outstanding",
    "status",
    "erp_status",
    "erp_invoice_id",
)
INVOICE_SORTS: dict[str, Any] = {
    "id": Invoice.id,
    "number": Invoice.invoice_number,
    "issued": Invoice.issue_date,
    "due": Invoice.due_date,
    "total": Invoice.amount_total,
    "outstanding": Invoice.amount_outstanding,
    "customer": Customer.name,
    "status": Invoice.status,
}
assert tuple(INVOICE_SORTS) == get_args(InvoiceSort)


@dataclass(frozen=True)
class InvoiceQuery:
    """Which invoices, in which order. ``search`` matches the invoice number or the customer's name."""

    search: str | None = None
    status: str | None = None
    customer_id: str | None = None
    currency: str | None = None
    issued_from: date | None = None
    issued_to: date | None = None
    due_from: date | None = None
    due_to: date | None = None
    overdue_on: date | None = None  # only invoices still owed and past due on this day
    sort: InvoiceSort = "id"
    direction: Direction = "asc"

    def where(self, scope: Scope) -> list[ColumnElement[bool]]:
        conditions = [in_scope(Invoice, scope)]
        if self.search:
            conditions.append(or_(_contains(Invoice.invoice_number, self.search), _customer_named(scope, self.search)))
        if self.status:
            conditions.append(Invoice.status == self.status)
        if self.customer_id:
            conditions.append(Invoice.customer_id == self.customer_id)
        if self.currency:
            conditions.append(Invoice.currency == self.currency)
        if self.issued_from:
            conditions.append(Invoice.issue_date >= self.issued_from)
        if self.issued_to:
            conditions.append(Invoice.issue_date <= self.issued_to)
        if self.due_from:
            conditions.append(Invoice.due_date >= self.due_from)
        if self.due_to:
            conditions.append(Invoice.due_date <= self.due_to)
        if self.overdue_on:
            conditions += [
                Invoice.status == InvoiceStatus.FINALIZED,
                Invoice.due_date < self.overdue_on,
                Invoice.amount_outstanding > Decimal(0),
            ]
        return conditions

    @property
    def needs_customer(self) -> bool:
        return self.sort == "customer"

    def _from(self, statement: Statement) -> Statement:
        if self.needs_customer:
            statement = statement.join(Customer, Customer.id == Invoice.customer_id)
        return statement

    def _order(self, backwards: bool = False) -> list[Any]:
        return _ordered(INVOICE_SORTS.get(self.sort, Invoice.id), Invoice.id, self.direction, backwards)

    def rows(self, scope: Scope, *, backwards: bool = False) -> AnySelect:
        """The invoices, sorted (or in exactly the reverse order); the caller adds paging."""
        return self._from(select(Invoice)).where(*self.where(scope)).order_by(*self._order(backwards))

    def totals(self, session: Session, scope: Scope) -> Totals:
        by_currency = [
            (currency, total, outstanding, count)
            for currency, total, outstanding, count in session.execute(
                self._from(
                    select(
                        Invoice.currency,
                        func.sum(Invoice.amount_total),
                        func.sum(Invoice.amount_outstanding),
                        func.count(),
                    )
                )
                .where(*self.where(scope))
                .group_by(Invoice.currency)
                .order_by(Invoice.currency)
            )
        ]
        return Totals(sum(row[3] for row in by_currency), [(c, t, o) for c, t, o, _ in by_currency])

    def csv(self, session: Session, scope: Scope) -> Iterator[bytes]:
        """The invoices selected, as CSV, in this order, batch by batch (memory stays flat)."""
        statement = (
            select(
                Invoice.id,
                Invoice.invoice_number,
                Invoice.customer_id,
                Customer.name,
                Invoice.issue_date,
                Invoice.due_date,
                Invoice.currency,
                Invoice.amount_total,
                Invoice.amount_outstanding,
                Invoice.status,
                Invoice.erp_status,
                Invoice.erp_invoice_id,
            )
            .join(Customer, Customer.id == Invoice.customer_id)
            .where(*self.where(scope))
            .order_by(*self._order())
        )

        def line(row: Any) -> tuple[Any, ...]:
            return (
                row[0],
                row[1],
                row[2],
                row[3],
                row[4].isoformat(),
                row[5].isoformat(),
                row[6],
                format_amount(row[7], row[6]),
                format_amount(row[8], row[6]),
                row[9],
                row[10] or "",
                row[11] or "",
            )

        return _csv(session, statement, INVOICE_CSV_HEADER, line)


# Payments -------------------------------------------------------------------------------

PAYMENT_CSV_HEADER = (
    "payment_id",
    "payment_date",
    "invoice_id",
    "invoice_number",
    "customer_id",
    "customer_name",
    "currency",
    "amount",
    "source",
    "erp_payment_id",
)
PAYMENT_SORTS: dict[str, Any] = {
    "id": Payment.id,
    "date": Payment.payment_date,
    "amount": Payment.amount,
    "invoice": Invoice.invoice_number,
    "customer": Customer.name,
    "source": Payment.source,
}
assert tuple(PAYMENT_SORTS) == get_args(PaymentSort)
assert get_args(PaymentSource) == PAYMENT_SOURCES


@dataclass(frozen=True)
class PaymentQuery:
    """Which payments, in which order. ``search`` matches the invoice number, the customer's name
    or the ERP's payment id."""

    search: str | None = None
    invoice_id: str | None = None
    customer_id: str | None = None
    currency: str | None = None
    source: str | None = None
    paid_from: date | None = None
    paid_to: date | None = None
    sort: PaymentSort = "id"
    direction: Direction = "asc"

    def where(self, scope: Scope) -> list[ColumnElement[bool]]:
        conditions = [in_scope(Payment, scope)]
        if self.search:
            conditions.append(
                or_(
                    _contains(Invoice.invoice_number, self.search),
                    _customer_named(scope, self.search),
                    _contains(Payment.erp_payment_id, self.search),
                )
            )
        if self.invoice_id:
            conditions.append(Payment.invoice_id == self.invoice_id)
        if self.customer_id:
            conditions.append(Invoice.customer_id == self.customer_id)
        if self.currency:
            conditions.append(Invoice.currency == self.currency)
        if self.source:
            conditions.append(Payment.source == self.source)
        if self.paid_from:
            conditions.append(Payment.payment_date >= self.paid_from)
        if self.paid_to:
            conditions.append(Payment.payment_date <= self.paid_to)
        return conditions

    def _from(self, statement: Statement) -> Statement:
        return statement.join(Invoice, Invoice.id == Payment.invoice_id).join(
            Customer, Customer.id == Invoice.customer_id
        )

    def _order(self, backwards: bool = False) -> list[Any]:
        return _ordered(PAYMENT_SORTS.get(self.sort, Payment.id), Payment.id, self.direction, backwards)

    def rows(self, scope: Scope, *, backwards: bool = False) -> AnySelect:
        return self._from(select(Payment)).where(*self.where(scope)).order_by(*self._order(backwards))

    def totals(self, session: Session, scope: Scope) -> Totals:
        rows = list(
            session.execute(
                self._from(select(Invoice.currency, func.sum(Payment.amount), func.count()))
                .where(*self.where(scope))
                .group_by(Invoice.currency)
                .order_by(Invoice.currency)
            )
        )
        return Totals(sum(row[2] for row in rows), [(c, amount, amount) for c, amount, _ in rows])

    def csv(self, session: Session, scope: Scope) -> Iterator[bytes]:
        statement = (
            self._from(
                select(
                    Payment.id,
                    Payment.payment_date,
                    Invoice.id,
                    Invoice.invoice_number,
                    Customer.id,
                    Customer.name,
                    Invoice.currency,
                    Payment.amount,
                    Payment.source,
                    Payment.erp_payment_id,
                )
            )
            .where(*self.where(scope))
            .order_by(*self._order())
        )

        def line(row: Any) -> tuple[Any, ...]:
            return (
                row[0],
                row[1].isoformat(),
                row[2],
                row[3],
                row[4],
                row[5],
                row[6],
                format_amount(row[7], row[6]),
                row[8],
                row[9] or "",
            )

        return _csv(session, statement, PAYMENT_CSV_HEADER, line)


def _csv(session: Session, statement: AnySelect, header: tuple[str, ...], line: Any) -> Iterator[bytes]:
    """CSV bytes of ``statement``'s rows, streamed from the database ``EXPORT_BATCH`` rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180 line ends

    def flush() -> bytes:
        data = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return data

    writer.writerow(header)
    yield flush()
    result = session.connection().execution_options(yield_per=EXPORT_BATCH).execute(statement)
    for partition in result.partitions():
        writer.writerows(_safe(line(row)) for row in partition)
        yield flush()


def _safe(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """Text a spreadsheet would run as a formula (OWASP "CSV injection") gets a leading quote."""
    return tuple(
        f"'{v}" if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(v) else v
        for v in values
    )


def _number(value: str) -> bool:
    try:
        Decimal(value)
    except ArithmeticError:
        return False
    return True
