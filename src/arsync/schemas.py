"""Shared pieces of the platform API's request and response schemas."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

from arsync import money

T = TypeVar("T")

# Money in requests: a JSON number or a decimal string, read exactly, within what the columns
# hold. Every amount a person enters is positive: a credit or refund would be an operation of
# its own, never a negative amount. The bounds are stated once, so the OpenAPI shows them.
PositiveMoney = Annotated[
    Decimal,
    Field(decimal_places=money.AMOUNT_PLACES, gt=0, lt=money.AMOUNT_LIMIT, allow_inf_nan=False,
          description="A positive exact decimal, JSON number or string"),
]  # fmt: skip
PositiveQuantity = Annotated[
    Decimal,
    Field(decimal_places=money.QUANTITY_PLACES, gt=0, lt=money.QUANTITY_LIMIT, allow_inf_nan=False),
]
UnitPrice = Annotated[
    Decimal,
    Field(decimal_places=money.QUANTITY_PLACES, ge=0, lt=money.QUANTITY_LIMIT, allow_inf_nan=False),
]
# Money in responses: an exact decimal string, never a float.
MoneyOut = Annotated[Decimal, PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json")]


class ApiModel(BaseModel):
    """camelCase on the wire; unknown request fields are refused so typos do not pass silently."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Page(ApiModel, Generic[T]):
    items: list[T]
    page: int
    limit: int
    has_more: bool


PAGE_MIN, PAGE_MAX = 1, 1_000_000
LIMIT_MIN, LIMIT_MAX, DEFAULT_LIMIT = 1, 500, 50


class PageParams(ApiModel):
    page: int = Field(default=1, ge=PAGE_MIN, le=PAGE_MAX)
    limit: int = Field(default=DEFAULT_LIMIT, ge=LIMIT_MIN, le=LIMIT_MAX)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit
