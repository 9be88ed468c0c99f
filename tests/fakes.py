"""Fakes of arsync's ports, each subclassing the Protocol it implements so mypy holds it to it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from arsync.erp import contract
from arsync.erp.port import ErpConnector, Page, PushAttempt
from arsync.jobs.queue import JobQueue


class FakeErpConnector(ErpConnector):
    """An in-memory ERP: serves fixed lists in pages; ``pages_override`` replaces what a page returns."""

    def __init__(
        self,
        debtors: list[contract.Debtor] | None = None,
        invoices: list[contract.Invoice] | None = None,
        payments: list[contract.Payment] | None = None,
    ) -> None:
        self.data: dict[str, list[Any]] = {
            "debtors": debtors or [],
            "invoices": invoices or [],
            "payments": payments or [],
        }
        self.calls: list[tuple[str, int, datetime | None]] = []
        self.pages_override: dict[tuple[str, int], tuple[list[object], bool]] = {}
        self.closed = False

    def _page(self, entity: str, page: int, limit: int, modified_since: datetime | None) -> Page[object]:
        self.calls.append((entity, page, modified_since))
        if (entity, page) in self.pages_override:
            items, has_more = self.pages_override[(entity, page)]
            return Page(page, items, has_more)
        records: list[object] = list(self.data[entity])
        start = (page - 1) * limit
        return Page(page, records[start : start + limit], start + limit < len(records))

    def health(self) -> contract.HealthResponse:
        return contract.HealthResponse(schema_version="1", ok=True, service="fake")

    def list_debtors(self, page: int, limit: int, modified_since: datetime | None) -> Page[contract.Debtor]:
        return self._page("debtors", page, limit, modified_since)  # type: ignore[return-value]

    def list_invoices(self, page: int, limit: int, modified_since: datetime | None) -> Page[contract.Invoice]:
        return self._page("invoices", page, limit, modified_since)  # type: ignore[return-value]

    def list_payments(self, page: int, limit: int, modified_since: datetime | None) -> Page[contract.Payment]:
        return self._page("payments", page, limit, modified_since)  # type: ignore[return-value]

    def push_invoice(self, request: contract.InvoicePushRequest, attempt: PushAttempt) -> str:
        raise NotImplementedError

    def push_payment(self, request: contract.PaymentPushRequest, attempt: PushAttempt) -> str:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True


class RecordingQueue(JobQueue):
    """A JobQueue fake: keeps what was queued, runs nothing."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, dict[str, Any], datetime | None]] = []
        self.locks: list[str | None] = []

    def enqueue(
        self,
        session: Session,
        task: str,
        args: dict[str, Any],
        *,
        lock: str | None = None,
        run_at: datetime | None = None,
    ) -> None:
        self.jobs.append((task, args, run_at))
        self.locks.append(lock)
