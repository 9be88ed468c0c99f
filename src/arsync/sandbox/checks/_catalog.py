"""The suite: every check with its tier, and what each rests on."""

from __future__ import annotations

from arsync.sandbox.checks._core import (
    ENTITIES,
    Check,
)
from arsync.sandbox.checks._quality import (
    SLOW_PAGE_SECONDS,
    check_latency,
    check_no_5xx,
    sanity_check,
)
from arsync.sandbox.checks._reads import (
    auth_check,
    bad_datetime_check,
    bad_paging_check,
    check_content_type,
    check_error_body,
    check_health,
    check_malformed_json,
    check_unsupported_version,
    check_version_echo,
    future_check,
    limit_check,
    no_gaps_check,
    past_the_end_check,
    schema_check,
    stable_check,
    subset_check,
    terminates_check,
)
from arsync.sandbox.checks._writes import (
    check_invoice_concurrent,
    check_invoice_invalid,
    check_invoice_modified_precisely,
    check_invoice_push,
    check_invoice_real_data,
    check_invoice_retry,
    check_invoice_visible,
    check_payment_concurrent,
    check_payment_invalid,
    check_payment_push,
    check_payment_real_data,
    check_payment_retry,
    check_payment_visible,
)


def all_checks() -> list[Check]:
    checks = [
        Check("health", "POST /health answers ok: true per the contract", check_health),
        Check(
            "auth.missing_token",
            "No Authorization header: 401 UNAUTHORIZED",
            auth_check("none", "a request without a token"),
        ),
        Check(
            "auth.invalid_token",
            "An unknown token: 401 UNAUTHORIZED",
            auth_check("wrong", "a request with a wrong token"),
            requires=("auth.missing_token",),
        ),
        Check(
            "auth.malformed_header",
            "A non-Bearer or empty Authorization header: 401 UNAUTHORIZED",
            auth_check("basic", "a Basic Authorization header"),
            requires=("auth.missing_token",),
        ),
        Check("schema_version.echo", 'Every success echoes schemaVersion "1"', check_version_echo),
        Check(
            "schema_version.unsupported",
            'A request with schemaVersion "2" is refused with 4xx',
            check_unsupported_version,
        ),
        Check("malformed_json", "A malformed body is refused: 400 INVALID_JSON", check_malformed_json),
        Check("error_body.shape", "4xx answers use the standard error body", check_error_body),
    ]
    for entity in ENTITIES:
        path = f"/{entity}/list"
        checks += [
            Check(f"{entity}.schema", f"{path}: every page matches the contract", schema_check(entity)),
            Check(
                f"{entity}.limit",
                f"{path} returns no more than limit",
                limit_check(entity),
                requires=(f"{entity}.schema",),
            ),
            Check(
                f"{entity}.terminates",
                f"{path} ends (hasMore: false) and never repeats a record",
                terminates_check(entity),
                requires=(f"{entity}.schema",),
            ),
            Check(
                f"{entity}.no_gaps",
                f"{path}: walks with limit 1, 7 and 20 hold the same records as the platform's",
                no_gaps_check(entity),
                requires=(f"{entity}.terminates",),
            ),
            Check(
                f"{entity}.past_the_end",
                f"{path}: the page after the last is empty",
                past_the_end_check(entity),
                requires=(f"{entity}.terminates",),
            ),
            Check(
                f"{entity}.bad_paging",
                f"{path}: page 0, negative or non-integer paging is refused",
                bad_paging_check(entity),
            ),
            Check(
                f"{entity}.stable",
                f"{path}: two walks without writes return the same records",
                stable_check(entity),
                requires=(f"{entity}.terminates",),
            ),
            Check(
                f"{entity}.modified_since_future",
                f"{path}: modifiedSince in 2999 returns nothing (else every sync reads the whole list)",
                future_check(entity),
                tier="SHOULD",
            ),
            Check(
                f"{entity}.modified_since_subset",
                f"{path}: modifiedSince returns a subset",
                subset_check(entity),
                requires=(f"{entity}.terminates",),
            ),
            Check(
                f"{entity}.bad_datetime",
                f"{path}: an invalid or zone-less modifiedSince is refused",
                bad_datetime_check(entity),
            ),
        ]
        if entity != "debtors":
            checks.append(Check(
                f"{entity}.sanity",
                f"{path}: figures are plausible (outstanding within total, lines add up, paid after issue)",
                sanity_check(entity),
                requires=tuple(dict.fromkeys((f"{entity}.terminates", "invoices.terminates"))),
                tier="SHOULD",
            ))  # fmt: skip
    checks += [
        # A push answer is validated with its schemaVersion; a server that never echoes it is
        # reported once, by schema_version.echo, and the pushes are skipped.
        Check(
            "invoices.push",
            "POST /invoices/push creates an invoice",
            check_invoice_push,
            requires=("schema_version.echo",),
            writes=True,
        ),
        Check(
            "invoices.push_retry",
            "A byte-identical invoice push returns the same erpInvoiceId",
            check_invoice_retry,
            requires=("invoices.push",),
            writes=True,
        ),
        Check(
            "invoices.push_visible",
            "A pushed invoice appears in /invoices/list",
            check_invoice_visible,
            requires=("invoices.push", "invoices.terminates"),
            writes=True,
        ),
        Check(
            "invoices.push_concurrent",
            "Identical invoice pushes at once create one invoice",
            check_invoice_concurrent,
            requires=("invoices.push_retry", "invoices.push_visible"),
            writes=True,
        ),
        Check(
            "invoices.push_real_data",
            "An invoice as arsync sends them (KWD, 6-decimal quantities, non-ASCII, a long number) is accepted",
            check_invoice_real_data,
            requires=("invoices.push",),
            writes=True,
        ),
        Check(
            "invoices.modified_since_precise",
            "modifiedSince one second before a push returns the pushed invoice (time, not date, precision)",
            check_invoice_modified_precisely,
            requires=("invoices.push_visible",),
            writes=True,
        ),
        Check(
            "invoices.push_invalid",
            "An invalid invoice push is refused with 4xx and creates nothing",
            check_invoice_invalid,
            requires=("invoices.terminates",),
            writes=True,
        ),
        Check(
            "payments.push",
            "POST /payments/push creates a payment",
            check_payment_push,
            requires=("invoices.push", "schema_version.echo"),
            writes=True,
        ),
        Check(
            "payments.push_retry",
            "A byte-identical payment push returns the same erpPaymentId",
            check_payment_retry,
            requires=("payments.push",),
            writes=True,
        ),
        Check(
            "payments.push_visible",
            "A pushed payment appears in /payments/list",
            check_payment_visible,
            requires=("payments.push", "payments.terminates"),
            writes=True,
        ),
        Check(
            "payments.push_concurrent",
            "Identical payment pushes at once create one payment",
            check_payment_concurrent,
            requires=("payments.push_retry", "payments.push_visible"),
            writes=True,
        ),
        Check(
            "payments.push_real_data",
            "A 3-decimal payment is accepted with and without bankAccountCode",
            check_payment_real_data,
            requires=("payments.push", "invoices.push_real_data"),
            writes=True,
        ),
        Check(
            "payments.push_invalid",
            "An invalid payment push is refused with 4xx and creates nothing",
            check_payment_invalid,
            requires=("invoices.push", "payments.terminates"),
            writes=True,
        ),
        Check("server.no_5xx", "No request of the whole run got a 5xx or timed out", check_no_5xx),
        Check("content_type", "Every answer of the run, on every endpoint, is application/json", check_content_type),
        Check("latency", f"Every answer came within {SLOW_PAGE_SECONDS:g} s", check_latency, tier="SHOULD"),
    ]
    return checks


# What each check rests on: the contract (the REST contract's endpoint and error pages), the
# flows (the sync and push flows), or, where no source speaks, what a ledger needs. "*" stands
# for debtors, invoices and payments. The README's table of checks is kept equal to this.
BASIS: dict[str, str] = {
    "health": "Contract, health: 200 when the token is valid and the service is ready",
    "auth.missing_token": "Contract, errors: a missing or invalid Authorization header is 401 UNAUTHORIZED",
    "auth.invalid_token": "Contract, errors: a missing or invalid Authorization header is 401 UNAUTHORIZED",
    "auth.malformed_header": "Contract, errors: the header is Authorization: Bearer <token>",
    "schema_version.echo": 'Contract: every success response echoes schemaVersion "1"',
    "schema_version.unsupported": 'Contract: the requests carry schemaVersion "1"; another version is refused',
    "malformed_json": "Contract, error codes: INVALID_JSON",
    "error_body.shape": "Contract: every failure uses the standard error body",
    "*.schema": "Contract: the list's response shape and field types",
    "*.limit": "Contract, paging: page and limit select the records",
    "*.terminates": "Flows: pages are fetched until hasMore is false",
    "*.no_gaps": "Flows: pages are fetched until hasMore is false, so an early false loses records",
    "*.past_the_end": "Flows: pages are fetched until hasMore is false",
    "*.bad_paging": "Contract, error codes: VALIDATION_FAILED for a request that breaks the contract",
    "*.stable": "Flows: records are deduplicated by ERP id, which needs stable ids",
    "*.modified_since_future": "Flows, incremental sync: the full set is safe, only slower",
    "*.modified_since_subset": "Flows, incremental sync: only records created or changed after modifiedSince",
    "*.bad_datetime": "Flows, incremental sync: modifiedSince is an ISO datetime",
    "*.sanity": "No source: what a finance team's ledger must not show",
    "invoices.push": "Contract, invoice push: called on dispatch; answers with erpInvoiceId",
    "invoices.push_retry": "Contract and flows, idempotency: a retry gets the existing erpInvoiceId",
    "invoices.push_concurrent": "Flows, idempotency: no duplicate invoice in the ERP",
    "invoices.push_visible": "Flows: what is pushed is read back by the next sync",
    "invoices.push_real_data": "Contract: exact decimal money in the currency's places (3 for KWD, BHD, OMR)",
    "invoices.modified_since_precise": "Flows, incremental sync: modifiedSince is a datetime, not a date",
    "invoices.push_invalid": "Contract, error codes: VALIDATION_FAILED, and nothing is created",
    "payments.push": "Contract, payment push: called on approval; bankAccountCode is optional",
    "payments.push_retry": "Flows, idempotency: a retry does not create a duplicate",
    "payments.push_concurrent": "Flows, idempotency: a retry does not create a duplicate",
    "payments.push_visible": "Flows: what is pushed is read back by the next sync",
    "payments.push_real_data": "Contract, payment push: bankAccountCode is optional; exact decimal money",
    "payments.push_invalid": "Contract, error codes: VALIDATION_FAILED, and nothing is created",
    "server.no_5xx": "Contract: failures are answered with the standard error body, not 5xx",
    "content_type": "Contract: JSON requests and responses",
    "latency": "No source: a sync of a million records at 2 s a page takes hours",
}


def basis(check_name: str) -> str:
    """What ``check_name`` rests on (see BASIS)."""
    if check_name in BASIS:
        return BASIS[check_name]
    _, _, rest = check_name.partition(".")
    return BASIS[f"*.{rest}"]
