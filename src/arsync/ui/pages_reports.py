"""Receivables at a glance: the aging report, by currency and by customer, and each currency over time."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from arsync.ledger import reports
from arsync.ledger import service as ledger
from arsync.money import display
from arsync.ui.base import UiDep
from arsync.ui.charts import Bar, Chart, bar_chart
from arsync.ui.lists import ledger_page

router = APIRouter(include_in_schema=False)
AGING_TOP = 20


@router.get("/reports/aging", response_class=HTMLResponse)
def aging(request: Request, ui: UiDep, currency: Annotated[str | None, Query(max_length=3)] = None) -> Response:
    """Every currency by bucket, and the customers owing most in one currency: the one asked for,
    or the one with the most open invoices."""
    today = date.today()
    with ui.db() as session:
        by_currency = reports.aging_by_currency(session, ui.scope, today)
        chosen = (currency or "").upper()
        if chosen not in {row.currency for row in by_currency}:
            chosen = max(by_currency, key=lambda row: (row.invoices, row.currency)).currency if by_currency else ""
        by_customer, open_balances = (
            reports.aging_by_customer(session, ui.scope, today, top=AGING_TOP, currency=chosen) if chosen else ([], 0)
        )
    report = reports.Aging(today, by_currency, by_customer, open_balances, chosen or None)
    return ledger_page(
        ui, request, "aging.html", report=report, buckets=reports.BUCKETS, labels=reports.BUCKET_LABELS,
        shares={row.currency: _shares(row) for row in by_currency}, bucket_ranges=_bucket_ranges(today),
        top=AGING_TOP,
    )  # fmt: skip


def _shares(row: reports.AgingRow) -> dict[str, float]:
    """Percent of the row's total in each bucket: only the chart's proportions, never money.
    Amounts in different currencies are never compared, so each currency's bar is its own 100 %."""
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


@router.get("/reports/trend", response_class=HTMLResponse)
def trend(request: Request, ui: UiDep, currency: Annotated[str | None, Query(max_length=3)] = None) -> Response:
    """One currency over the last twelve months: what was owed at each month's end, invoiced and
    collected, DSO, and the customers owing most."""
    today = date.today()
    with ui.db() as session:
        owed_in = reports.currencies_owed(session, ui.scope)
        chosen = (currency or "").upper() if (currency or "").upper() in owed_in else (owed_in[0] if owed_in else None)
        months = reports.trend(session, ui.scope, chosen, today) if chosen else []
        dso = reports.days_sales_outstanding(session, ui.scope, chosen, today) if chosen else None
        debtors = reports.top_debtors(session, ui.scope, chosen) if chosen else []
    owed_chart = months_chart(months, chosen) if chosen else None
    debtors_chart = bar_chart(
        [Bar(label=str(rank), value=amount, title=f"{rank}. {name}: {display(amount, chosen or '')}", css="bar-owed",
             href=f"/customers/{customer_id}") for rank, (customer_id, name, amount) in enumerate(debtors, 1)],
        lambda value: short_amount(value), labels_every=1,
    )  # fmt: skip
    return ledger_page(
        ui, request, "trend.html", currencies=owed_in, currency=chosen, months=months, dso=dso, debtors=debtors,
        owed_chart=owed_chart, debtors_chart=debtors_chart, dso_days=reports.DSO_DAYS, today=today,
    )  # fmt: skip


def months_chart(months: list[reports.Month], currency: str) -> Chart:
    bars = [
        Bar(label=m.first_day.strftime("%b %y"), value=m.outstanding, css="bar-owed",
            title=f"{m.first_day:%B %Y}: owed {display(m.outstanding, currency)} at the end; invoiced "
                  f"{display(m.invoiced, currency)}, collected {display(m.collected, currency)}")
        for m in months
    ]  # fmt: skip
    return bar_chart(bars, short_amount, labels_every=2)


def short_amount(value: float) -> str:
    """An axis label: 1.2M, 350k, 90."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:,.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:,.0f}"


@router.get("/customers/{customer_id}/statement", response_class=HTMLResponse)
def customer_statement(
    request: Request, ui: UiDep, customer_id: str, currency: Annotated[str | None, Query(max_length=3)] = None
) -> Response:
    """What the customer owes in one currency, invoice by invoice and aged, to print or send."""
    today = date.today()
    with ui.db() as session:
        customer = ledger.get_customer(session, ui.scope, customer_id)
        balances = reports.customer_balances(session, ui.scope, customer.id, today)
        held = [b.currency for b in balances]
        chosen = (currency or "").upper()
        if chosen not in held:
            chosen = max(balances, key=lambda b: (b.open_invoices, b.currency)).currency if balances else ""
        report = reports.statement(session, ui.scope, customer.id, chosen, today) if chosen else None
    return ledger_page(
        ui, request, "statement.html", customer=customer, statement=report, currencies=held, buckets=reports.BUCKETS,
        labels=reports.BUCKET_LABELS, payment_days=reports.STATEMENT_PAYMENT_DAYS,
    )  # fmt: skip
