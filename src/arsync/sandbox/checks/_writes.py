"""Checks that push (run only with --allow-writes): idempotent retries, concurrency, read-back."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from arsync.erp import contract
from arsync.sandbox.checks._core import (
    Context,
    expect_refusal,
    fail,
    ids,
    last_listing,
    list_request,
    skip,
    validate,
    walk,
)
from arsync.sandbox.client import Exchange


def _first_debtor(ctx: Context) -> str:
    if "debtor" not in ctx.pushed:
        records = validate(ctx.post("/debtors/list", list_request(1, 1)), contract.DebtorPage)["debtors"]
        if not records:
            raise skip("the ERP lists no debtor to push an invoice for")
        ctx.pushed["debtor"] = records[0]["erpDebtorId"]
    debtor: str = ctx.pushed["debtor"]
    return debtor


def _invoice_request(ctx: Context, suffix: str, debtor: str | None = None) -> contract.InvoicePushRequest:
    today = date.today()
    return contract.InvoicePushRequest(
        invoice_number=f"SBX-{ctx.run_id}-{suffix}",
        erp_debtor_id=debtor or _first_debtor(ctx),
        issue_date=today,
        due_date=today,
        currency="USD",
        lines=[
            contract.Line(
                description="arsync sandbox check",
                quantity=Decimal(1),
                unit_price=Decimal("1.00"),
                amount=Decimal("1.00"),
            )
        ],
    )


PUSH_ID = {"/invoices/push": "erpInvoiceId", "/payments/push": "erpPaymentId"}


def _push(ctx: Context, path: str, request: contract.ContractModel) -> tuple[str, Exchange]:
    """The id the ERP gave a push, and the exchange it came in."""
    exchange = ctx.post(path, request)
    value: str = validate(exchange, contract.ENDPOINTS[path][1])[PUSH_ID[path]]
    return value, exchange


def _retry_gets_same_id(ctx: Context, path: str, request: contract.ContractModel, first_id: str, what: str) -> None:
    erp_id, again = _push(ctx, path, request)
    if erp_id != first_id:
        raise fail(
            f"a byte-identical retry created another {what}",
            expected=first_id,
            actual=erp_id,
            path=f"$.{PUSH_ID[path]}",
            exchange=again,
        )


def _one_id_at_once(ctx: Context, path: str, request: contract.ContractModel, what: str) -> str:
    """Push ``request`` 4 times at once; the one id they all got."""
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _push(ctx, path, request)[0], range(4)))
    got = set(answers)
    if len(got) != 1:
        raise fail(
            f"4 identical {what} pushes at once got different ids",
            expected="one id",
            actual=sorted(got),
            path=f"$.{PUSH_ID[path]}",
        )
    return answers[0]


def _listed(ctx: Context, entity: str, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    since = ctx.pushed.setdefault("since", datetime.now(UTC))
    result = walk(ctx, entity, ctx.page_size, modified_since=since)
    if result.problem is not None:
        raise result.problem
    everything = result.records
    if not any(match(r) for r in everything):  # a server that filters coarsely: look at the whole list
        whole = walk(ctx, entity, ctx.page_size)
        if whole.problem is not None:
            raise whole.problem
        everything = whole.records
    return [r for r in everything if match(r)]


def check_invoice_push(ctx: Context) -> str | None:
    ctx.pushed.setdefault("since", datetime.now(UTC).replace(microsecond=0))
    before = datetime.now(UTC)
    request = _invoice_request(ctx, "1")
    ctx.pushed["invoiceRequest"] = request
    ctx.pushed["invoice"], exchange = _push(ctx, "/invoices/push", request)
    # When the push happened, by the server's clock if it tells (HTTP Date): a server clock behind
    # ours is not a bug of the middleware, and must not fail modified_since_precise.
    told = exchange.server_date.replace(microsecond=0) if exchange.server_date else before
    ctx.pushed["pushedAt"] = min(before, told)
    return None


def check_invoice_retry(ctx: Context) -> str | None:
    _retry_gets_same_id(ctx, "/invoices/push", ctx.pushed["invoiceRequest"], ctx.pushed["invoice"], "invoice")
    return None


def check_invoice_concurrent(ctx: Context) -> str | None:
    request = _invoice_request(ctx, "2")
    _one_id_at_once(ctx, "/invoices/push", request, "invoice")
    listed = _listed(ctx, "invoices", lambda r: r["invoiceNumber"] == request.invoice_number)
    if len(listed) != 1:
        raise fail(
            f"4 identical pushes at once left {len(listed)} invoices numbered {request.invoice_number}",
            expected=1,
            actual=len(listed),
            exchange=last_listing(ctx, "invoices"),
        )
    return None


def check_invoice_visible(ctx: Context) -> str | None:
    number = ctx.pushed["invoiceRequest"].invoice_number
    listed = _listed(ctx, "invoices", lambda r: r["erpInvoiceId"] == ctx.pushed["invoice"])
    if not listed:
        raise fail(
            f"the pushed invoice {ctx.pushed['invoice']} is not in /invoices/list",
            expected="listed",
            actual="absent",
            exchange=last_listing(ctx, "invoices"),
        )
    if listed[0]["invoiceNumber"] != number:
        raise fail(
            "the pushed invoice is listed with another number",
            expected=number,
            actual=listed[0]["invoiceNumber"],
            path="$.invoices[*].invoiceNumber",
        )
    return None


def check_invoice_invalid(ctx: Context) -> str | None:
    number = f"SBX-{ctx.run_id}-invalid"
    no_lines = orjson.loads(contract.dumps(_invoice_request(ctx, "invalid"))) | {"lines": []}
    expect_refusal(ctx.post("/invoices/push", no_lines), range(400, 500), None, "an invoice push with no lines")
    unknown = _invoice_request(ctx, "invalid", debtor=f"SBX-{ctx.run_id}-NO-SUCH-DEBTOR")
    expect_refusal(ctx.post("/invoices/push", unknown), range(400, 500), None, "an invoice push for an unknown debtor")
    if _listed(ctx, "invoices", lambda r: r["invoiceNumber"] == number):
        raise fail(f"a refused push still created invoice {number}", expected="nothing created", actual="listed")
    return None


def _payment_request(ctx: Context, amount: str) -> contract.PaymentPushRequest:
    return contract.PaymentPushRequest(
        erp_invoice_id=ctx.pushed["invoice"], amount=Decimal(amount), payment_date=date.today(), bank_account_code="090"
    )


def check_payment_push(ctx: Context) -> str | None:
    request = _payment_request(ctx, "0.10")
    ctx.pushed["paymentRequest"] = request
    ctx.pushed["payment"], _ = _push(ctx, "/payments/push", request)
    return None


def check_payment_retry(ctx: Context) -> str | None:
    _retry_gets_same_id(ctx, "/payments/push", ctx.pushed["paymentRequest"], ctx.pushed["payment"], "payment")
    return None


def check_payment_concurrent(ctx: Context) -> str | None:
    erp_id = _one_id_at_once(ctx, "/payments/push", _payment_request(ctx, "0.20"), "payment")
    listed = _listed(ctx, "payments", lambda r: r["erpPaymentId"] == erp_id)
    if len(listed) != 1:
        raise fail(f"payment {erp_id} is listed {len(listed)} times", expected=1, actual=len(listed),
                   exchange=last_listing(ctx, "payments"))  # fmt: skip
    return None


def check_payment_visible(ctx: Context) -> str | None:
    listed = _listed(ctx, "payments", lambda r: r["erpPaymentId"] == ctx.pushed["payment"])
    if not listed:
        raise fail(
            f"the pushed payment {ctx.pushed['payment']} is not in /payments/list",
            expected="listed",
            actual="absent",
            exchange=last_listing(ctx, "payments"),
        )
    if Decimal(str(listed[0]["amount"])) != Decimal("0.10") or listed[0]["erpInvoiceId"] != ctx.pushed["invoice"]:
        raise fail(
            "the pushed payment is listed with other values",
            expected={"amount": "0.10", "erpInvoiceId": ctx.pushed["invoice"]},
            actual=listed[0],
        )
    return None


def check_payment_invalid(ctx: Context) -> str | None:
    unknown = f"SBX-{ctx.run_id}-NO-SUCH-INVOICE"
    request = contract.PaymentPushRequest(erp_invoice_id=unknown, amount=Decimal("1.00"), payment_date=date.today())
    expect_refusal(ctx.post("/payments/push", request), range(400, 500), None, "a payment on an unknown invoice")
    negative = {"schemaVersion": "1", "erpInvoiceId": ctx.pushed["invoice"], "amount": -1, "paymentDate": "2026-01-01"}
    expect_refusal(ctx.post("/payments/push", negative), range(400, 500), None, "a negative payment")
    if _listed(ctx, "payments", lambda r: r["erpInvoiceId"] == unknown):
        raise fail("a refused payment push still created a payment", expected="nothing created", actual="listed")
    return None


def _real_invoice_request(ctx: Context) -> contract.InvoicePushRequest:
    """An invoice as arsync really sends them: 3-decimal KWD, several lines, 6-decimal quantities
    and unit prices, non-ASCII text and a long number."""
    lines = [
        contract.Line(description="Beratung für Müller & Söhne — Ärzte", quantity=Decimal("1.5"),
                      unit_price=Decimal("120.125"), amount=Decimal("180.188")),
        contract.Line(description="会計サービス · خدمات محاسبة", quantity=Decimal("0.333333"),
                      unit_price=Decimal("3.000000"), amount=Decimal("1.000")),
        contract.Line(description="Frais de déplacement", quantity=Decimal(2), unit_price=Decimal("0.005"),
                      amount=Decimal("0.010")),
    ]  # fmt: skip
    today = date.today()
    return contract.InvoicePushRequest(
        invoice_number=f"SBX-{ctx.run_id}-KWD-{'9' * 30}",
        erp_debtor_id=_first_debtor(ctx),
        issue_date=today,
        due_date=today,
        currency="KWD",
        lines=lines,
    )


def check_invoice_real_data(ctx: Context) -> str | None:
    request = _real_invoice_request(ctx)
    ctx.pushed["realInvoice"], _ = _push(ctx, "/invoices/push", request)
    return None


def check_payment_real_data(ctx: Context) -> str | None:
    invoice = ctx.pushed["realInvoice"]
    for code in ("090", None):
        request = contract.PaymentPushRequest(
            erp_invoice_id=invoice, amount=Decimal("0.125"), payment_date=date.today(), bank_account_code=code
        )
        _push(ctx, "/payments/push", request)
    return None


def check_invoice_modified_precisely(ctx: Context) -> str | None:
    """The pushed invoice, asked for with modifiedSince one second before the push, is listed.

    No fallback to the full list: a middleware that compares by date only, or ignores the time
    of day, would hide every later change of the same day from incremental syncs.
    """
    since = ctx.pushed["pushedAt"] - timedelta(seconds=1)
    result = walk(ctx, "invoices", ctx.page_size, modified_since=since)
    if result.problem is not None:
        raise result.problem
    if ctx.pushed["invoice"] not in ids(result.records, "invoices"):
        raise fail(
            f"modifiedSince {contract.format_datetime(since)}, one second before the push, does not return the "
            f"pushed invoice {ctx.pushed['invoice']}",
            expected=f"{ctx.pushed['invoice']} listed",
            actual=f"{len(result.records)} records, without it",
            path="$.invoices[*].erpInvoiceId",
            exchange=ctx.exchanges[-1] if ctx.exchanges else None,
        )
    return None
