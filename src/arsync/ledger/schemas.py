"""Request and response bodies for customers, invoices, payments and cash applications."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field, WithJsonSchema, field_validator, model_validator

from arsync import money
from arsync.schemas import (
    ApiModel,
    Email,
    IsoDate,
    MoneyOut,
    PositiveMoney,
    PositiveQuantity,
    RequestModel,
    UnitPrice,
    is_email,
)


def check_email(value: str | None) -> str | None:
    """The email as stored (trimmed), if it has the shape ``schemas.is_email`` accepts."""
    if value is None:
        return None
    value = value.strip()
    if not is_email(value):
        raise ValueError("Invalid email format")
    return value


MAX_METADATA_BYTES = 16 * 1024
Metadata = Annotated[dict[str, Any], Field(description=f"Free-form JSON, at most {MAX_METADATA_BYTES} bytes")]


def check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Metadata is returned with every customer, so its size is bounded."""
    if value is not None and len(orjson.dumps(value)) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
    return value


class CustomerCreate(RequestModel):
    name: str = Field(min_length=1, max_length=500)
    email: Email | None = None
    phone: str | None = Field(default=None, max_length=50)
    external_id: str | None = Field(default=None, max_length=200)
    metadata: Metadata = Field(default_factory=dict)

    @field_validator("email")
    @classmethod
    def _email_shape(cls, value: str | None) -> str | None:
        return check_email(value)

    _metadata_size = field_validator("metadata")(check_metadata)


class CustomerUpdate(RequestModel):
    # Left out: unchanged. It cannot be null: a customer always has a name.
    name: Annotated[str | None, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 500})] = Field(
        default=None, min_length=1, max_length=500
    )
    email: Email | None = None
    phone: str | None = Field(default=None, max_length=50)
    external_id: str | None = Field(default=None, max_length=200)
    metadata: Metadata | None = None

    @field_validator("email")
    @classmethod
    def _email_shape(cls, value: str | None) -> str | None:
        return check_email(value)

    _metadata_size = field_validator("metadata")(check_metadata)


ERP_DELETED = "When a reconciliation found the record no longer in the ERP; kept for audit, not owed"


class CustomerRead(ApiModel):
    id: str
    name: str
    email: str | None
    phone: str | None
    external_id: str | None
    metadata: dict[str, Any]
    status: str
    erp_debtor_id: str | None
    erp_deleted_at: datetime | None = Field(description=ERP_DELETED)
    created_at: datetime


# CustomerRead's JSON names, in field order.
CUSTOMER_WIRE_KEYS = tuple(field.alias or name for name, field in CustomerRead.model_fields.items())


class LineIn(RequestModel):
    description: str = Field(min_length=1, max_length=4000)
    quantity: PositiveQuantity
    unit_price: UnitPrice

    @model_validator(mode="after")
    def _amount_fits(self) -> LineIn:
        if self.quantity * self.unit_price >= money.AMOUNT_LIMIT:
            raise ValueError(f"quantity × unitPrice must be below {money.AMOUNT_LIMIT:,}")
        return self


def _total_fits(lines: list[LineIn] | None) -> None:
    if lines is None:
        return
    total = sum((line.quantity * line.unit_price for line in lines), Decimal(0))
    if total >= money.AMOUNT_LIMIT:
        raise ValueError(f"the lines must add up to less than {money.AMOUNT_LIMIT:,}")


class LineRead(ApiModel):
    description: str
    quantity: MoneyOut
    unit_price: MoneyOut
    amount: str = Field(description="Exact decimal string with the currency's decimals")


class InvoiceCreate(RequestModel):
    customer_id: str
    invoice_number: str = Field(min_length=1, max_length=200)
    issue_date: IsoDate
    due_date: IsoDate
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    lines: list[LineIn] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _total(self) -> InvoiceCreate:
        _total_fits(self.lines)
        return self


class InvoiceUpdate(RequestModel):
    invoice_number: str | None = Field(default=None, min_length=1, max_length=200)
    issue_date: IsoDate | None = None
    due_date: IsoDate | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    lines: list[LineIn] | None = Field(default=None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _total(self) -> InvoiceUpdate:
        _total_fits(self.lines)
        return self


CashApplicationStatus = Literal["PENDING", "APPROVED", "REJECTED"]


class CashApplicationCreate(RequestModel):
    invoice_id: str
    amount: PositiveMoney
    date: IsoDate
    reference: str = Field(min_length=1, max_length=200)


class CashApplicationRead(ApiModel):
    id: str
    invoice_id: str
    currency: str = Field(description="The money's currency: the invoice's, unless a provider paid in another")
    amount: str = Field(description="Exact decimal string with the currency's decimals")
    credited_amount: str | None = Field(
        description="What the approval kept as the customer's credit instead of applying to the invoice"
    )
    review_reason: str | None = Field(description="Why it waits for a person instead of being approved on arrival")
    date: date
    reference: str
    status: CashApplicationStatus
    payment_id: str | None
    created_at: datetime
    approved_at: datetime | None


class IntegrationsRead(BaseModel):
    """The documented shape of a customer's provider links, with snake_case keys."""

    customer_id: str
    integrations: dict[str, dict[str, Any]]


class BalanceRead(ApiModel):
    currency: str
    outstanding: str = Field(description="Owed on finalized invoices")
    overdue: str = Field(description="The part of outstanding past its due date")
    credit: str = Field(description="Paid beyond its invoices and kept as the customer's credit")
    open_invoices: int


class CustomerBalanceRead(ApiModel):
    customer_id: str
    as_of: date
    balances: list[BalanceRead]


AgingBucket = Literal["current", "1-30", "31-60", "61-90", "90+"]


class AgingRowRead(ApiModel):
    currency: str
    customer_id: str | None = None
    customer_name: str | None = None
    buckets: dict[AgingBucket, str] = Field(description="Outstanding by days past due")
    total: str
    invoices: int


class AgingRead(ApiModel):
    as_of: date
    by_currency: list[AgingRowRead]
    by_customer: list[AgingRowRead] = Field(description="Per currency (or in customersIn), the customers that owe most")
    open_balances: int = Field(description="How many (customer, currency) balances are owed (in customersIn, if set)")
    customers_in: str | None = Field(description="The one currency byCustomer covers; null: every currency")


class CustomerMerge(RequestModel):
    debtor_customer_id: str = Field(
        max_length=40, description="The customer synced from the ERP (it has an erpDebtorId) to merge into"
    )
