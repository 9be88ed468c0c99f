"""Shared pieces of the platform API's request and response schemas."""

from __future__ import annotations

import math
import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator
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


def _iso_date(value: Any) -> Any:
    """Only ``YYYY-MM-DD``: Pydantic alone would also read 0 (or "0") as 1970-01-01."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        raise ValueError("must be a date written YYYY-MM-DD")
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("must be a date written YYYY-MM-DD, not a number")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_JSON_DEPTH = 16


def unstorable(value: Any, path: str = "", depth: int = 0) -> str | None:
    """Why ``value`` (decoded JSON) cannot be stored as it is on both databases, or None.

    PostgreSQL refuses NUL characters in text and JSON, neither database nor UTF-8 holds a lone
    surrogate, SQLite's JSON functions stop at 64-bit integers, and JSON has no NaN or infinity.
    """
    where = f"{path}: " if path else ""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{where}contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{where}contains a lone surrogate, which is not valid Unicode"
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            return f"{where}integer {value} does not fit in 64 bits"
    elif isinstance(value, float):
        if not math.isfinite(value):
            return f"{where}{value} is not a JSON number"
    elif isinstance(value, dict | list):
        if depth >= MAX_JSON_DEPTH:
            return f"{where}nested more than {MAX_JSON_DEPTH} levels deep"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            problem = unstorable(key, path, depth + 1) if isinstance(key, str) else None
            problem = problem or unstorable(item, f"{path}.{key}" if path else str(key), depth + 1)
            if problem:
                return problem
    return None


class RequestModel(ApiModel):
    """A request body: besides each field's own rules, nothing a column cannot hold gets in."""

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        problem = unstorable(value)
        if problem:
            raise ValueError(problem)
        return value


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
