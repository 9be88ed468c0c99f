"""The AR ledger: customers (debtors), invoices with their lines, and payments.

Records synced from an ERP carry the ERP's id, unique per (tenant, environment), and
``erp_hash``: a digest of the record as the ERP last sent it, so a re-sync can skip rows that
did not change without comparing every column. ``erp_deleted_at``: when a reconciliation run
found the record no longer in the ERP (a ghost); it stays for audit but is not owed.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from arsync import money
from arsync.db import Base, ExactDecimal, UTCDateTime, new_id, utcnow

JSONType = JSON().with_variant(JSONB(), "postgresql")
Money = ExactDecimal(scale=money.AMOUNT_PLACES, precision=18)
Quantity = ExactDecimal(scale=money.QUANTITY_PLACES, precision=18)


class InvoiceStatus(StrEnum):
    """An invoice's status in the ledger (the ERP's own status is kept apart, as ``erp_status``)."""

    DRAFT = "DRAFT"
    FINALIZED = "FINALIZED"
    PAID = "PAID"
    VOIDED = "VOIDED"


PAYMENT_SOURCES = ("erp", "cash_application", "nomod")


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        Index("uq_customers_erp_id", "environment_id", "erp_debtor_id", unique=True),  # the tenant follows (0021)
        Index("ix_customers_scope_name", "tenant_id", "environment_id", "name"),
        Index("ix_customers_scope_id", "environment_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("cust"))
    tenant_id: Mapped[str] = mapped_column(String(40))  # checked per request or run (migration 0019)
    environment_id: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(500))
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    phone: Mapped[str | None] = mapped_column(String(50), default=None)
    external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="active")
    erp_debtor_id: Mapped[str | None] = mapped_column(String(200), default=None)
    erp_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    erp_hash: Mapped[bytes | None] = mapped_column(LargeBinary(16), default=None)  # raw digest (0024)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Which statuses allow which action: the service enforces these, and the pages offer an action
# only where the invoice's predicate below says the service would accept it.
FINALIZABLE = (InvoiceStatus.DRAFT,)
EDITABLE = (InvoiceStatus.DRAFT,)
DISPATCHABLE = (InvoiceStatus.FINALIZED, InvoiceStatus.PAID)
VOIDABLE = (InvoiceStatus.DRAFT, InvoiceStatus.FINALIZED)
CASH_APPLICABLE = (InvoiceStatus.FINALIZED,)
# Money that does not fit may still be applied in part, the rest kept as the customer's credit.
CREDITABLE = (InvoiceStatus.FINALIZED, InvoiceStatus.PAID)
SENT_TO_NOMOD = (InvoiceStatus.FINALIZED, InvoiceStatus.PAID)


# Owed: finalized with something still to pay, and still in the ERP. reports.owed_invoices says the same
# in SQLAlchemy, so that PostgreSQL can prove the report's WHERE implies the owed index's.
OWED = "status = 'FINALIZED' AND amount_outstanding > 0 AND erp_deleted_at IS NULL"


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        Index("uq_invoices_erp_id", "environment_id", "erp_invoice_id", unique=True),  # the tenant follows (0021)
        Index("ix_invoices_customer", "customer_id"),
        Index("ix_invoices_scope_id", "environment_id", "id"),
        # The list's sorts, without the id that breaks ties so that equal values share one entry
        # (migration 0020), and the aging report (migration 0016).
        Index("ix_invoices_scope_issued", "tenant_id", "environment_id", "issue_date"),
        Index("ix_invoices_scope_due", "tenant_id", "environment_id", "due_date"),
        Index("ix_invoices_scope_outstanding", "environment_id", "amount_outstanding"),  # heap rows are read anyway
        Index(  # what the aging report reads, only what is owed on PostgreSQL (migrations 0022, 0023)
            "ix_invoices_scope_owed",
            "tenant_id",
            "environment_id",
            "currency",
            "due_date",
            postgresql_include=["amount_outstanding", "customer_id"],
            postgresql_where=text(OWED),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("inv"))
    tenant_id: Mapped[str] = mapped_column(String(40))  # checked per request or run (migration 0019)
    environment_id: Mapped[str] = mapped_column(String(40))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"))
    invoice_number: Mapped[str] = mapped_column(String(200))
    issue_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    amount_total: Mapped[Decimal] = mapped_column(Money)
    amount_outstanding: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(20), default=InvoiceStatus.DRAFT)
    erp_status: Mapped[str | None] = mapped_column(String(40), default=None)
    erp_invoice_id: Mapped[str | None] = mapped_column(String(200), default=None)
    erp_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    erp_hash: Mapped[bytes | None] = mapped_column(LargeBinary(16), default=None)  # raw digest (0024)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def erp_owned(self) -> bool:
        """Imported from the ERP, which owns it: it changes there, and reaches arsync by sync."""
        return self.erp_hash is not None

    @property
    def sent_to_erp(self) -> bool:
        return self.dispatched_at is not None or self.erp_invoice_id is not None

    @property
    def can_finalize(self) -> bool:
        return not self.erp_owned and self.status in FINALIZABLE

    @property
    def can_dispatch(self) -> bool:
        return not self.erp_owned and self.status in DISPATCHABLE and self.dispatched_at is None

    @property
    def can_void(self) -> bool:
        untouched = self.amount_outstanding == self.amount_total
        return not self.erp_owned and self.status in VOIDABLE and untouched and not self.sent_to_erp

    @property
    def can_apply_cash(self) -> bool:
        return self.status in CASH_APPLICABLE

    @property
    def allowed_actions(self) -> list[str]:
        """What the ledger would accept now, in the API's words (``allowedActions``)."""
        offered = {"finalize": self.can_finalize, "dispatch": self.can_dispatch, "void": self.can_void,
                   "applyCash": self.can_apply_cash}  # fmt: skip
        return [action for action, allowed in offered.items() if allowed]


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"

    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    description: Mapped[str] = mapped_column(Text)
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    unit_price: Mapped[Decimal] = mapped_column(Quantity)
    amount: Mapped[Decimal] = mapped_column(Money)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        Index("uq_payments_erp_id", "environment_id", "erp_payment_id", unique=True),  # the tenant follows (0021)
        Index("ix_payments_invoice", "invoice_id"),
        Index("ix_payments_scope_id", "environment_id", "id"),
        Index("ix_payments_scope_date", "tenant_id", "environment_id", "payment_date"),  # as invoices' sorts
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("pay"))
    tenant_id: Mapped[str] = mapped_column(String(40))  # checked per request or run (migration 0019)
    environment_id: Mapped[str] = mapped_column(String(40))
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id", ondelete="RESTRICT"))
    amount: Mapped[Decimal] = mapped_column(Money)
    payment_date: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(30), default="erp")
    erp_payment_id: Mapped[str | None] = mapped_column(String(200), default=None)
    erp_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    erp_hash: Mapped[bytes | None] = mapped_column(LargeBinary(16), default=None)  # raw digest (0024)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


CASH_APPLICATION_STATUSES = ("PENDING", "APPROVED", "REJECTED")


class CashApplication(Base):
    """Money received and matched to an invoice; approving it records the payment.

    ``currency`` is the money's own (NULL: the invoice's, as for every manual entry).
    ``review_reason`` says why it waits for a person rather than being approved on arrival.
    ``credited_amount`` is what an approval kept as the customer's credit instead of applying.
    """

    __tablename__ = "cash_applications"
    __table_args__ = (Index("ix_cash_applications_invoice", "invoice_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("cap"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id", ondelete="RESTRICT"))
    amount: Mapped[Decimal] = mapped_column(Money)
    application_date: Mapped[date] = mapped_column(Date)
    reference: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="PENDING")
    source: Mapped[str] = mapped_column(String(30), default="cash_application")  # the payment's, once approved
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    review_reason: Mapped[str | None] = mapped_column(Text, default=None)
    credited_amount: Mapped[Decimal | None] = mapped_column(Money, default=None)
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class ParkedPayment(Base):
    """An ERP payment whose invoice was not in the ledger when it was synced.

    It waits here with what the ERP sent, and is applied when a later sync brings its
    invoice; an incremental sync would otherwise never fetch it again.
    """

    __tablename__ = "parked_payments"
    __table_args__ = (
        Index("uq_parked_payments_erp_id", "tenant_id", "environment_id", "erp_payment_id", unique=True),
        Index("ix_parked_payments_invoice", "tenant_id", "environment_id", "erp_invoice_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("park"))
    tenant_id: Mapped[str] = mapped_column(String(40))  # checked per request or run (migration 0019)
    environment_id: Mapped[str] = mapped_column(String(40))
    erp_payment_id: Mapped[str] = mapped_column(String(200))
    erp_invoice_id: Mapped[str] = mapped_column(String(200))
    record: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the contract Payment, as JSON
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
