"""The (tenant, environment) a request or job acts in, and loading records within it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Row, Select
from sqlalchemy.orm import Session

from arsync.errors import NotFound
from arsync.schemas import PageParams

T = TypeVar("T")


@dataclass(frozen=True)
class Scope:
    tenant_id: str
    environment_id: str


def not_found(label: str, record_id: str) -> NotFound:
    return NotFound(f"{label} {record_id} not found")


def get_scoped(session: Session, model: type[T], record_id: str, scope: Scope, label: str) -> T:
    """The record with this id in this scope; 404 for any other scope, so ids never leak."""
    record: Any = session.get(model, record_id)
    if record is None or (record.tenant_id, record.environment_id) != (scope.tenant_id, scope.environment_id):
        raise not_found(label, record_id)
    result: T = record
    return result


def in_scope(model: Any, scope: Scope) -> ColumnElement[bool]:
    """The WHERE clause that keeps a query inside one (tenant, environment)."""
    condition: ColumnElement[bool] = (model.tenant_id == scope.tenant_id) & (
        model.environment_id == scope.environment_id
    )
    return condition


def paginate(session: Session, statement: Select[T], params: PageParams) -> tuple[list[T], bool]:
    """One page of ``statement``'s objects and whether more follow (fetches one extra row)."""
    return _one_page(list(session.scalars(_page_of(statement, params))), params)


def paginate_rows(session: Session, statement: Select[Any], params: PageParams) -> tuple[list[Row[Any]], bool]:
    """As ``paginate``, for a statement of columns: plain rows, no ORM objects."""
    return _one_page(list(session.execute(_page_of(statement, params))), params)


def paginate_counted(
    session: Session, forward: Select[T], backward: Select[T], params: PageParams, total: int
) -> tuple[list[T], bool]:
    """As ``paginate``, when the number of rows (``total``) is known and ``backward`` is the same
    statement in exactly the reverse order. A page in the second half is read from the end, so
    the database skips at most half the rows (OFFSET reads every row it skips): the last of
    20,000 pages costs what the first does."""
    after = total - params.offset  # this page's rows and all that follow it
    if params.offset <= after:
        return paginate(session, forward, params)
    size = min(params.limit, after)
    rows = list(session.scalars(backward.offset(after - size).limit(size)))
    rows.reverse()
    return rows, params.offset + params.limit < total


def _page_of(statement: Select[Any], params: PageParams) -> Select[Any]:
    return statement.offset(params.offset).limit(params.limit + 1)


def _one_page(rows: list[Any], params: PageParams) -> tuple[list[Any], bool]:
    return rows[: params.limit], len(rows) > params.limit
