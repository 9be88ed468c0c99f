"""Shared pieces of the platform API's request and response schemas."""

from __future__ import annotations

import math
import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel

from arsync import money, outbound
from arsync.errors import InvalidInput

T = TypeVar("T")

# Money in requests: a JSON number or a decimal string, read exactly, within what the columns
# hold. Every amount a person enters is positive: a credit or refund would be an operation of
# its own, never a negative amount. Each type is written once, with its JSON Schema, so the
# OpenAPI states exactly what the server accepts: a string must match the pattern (no sign,
# exponent, spaces or leading zeros), a number the bounds and the number of decimals.


def _decimal_pattern(integer_digits: int, places: int, *, zero: bool) -> str:
    whole = rf"[1-9][0-9]{{0,{integer_digits - 1}}}(?:\.[0-9]{{1,{places}}})?"
    if zero:
        return rf"^(?:0|{whole[: whole.index('(?:')]})(?:\.[0-9]{{1,{places}}})?$"
    fractions = "|".join(rf"0{{{k}}}[1-9][0-9]{{0,{places - 1 - k}}}" for k in range(places))
    return rf"^(?:{whole}|0\.(?:{fractions}))$"


class _ExactDecimal:
    """The validator, field rules and JSON Schema of one decimal type (see above)."""

    def __init__(self, integer_digits: int, places: int, *, zero: bool, description: str) -> None:
        limit = 10**integer_digits
        pattern = _decimal_pattern(integer_digits, places, zero=zero)
        number: dict[str, Any] = {"type": "number", "exclusiveMaximum": limit, "multipleOf": 10**-places}
        number |= {"minimum": 0} if zero else {"exclusiveMinimum": 0}
        refusal = f"must be a plain decimal below {limit:,} with at most {places} decimals" + (
            "" if zero else ", above 0"
        )

        def check(value: Any) -> Any:
            if isinstance(value, str) and not re.fullmatch(pattern, value):
                raise ValueError(refusal)
            return value

        self.validator = BeforeValidator(check)
        self.field = Field(
            decimal_places=places, ge=0 if zero else None, gt=None if zero else 0, lt=limit, allow_inf_nan=False
        )
        self.schema = WithJsonSchema({"anyOf": [number, {"type": "string", "pattern": pattern}],
                                      "description": description})  # fmt: skip


_amount = _ExactDecimal(14, money.AMOUNT_PLACES, zero=False, description="A positive exact decimal, number or string")
_quantity = _ExactDecimal(12, money.QUANTITY_PLACES, zero=False, description="A positive quantity")
_price = _ExactDecimal(12, money.QUANTITY_PLACES, zero=True, description="A unit price, 0 or more")
PositiveMoney = Annotated[Decimal, _amount.validator, _amount.field, _amount.schema]
PositiveQuantity = Annotated[Decimal, _quantity.validator, _quantity.field, _quantity.schema]
UnitPrice = Annotated[Decimal, _price.validator, _price.field, _price.schema]
_LABEL = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
# What outbound.validate_base_url accepts, as the OpenAPI states it: http(s), a host name or a
# dotted-quad address (an IPv6 host needs a name), an optional port and path, and nothing after.
BASE_URL_PATTERN = (
    rf"^https?://(?:{_LABEL}(?:\.{_LABEL})*|{_OCTET}(?:\.{_OCTET}){{3}})"
    r"(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
    r"(?:/[A-Za-z0-9._~%!$&'()*+,;=:@-]+)*$"
)


def _base_url(value: str) -> str:
    try:
        value = outbound.validate_base_url(value)  # the specific reason first
    except InvalidInput as exc:
        raise ValueError(exc.message) from None
    if not re.fullmatch(BASE_URL_PATTERN, value):
        raise ValueError("must be http(s)://, a host name or a dotted-quad address, then an optional port and path")
    return value


BaseUrl = Annotated[
    str,
    Field(min_length=1, max_length=2000),
    AfterValidator(_base_url),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 2000, "pattern": BASE_URL_PATTERN}),
]
# One email rule for the API, the UI and the Nomod sync: one "@", no spaces, a dot inside the
# domain. The provider that sends mail has the final word.
EMAIL_PATTERN = re.compile(r"^[^@\s]+@(?!\.)[^@\s]+\.[^@\s]+(?<!\.)$")


def is_email(value: str) -> bool:
    return EMAIL_PATTERN.match(value) is not None


Email = Annotated[str, WithJsonSchema({"type": "string", "format": "email", "maxLength": 320}),
                  Field(max_length=320)]  # fmt: skip

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
