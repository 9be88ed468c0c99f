"""The Nudge REST contract, schemaVersion "1": every request, response and error body.

This module is the single definition of the wire format. The REST connector parses
middleware answers with it, the mock ERP validates requests with it, and the Developer
Sandbox and the exported JSON Schema are derived from it.

Money is exact: JSON numbers are parsed straight into ``Decimal`` (never through a binary
float) and written back as plain JSON numbers by :func:`dumps`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from arsync import money

SCHEMA_VERSION: Literal["1"] = "1"
ERROR_CODES = (
    "UNAUTHORIZED",
    "FORBIDDEN",
    "BAD_REQUEST",
    "INVALID_JSON",
    "VALIDATION_FAILED",
    "INTERNAL_ERROR",
)
HTTP_STATUS_FOR_CODE = {
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "BAD_REQUEST": 400,
    "INVALID_JSON": 400,
    "VALIDATION_FAILED": 422,
    "INTERNAL_ERROR": 500,
}
UNAUTHORIZED_MESSAGE = "Missing or invalid Authorization header. Use: Authorization: Bearer <token>"

SchemaVersion = Literal["1"]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=4000)]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
StrictDate = Annotated[date, Field(strict=True)]
# Bounds match the ledger's columns: 14 integer digits for money, 12 for quantities and prices.
Amount = Annotated[
    Decimal,
    Field(decimal_places=money.MAX_EXPONENT, gt=-(10**14), lt=10**14, allow_inf_nan=False),
]
PositiveAmount = Annotated[
    Decimal,
    Field(decimal_places=money.MAX_EXPONENT, gt=0, lt=10**14, allow_inf_nan=False),
]
Quantity = Annotated[Decimal, Field(decimal_places=6, gt=-(10**12), lt=10**12, allow_inf_nan=False)]
PageNumber = Annotated[StrictInt, Field(ge=1)]
PageLimit = Annotated[StrictInt, Field(ge=1, le=10_000)]


class ContractModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class Versioned(ContractModel):
    schema_version: SchemaVersion = SCHEMA_VERSION


def format_datetime(value: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, e.g. ``2026-01-01T00:00:00.000Z``."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _fits(value: Decimal, allowed: int) -> bool:
    """Whether ``value`` has at most ``allowed`` decimals. As written is enough when it fits
    (trailing zeros only add places): ``Decimal.normalize`` is most of this check's cost."""
    written = value.as_tuple().exponent
    return (isinstance(written, int) and -written <= allowed) or money.decimal_places(value) <= allowed


def _check_currency_places(currency: str, **amounts: Decimal) -> None:
    allowed = money.exponent(currency)
    for name, value in amounts.items():
        if not _fits(value, allowed):
            raise ValueError(f"{name} {value} has more than {allowed} decimals for {currency}")


# Requests -------------------------------------------------------------------------------


class HealthRequest(Versioned):
    pass


class ListRequest(Versioned):
    page: PageNumber = 1
    limit: PageLimit = 100
    modified_since: AwareDatetime | None = None

    @field_serializer("modified_since")
    def _ms_utc(self, value: datetime | None) -> str | None:
        return format_datetime(value) if value else None


class Line(ContractModel):
    description: Text
    quantity: Quantity
    unit_price: Quantity
    amount: Amount


class InvoicePushRequest(Versioned):
    invoice_number: NonEmpty
    erp_debtor_id: NonEmpty
    issue_date: StrictDate
    due_date: StrictDate
    currency: CurrencyCode
    status: NonEmpty = "AUTHORISED"
    lines: list[Line] = Field(min_length=1, max_length=1000)


class PaymentPushRequest(Versioned):
    erp_invoice_id: NonEmpty
    amount: PositiveAmount
    payment_date: StrictDate
    bank_account_code: NonEmpty | None = None


# Records and responses -----------------------------------------------------------------


class Debtor(ContractModel):
    erp_debtor_id: NonEmpty
    name: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    email: Annotated[str, StringConstraints(max_length=320)] | None = None


class Invoice(ContractModel):
    erp_invoice_id: NonEmpty
    invoice_number: NonEmpty
    erp_debtor_id: NonEmpty
    debtor_name: Annotated[str, StringConstraints(max_length=500)] | None = None
    issue_date: StrictDate
    due_date: StrictDate
    currency: CurrencyCode
    amount_total: Amount
    amount_outstanding: Amount
    status: NonEmpty
    lines: list[Line] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _amounts_fit_currency(self) -> Invoice:
        allowed = money.exponent(self.currency)
        amounts = (self.amount_total, self.amount_outstanding, *(line.amount for line in self.lines))
        if all(_fits(amount, allowed) for amount in amounts):
            return self  # the usual case, without naming every amount for a message
        _check_currency_places(
            self.currency,
            amountTotal=self.amount_total,
            amountOutstanding=self.amount_outstanding,
            **{f"lines[{i}].amount": line.amount for i, line in enumerate(self.lines)},
        )
        return self


class Payment(ContractModel):
    erp_payment_id: NonEmpty
    erp_invoice_id: NonEmpty
    amount: Amount
    payment_date: StrictDate


class HealthResponse(Versioned):
    schema_version: SchemaVersion
    ok: StrictBool
    service: str | None = None


class DebtorPage(Versioned):
    schema_version: SchemaVersion
    debtors: list[Debtor]
    has_more: StrictBool


class InvoicePage(Versioned):
    schema_version: SchemaVersion
    invoices: list[Invoice]
    has_more: StrictBool


class PaymentPage(Versioned):
    schema_version: SchemaVersion
    payments: list[Payment]
    has_more: StrictBool


class InvoicePushResponse(Versioned):
    schema_version: SchemaVersion
    erp_invoice_id: NonEmpty


class PaymentPushResponse(Versioned):
    schema_version: SchemaVersion
    erp_payment_id: NonEmpty


class FieldError(ContractModel):
    field: str
    message: str


class ErrorDetails(ContractModel):
    field_errors: list[FieldError] = Field(default_factory=list)


class ErrorBody(Versioned):
    """The standard error body every endpoint returns on failure."""

    schema_version: SchemaVersion
    error: str
    code: Literal[
        "UNAUTHORIZED", "FORBIDDEN", "BAD_REQUEST", "INVALID_JSON", "VALIDATION_FAILED",
        "INTERNAL_ERROR",
    ]  # fmt: skip
    details: ErrorDetails | None = None


# Endpoints ------------------------------------------------------------------------------

ENDPOINTS: dict[str, tuple[type[ContractModel], type[ContractModel]]] = {
    "/health": (HealthRequest, HealthResponse),
    "/debtors/list": (ListRequest, DebtorPage),
    "/invoices/list": (ListRequest, InvoicePage),
    "/payments/list": (ListRequest, PaymentPage),
    "/invoices/push": (InvoicePushRequest, InvoicePushResponse),
    "/payments/push": (PaymentPushRequest, PaymentPushResponse),
}


ResponseT = TypeVar("ResponseT", bound=ContractModel)
BreachKind = Literal["json", "version", "schema"]


class ResponseBreach(ValueError):
    """Why a 200 answer's body is not what the contract promises.

    ``kind``: ``json`` (not JSON at all), ``version`` (schemaVersion missing or not "1") or
    ``schema`` (a field breaks the contract; ``path`` and ``actual`` name the first one).
    """

    def __init__(self, kind: BreachKind, message: str, *, path: str = "$", actual: Any = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.path, self.actual = kind, message, path, actual


def describe_validation_error(exc: ValidationError, limit: int = 3) -> str:
    """The first few contract breaches as ``path: problem`` pairs."""
    parts = []
    for error in exc.errors()[:limit]:
        path = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{path}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def parse_response(raw: bytes, model: type[ResponseT]) -> ResponseT:
    """A 200 answer read exactly as the platform reads it: the REST connector and the Developer
    Sandbox both call this, so the two can never disagree about what passes."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ResponseBreach("json", "response body is not valid JSON") from None
        version = parsed.get("schemaVersion") if isinstance(parsed, dict) else None
        if version != SCHEMA_VERSION:
            raise ResponseBreach(
                "version", f'unsupported schemaVersion {version!r}; expected "1"', path="$.schemaVersion",
                actual=version,
            ) from None  # fmt: skip
        first = exc.errors()[0]
        raise ResponseBreach(
            "schema", f"response breaks the contract: {describe_validation_error(exc)}",
            path="$." + ".".join(str(p) for p in first["loc"]), actual=first.get("input"),
        ) from None  # fmt: skip


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # A Fragment is written verbatim: the exact decimal becomes a JSON number.
        return orjson.Fragment(format(value, "f"))
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(payload: ContractModel | dict[str, Any] | list[Any]) -> bytes:
    """JSON bytes with camelCase keys, decimals as exact numbers and dates as ISO strings."""
    if isinstance(payload, ContractModel):
        payload = payload.model_dump(by_alias=True, exclude_none=True)
    return orjson.dumps(payload, default=_default)


def json_schema() -> dict[str, Any]:
    """One JSON Schema document with a definition for every request, response and error."""
    defs: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for path, (request, response) in ENDPOINTS.items():
        for model in (request, response):
            schema = model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
            defs.update(schema.pop("$defs", {}))
            defs[model.__name__] = schema
        paths[path] = {
            "method": "POST",
            "request": {"$ref": f"#/$defs/{request.__name__}"},
            "response": {"$ref": f"#/$defs/{response.__name__}"},
            "error": {"$ref": "#/$defs/ErrorBody"},
        }
    error_schema = ErrorBody.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs.update(error_schema.pop("$defs", {}))
    defs["ErrorBody"] = error_schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Nudge REST contract",
        "description": "Requests, responses and the error body of schemaVersion 1.",
        "x-schemaVersion": SCHEMA_VERSION,
        "x-endpoints": paths,
        "$defs": dict(sorted(defs.items())),
    }
