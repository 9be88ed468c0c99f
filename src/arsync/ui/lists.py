"""What the list pages share: reading their filters from the address, sortable column headers,
page counts, and streaming the filtered rows as CSV."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from math import ceil
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request
from fastapi.responses import Response, StreamingResponse

from arsync.ledger.listing import Direction
from arsync.schemas import PageParams
from arsync.ui.base import Ui, render
from arsync.ui.pages_sync import page_context

PAGE_SIZE = 25


@dataclass
class Filters:
    """The list's query string, read leniently: a bad value is dropped and named in ``problems``."""

    values: dict[str, str]
    problems: list[str]

    @classmethod
    def read(cls, request: Request, names: tuple[str, ...]) -> Filters:
        values = {name: request.query_params.get(name, "").strip()[:200] for name in names}
        return cls({name: value for name, value in values.items() if value}, [])

    def text(self, name: str) -> str | None:
        return self.values.get(name) or None

    def day(self, name: str, label: str) -> date | None:
        value = self.values.get(name)
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.problems.append(f"{label} {value!r} is not a date like 2026-12-31; it was left out")
            self.values.pop(name)
            return None

    def one_of(self, name: str, allowed: tuple[str, ...]) -> str | None:
        """An optional filter that must be one of ``allowed``; anything else is left out, and said."""
        value = self.values.get(name)
        if value and value not in allowed:
            self.problems.append(f"{name} {value!r} is not one of {', '.join(allowed)}; it was left out")
            self.values.pop(name)
            return None
        return value or None

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.values.get(name, default)
        if value not in allowed:
            self.problems.append(f"{value!r} is not one of {', '.join(allowed)}; showing {default}")
            self.values.pop(name, None)
            return default
        return value

    def currency(self) -> str | None:
        value = (self.values.get("currency") or "").upper()
        if value and not (len(value) == 3 and value.isalpha()):
            self.problems.append(f"currency {value!r} is not a three-letter ISO 4217 code; it was left out")
            self.values.pop("currency")
            return None
        return value or None

    def url(self, path: str, **changes: Any) -> str:
        """This list's address with ``changes`` (None removes a value)."""
        values = dict(self.values)
        for name, value in changes.items():
            if value is None:
                values.pop(name, None)
            else:
                values[name] = str(value)
        return f"{path}?{urlencode(values)}" if values else path


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    numeric: bool = False
    narrow_hidden: bool = False


def sort_headers(filters: Filters, path: str, columns: list[Column], sort: str, direction: Direction) -> list[Any]:
    """Each column's header: its link (a second click reverses the order) and its aria-sort."""
    headers = []
    for column in columns:
        current = column.key == sort
        next_direction = ("asc" if direction == "desc" else "desc") if current else "desc"
        headers.append(
            {
                "column": column,
                "url": filters.url(path, sort=column.key, order=next_direction, page=None),
                "aria": ("descending" if direction == "desc" else "ascending") if current else "none",
                "arrow": ("↓" if direction == "desc" else "↑") if current else "",
            }
        )
    return headers


def page_count(rows: int) -> int:
    return max(1, ceil(rows / PAGE_SIZE))


def csv_download(ui: Ui, name: str, rows: Any) -> StreamingResponse:
    """Stream ``rows(session)``'s CSV bytes inside one read session (one snapshot from first row to last)."""

    def stream() -> Iterator[bytes]:
        with ui.db() as session:
            yield from rows(session)

    filename = f"{name}-{date.today().isoformat()}.csv"
    return StreamingResponse(
        stream(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


PageQuery = Annotated[int, Query(ge=1, le=1_000_000)]


def paging(page: int) -> PageParams:
    return PageParams(page=page, limit=PAGE_SIZE)


def ledger_page(ui: Ui, request: Request, template: str, **context: Any) -> Response:
    """A page of the ledger: with the toolbar (environment, sync state) above it, and the watch
    that refreshes it when a payment arrives or a sync starts elsewhere."""
    return render(ui, request, template, **page_context(ui), **context)
