"""The ledger's read shapes and the statements that read them.

``CUSTOMER_READ_SOURCE`` says where each field of CustomerRead, the customer's one read shape,
is stored. Every customer read derives from it: the ORM read and the list's plain rows
(loading 100 ORM objects costs more than the query), and the two PostgreSQL statements of the
API's fast path (``web/pg_reads.py``), which look the API key up and have PostgreSQL render the
JSON in one round trip. Those are built here with SQLAlchemy Core and compiled once to
asyncpg's ``$n`` parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, Integer, Select, Text, bindparam, cast, func, literal_column, select, true
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import CTE

from arsync.ledger.models import Customer
from arsync.ledger.schemas import CUSTOMER_WIRE_KEYS, CustomerRead
from arsync.tenancy.models import ApiKey

CUSTOMER_READ_SOURCE: dict[str, InstrumentedAttribute[Any]] = {
    "id": Customer.id,
    "name": Customer.name,
    "email": Customer.email,
    "phone": Customer.phone,
    "external_id": Customer.external_id,
    "metadata": Customer.metadata_,
    "status": Customer.status,
    "erp_debtor_id": Customer.erp_debtor_id,
    "erp_deleted_at": Customer.erp_deleted_at,
    "created_at": Customer.created_at,
}
assert list(CUSTOMER_READ_SOURCE) == list(CustomerRead.model_fields), "one column per field, in order"
CUSTOMER_READ_COLUMNS = tuple(CUSTOMER_READ_SOURCE.values())


# The dialect the fast path's statements are compiled for ($1, $2, … parameters).
_ASYNCPG = asyncpg_dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves its dialect classes unannotated


@dataclass(frozen=True)
class PgStatement:
    """SQL text for asyncpg and the names of its ``$1``, ``$2``, … in order."""

    sql: str
    params: tuple[str, ...]

    def args(self, **values: Any) -> list[Any]:
        return [values[name] for name in self.params]


def _compiled(statement: Select[Any]) -> PgStatement:
    compiled = statement.compile(dialect=_ASYNCPG)
    return PgStatement(compiled.string, tuple(compiled.positiontup or ()))


def _sql(text: str) -> ColumnElement[Any]:
    """A constant written into the statement, not sent as a parameter (so plans can use it)."""
    return literal_column(text)


def _wire_value(field: str, column: InstrumentedAttribute[Any]) -> ColumnElement[Any]:
    """The field's JSON value as the ORM path writes it."""
    if field == "metadata":  # never null: neither SQL NULL nor JSON null
        return func.coalesce(func.nullif(column, _sql("'null'::jsonb")), _sql("'{}'::jsonb"))
    if field == "created_at":  # as Pydantic writes a UTC time: no fraction when it is zero
        utc = func.timezone(_sql("'UTC'"), column)
        text = func.to_char(utc, _sql("""'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""))
        return func.replace(text, _sql("'.000000Z'"), _sql("'Z'"))
    return column.expression


def _customer_json_columns() -> list[ColumnElement[Any]]:
    return [
        _wire_value(field, column).label(wire)
        for (field, column), wire in zip(CUSTOMER_READ_SOURCE.items(), CUSTOMER_WIRE_KEYS, strict=True)
    ]


def _api_key() -> CTE:
    """The API key's scope and revocation, looked up by hash (the statement's first three columns)."""
    return (
        select(ApiKey.tenant_id, ApiKey.environment_id, ApiKey.revoked_at)
        .where(ApiKey.key_hash == bindparam("key_hash"))
        .cte("key")
    )


@functools.cache
def customer_by_id() -> PgStatement:
    """The key's scope, and the customer's JSON if it is in that scope (else NULL)."""
    key = _api_key()
    found = (
        select(*_customer_json_columns())
        .where(
            Customer.id == bindparam("customer_id"),
            Customer.tenant_id == key.c.tenant_id,
            Customer.environment_id == key.c.environment_id,
        )
        .correlate(key)
        .subquery("found")
    )
    body = select(cast(func.row_to_json(found.table_valued()), Text)).scalar_subquery()
    return _compiled(select(key.c.tenant_id, key.c.environment_id, key.c.revoked_at, body))


# The optional list filters, as ledger.service.list_customers applies them.
CUSTOMER_FILTERS: dict[str, Callable[[BindParameter[Any]], ColumnElement[bool]]] = {
    "name": lambda value: func.lower(Customer.name).like(value, escape="/"),
    "email": lambda value: func.lower(Customer.email) == value,
    "erp_debtor_id": lambda value: Customer.erp_debtor_id == value,
}


@functools.cache
def customer_page(filters: tuple[str, ...]) -> PgStatement:
    """The key's scope, a page of customers in id order (their JSON joined by commas), and whether
    more follow: one row past the page is read to know that. One statement per combination of
    filters, so each gets its own prepared plan."""
    key = _api_key()
    limit: BindParameter[int] = bindparam("limit", type_=Integer)
    found = (
        select(*_customer_json_columns())
        .where(
            Customer.tenant_id == key.c.tenant_id,
            Customer.environment_id == key.c.environment_id,
            *(CUSTOMER_FILTERS[name](bindparam(name)) for name in filters),
        )
        .correlate(key)
        .order_by(Customer.id)
        .limit(limit + _sql("1"))
        .offset(bindparam("offset"))
        .subquery("found")
    )
    numbered = select(
        found.c.id,
        cast(func.row_to_json(found.table_valued()), Text).label("item"),
        func.row_number().over(order_by=found.c.id).label("position"),
    ).subquery("numbered")
    items = func.string_agg(numbered.c.item, aggregate_order_by(_sql("','"), numbered.c.id))
    page = select(
        func.coalesce(items.filter(numbered.c.position <= limit), _sql("''")).label("items"),
        (func.count() > limit).label("has_more"),
    ).lateral("page")
    statement = select(
        key.c.tenant_id, key.c.environment_id, key.c.revoked_at, page.c["items"], page.c.has_more
    ).select_from(key.join(page, true()))
    return _compiled(statement)
