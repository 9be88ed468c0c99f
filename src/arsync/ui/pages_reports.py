"""Receivables at a glance: the aging report, by currency and by customer."""

from __future__ import annotations

from datetime import date, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from arsync.ledger import reports
from arsync.ui.base import UiDep
from arsync.ui.lists import ledger_page

router = APIRouter(include_in_schema=False)


@router.get("/reports/aging", response_class=HTMLResponse)
def aging(request: Request, ui: UiDep) -> Response:
    today = date.today()
    with ui.db() as session:
        report = reports.aging(session, ui.scope, today)
    # Each currency's bar is split in proportion to its buckets (amounts in different currencies
    # are never compared, so each bar is its own 100 %).
    shares = {
        row.currency: {
            name: float(amount / row.total * 100) if row.total else 0.0 for name, amount in row.buckets.items()
        }
        for row in report.by_currency
    }
    return ledger_page(
        ui, request, "aging.html", report=report, buckets=reports.BUCKETS, labels=reports.BUCKET_LABELS,
        shares=shares, bucket_ranges=_bucket_ranges(today),
    )  # fmt: skip


def _shares(row: reports.AgingRow) -> dict[str, float]:
    """Percent of the row's total in each bucket: only the chart's proportions, never money."""
    return {name: float(amount / row.total * 100) if row.total else 0.0 for name, amount in row.buckets.items()}


def _bucket_ranges(today: date) -> dict[str, dict[str, str]]:
    """Each bucket as the invoice list's due-date filters, so a figure links to its invoices."""

    def day(days: int) -> str:
        return (today - timedelta(days=days)).isoformat()

    return {
        "current": {"due_from": today.isoformat()},
        "1-30": {"due_from": day(30), "due_to": day(1)},
        "31-60": {"due_from": day(60), "due_to": day(31)},
        "61-90": {"due_from": day(90), "due_to": day(61)},
        "90+": {"due_to": day(91)},
    }
