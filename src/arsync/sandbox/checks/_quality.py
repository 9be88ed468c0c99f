"""Checks of what the answers say and how fast they come: plausible figures, latency, 5xx."""

from __future__ import annotations

import statistics
from decimal import Decimal
from typing import Any

from arsync.sandbox.checks._core import (
    ID_FIELD,
    CheckFn,
    Context,
    fail,
    full_walk,
    page_holding,
)
from arsync.sandbox.client import Exchange


def sanity_check(entity: str) -> CheckFn:
    def run(ctx: Context) -> str | None:
        records = full_walk(ctx, entity).records
        invoices = {r["erpInvoiceId"]: r for r in full_walk(ctx, "invoices").records} if entity == "payments" else {}
        for record in records:
            problem = _implausible(entity, record, invoices)
            if problem:
                key = record[ID_FIELD[entity]]
                raise fail(f"{key}: {problem}", expected="plausible figures", actual=problem,
                           path=f"$.{entity}[?({ID_FIELD[entity]}=={key})]",
                           exchange=page_holding(ctx, entity, key))  # fmt: skip
        return None

    return run


def _implausible(entity: str, record: dict[str, Any], invoices: dict[str, dict[str, Any]]) -> str | None:
    """What looks wrong in a record that the contract's types allow."""
    if entity == "payments":
        invoice = invoices.get(record["erpInvoiceId"])
        if invoice and record["paymentDate"] < invoice["issueDate"]:
            return f"paid on {record['paymentDate']}, before the invoice's issue date {invoice['issueDate']}"
        return None
    total, outstanding = Decimal(str(record["amountTotal"])), Decimal(str(record["amountOutstanding"]))
    if total < 0:
        return f"amountTotal {total} is negative"
    if outstanding > total:
        return f"amountOutstanding {outstanding} is more than amountTotal {total}"
    lines = sum((Decimal(str(line["amount"])) for line in record["lines"]), Decimal(0))
    if record["lines"] and lines != total and not record.get("totalTax"):
        return f"the lines add up to {lines}, not to amountTotal {total}"
    return None


SLOW_PAGE_SECONDS = 2.0


def check_latency(ctx: Context) -> str | None:
    slow = [e for e in ctx.client.exchanges if e.elapsed_ms > SLOW_PAGE_SECONDS * 1000 and not e.server_error]
    if slow:
        worst = max(slow, key=lambda e: e.elapsed_ms)
        raise fail(
            f"{len(slow)} answer(s) took over {SLOW_PAGE_SECONDS:g} s; slowest {worst.path} in "
            f"{worst.elapsed_ms / 1000:.1f} s (a million-record sync at this pace takes hours)",
            expected=f"under {SLOW_PAGE_SECONDS:g} s an answer",
            actual=f"{worst.elapsed_ms / 1000:.1f} s",
            exchange=worst,
        )
    return None


def latency_by_endpoint(exchanges: list[Exchange]) -> dict[str, dict[str, float]]:
    """p50 and max milliseconds per endpoint, for the report."""
    by_path: dict[str, list[float]] = {}
    for exchange in exchanges:
        by_path.setdefault(exchange.path, []).append(exchange.elapsed_ms)
    return {
        path: {"p50Ms": round(statistics.median(times), 1), "maxMs": round(max(times), 1), "requests": len(times)}
        for path, times in sorted(by_path.items())
    }


def check_no_5xx(ctx: Context) -> str | None:
    failed = [e for e in ctx.client.exchanges if e.server_error]
    if failed:
        first = failed[0]
        what = first.error or f"HTTP {first.status}"
        raise fail(
            f"{len(failed)} request(s) failed on the server; first: {first.path} → {what}",
            expected="no 5xx and no timeout",
            actual=what,
            exchange=first,
        )
    return None
