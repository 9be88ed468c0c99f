"""The real REST connector against the mock ERP over loopback HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import DataError

from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.erp.contract import format_datetime
from arsync.erp.models import Connection, SyncRun
from arsync.erp.runs import internal_error_message
from arsync.ledger.models import Customer, Invoice
from arsync.mocks.erp import Fault
from arsync.mocks.erp_data import ORPHAN_INVOICE_EVERY, UNMATCHED_PAYMENT_EVERY
from arsync.mocks.serving import serve_in_thread
from arsync.tenancy import service as tenancy
from tests.conftest import MockErp, Scope
from tests.contract_middleware import ContractMiddleware
from tests.contract_middleware import create_app as create_contract_app
from tests.ledger_check import assert_ledger_matches_erp


def _connection(container: Container, connection_id: str) -> Connection:
    with container.session_factory() as session:
        found = session.get(Connection, connection_id)
        assert found is not None
        return found


def test_full_sync_fills_the_ledger(container: Container, scope: Scope, connection: Connection, mock_erp: MockErp):
    assert connection.status == "ACTIVE"
    run = container.sync.run(connection.id)

    assert run.status == "SUCCEEDED", run.error
    assert run.full is True and run.modified_since is None
    assert run.stats["debtors"]["created"] == 120 + 230 // ORPHAN_INVOICE_EVERY
    assert run.stats["debtors"]["inferred"] == 230 // ORPHAN_INVOICE_EVERY
    assert run.stats["invoices"] == {
        "created": 230, "updated": 0, "unchanged": 0, "skipped": 0, "pages": 5, "records": 230, "inferred": 0,
        "applied_late": 0,
    }  # fmt: skip
    unmatched = 180 // UNMATCHED_PAYMENT_EVERY
    assert run.stats["payments"]["skipped"] == unmatched
    assert run.stats["payments"]["created"] == 180 - unmatched
    warning = run.warnings[0]
    assert warning["code"] == "PAYMENT_INVOICE_UNKNOWN"
    assert warning["erpPaymentId"] == "PAY-0000100" and warning["erpInvoiceId"] == "INV-MISSING-0000100"
    assert_ledger_matches_erp(container, scope.tenant_id, scope.environment_id, mock_erp.data)

    list_calls = [r for r in mock_erp.state.requests if r["endpoint"].endswith("/list")]
    assert [r["endpoint"] for r in list_calls][:1] == ["/debtors/list"]
    assert all(r["modifiedSince"] is None for r in list_calls)
    order = [r["endpoint"] for r in list_calls]
    assert order.index("/invoices/list") > max(i for i, e in enumerate(order) if e == "/debtors/list")
    assert order.index("/payments/list") > max(i for i, e in enumerate(order) if e == "/invoices/list")

    with container.session_factory() as session:
        watermark = session.get(Connection, connection.id).sync_watermark  # type: ignore[union-attr]
    assert watermark == run.started_at


def test_incremental_sync_sends_watermark_and_counts_changes(
    container: Container, scope: Scope, connection: Connection, mock_erp: MockErp
):
    first = container.sync.run(connection.id)
    assert first.status == "SUCCEEDED"
    with container.session_factory() as session:
        untouched_before = session.scalar(select(Invoice.updated_at).where(Invoice.erp_invoice_id == "INV-0000002"))

    mock_erp.data.mutate({"debtors": 2, "invoices": 5, "payments": 3})
    mock_erp.state.requests.clear()
    second = container.sync.run(connection.id)

    assert second.status == "SUCCEEDED", second.error
    # The watermark is the first run's start, less the lookback for an ERP clock behind ours.
    since = first.started_at - timedelta(seconds=container.settings.sync_lookback_seconds)
    assert second.full is False and second.modified_since == since
    sent = {r["endpoint"]: r["modifiedSince"] for r in mock_erp.state.requests if r["endpoint"].endswith("/list")}
    assert sent == dict.fromkeys(["/debtors/list", "/invoices/list", "/payments/list"], format_datetime(since))
    assert second.stats["debtors"]["updated"] == 2
    assert second.stats["invoices"]["updated"] == 5
    payments = second.stats["payments"]
    assert payments["updated"] + payments["skipped"] == 3
    assert_ledger_matches_erp(container, scope.tenant_id, scope.environment_id, mock_erp.data)
    with container.session_factory() as session:
        untouched_after = session.scalar(select(Invoice.updated_at).where(Invoice.erp_invoice_id == "INV-0000002"))
    assert untouched_after == untouched_before

    third = container.sync.run(connection.id, full=True)
    assert third.status == "SUCCEEDED" and third.full is True
    assert third.stats["invoices"]["unchanged"] == 230 and third.stats["invoices"]["updated"] == 0


@pytest.mark.parametrize("endpoint", ["/debtors/list", "/invoices/list", "/payments/list"])
def test_500_mid_entity_fails_then_recovery_sync_converges(
    container: Container, scope: Scope, connection: Connection, mock_erp: MockErp, endpoint: str
):
    mock_erp.state.set_faults([Fault(endpoint=endpoint, page=2, status=500)])
    failed = container.sync.run(connection.id)

    assert failed.status == "FAILED"
    assert failed.error is not None
    assert failed.error["endpoint"] == endpoint
    assert failed.error["page"] == 2
    assert failed.error["httpStatus"] == 500
    assert failed.error["code"] == "INTERNAL_ERROR"
    assert "injected" in failed.error["message"]
    entity = endpoint.split("/")[1]
    assert failed.stats[entity]["pages"] == 1, "page 1 stays committed"
    after = _connection(container, connection.id)
    assert after.status == "FAILED"
    assert after.status_reason is not None and endpoint in after.status_reason
    assert after.sync_watermark is None, "a failed run must not move the watermark"
    attempts = [r for r in mock_erp.state.requests if r["endpoint"] == endpoint and r["page"] == 2]
    assert len(attempts) == 1, "a 500 is not retried"

    mock_erp.state.set_faults([])
    recovered = container.sync.run(connection.id)
    assert recovered.status == "SUCCEEDED", recovered.error
    assert recovered.full is True
    assert_ledger_matches_erp(container, scope.tenant_id, scope.environment_id, mock_erp.data)
    assert _connection(container, connection.id).status == "ACTIVE"


def test_failed_incremental_keeps_old_watermark(container: Container, connection: Connection, mock_erp: MockErp):
    first = container.sync.run(connection.id)
    mock_erp.state.set_faults([Fault(endpoint="/payments/list", status=500)])
    failed = container.sync.run(connection.id)
    assert failed.status == "FAILED"
    assert _connection(container, connection.id).sync_watermark == first.started_at
    mock_erp.state.set_faults([])
    retry = container.sync.run(connection.id)
    assert retry.modified_since == first.started_at - timedelta(seconds=container.settings.sync_lookback_seconds)


@pytest.mark.parametrize(
    ("fault", "kind", "fragment"),
    [
        (Fault(endpoint="/debtors/list", status=401, code="UNAUTHORIZED"), "AuthenticationFailed", "rotate the key"),
        (
            Fault(endpoint="/invoices/list", page=1, kind="contract_violation"),
            "ContractViolation",
            "breaks the contract",
        ),
        (
            Fault(endpoint="/invoices/list", page=1, kind="wrong_schema_version"),
            "ContractViolation",
            "schemaVersion '2'",
        ),
        (Fault(endpoint="/debtors/list", page=1, kind="malformed_json"), "ContractViolation", "not valid JSON"),
        (Fault(endpoint="/payments/list", kind="endless_has_more"), "PagingError", "more than 8 pages"),
        (Fault(endpoint="/invoices/list", page=2, kind="empty_has_more"), "PagingError", "empty page"),
        (Fault(endpoint="/invoices/list", kind="repeat_page"), "PagingError", "repeats page 1"),
        (Fault(endpoint="/debtors/list", page=1, kind="oversized_page"), "ContractViolation", "limit was 50"),
    ],
)
def test_each_failure_mode_fails_the_run_with_context(
    container: Container, scope: Scope, mock_erp: MockErp, fault: Fault, kind: str, fragment: str
):
    container.sync.options = type(container.sync.options)(page_size=50, max_pages=8)
    saved, _ = container.connections.save_rest(scope.tenant_id, scope.environment_id, mock_erp.url)
    mock_erp.state.set_faults([fault])

    run = container.sync.run(saved.id)

    assert run.status == "FAILED"
    assert run.error is not None
    assert run.error["kind"] == kind
    assert fragment in run.error["message"] + " " + run.error["hint"]
    assert run.error["endpoint"] == fault.endpoint
    assert run.error["hint"]
    after = _connection(container, saved.id)
    assert after.status == "FAILED" and after.last_error is not None
    if kind == "AuthenticationFailed":
        assert run.error["hint"] == "rotate the key or fix middleware config, then Sync now"
        assert run.error["httpStatus"] == 401 and run.error["code"] == "UNAUTHORIZED"

    mock_erp.state.set_faults([])
    container.sync.options = type(container.sync.options)(page_size=50, max_pages=200)
    assert container.sync.run(saved.id).status == "SUCCEEDED"
    assert_ledger_matches_erp(container, scope.tenant_id, scope.environment_id, mock_erp.data)


def test_timeout_then_success_is_retried(container: Container, connection: Connection, mock_erp: MockErp):
    mock_erp.state.set_faults([Fault(endpoint="/invoices/list", page=3, delay=3.0, times=1)])
    run = container.sync.run(connection.id)
    assert run.status == "SUCCEEDED", run.error
    calls = [r for r in mock_erp.state.requests if r["endpoint"] == "/invoices/list" and r["page"] == 3]
    assert len(calls) == 2


def test_429_with_retry_after_then_success(container: Container, connection: Connection, mock_erp: MockErp):
    mock_erp.state.set_faults([Fault(endpoint="/debtors/list", page=1, status=429, retry_after=0, times=2)])
    run = container.sync.run(connection.id)
    assert run.status == "SUCCEEDED", run.error
    assert len([r for r in mock_erp.state.requests if r["endpoint"] == "/debtors/list" and r["page"] == 1]) == 3


def test_persistent_503_gives_up_after_bounded_attempts(
    container: Container, connection: Connection, mock_erp: MockErp
):
    mock_erp.state.set_faults([Fault(endpoint="/debtors/list", page=1, status=503)])
    run = container.sync.run(connection.id)
    assert run.status == "FAILED"
    assert run.error is not None and "gave up after 4 attempts" in run.error["message"]
    assert len([r for r in mock_erp.state.requests if r["endpoint"] == "/debtors/list"]) == 4


def test_one_run_at_a_time(container: Container, connection: Connection, mock_erp: MockErp):
    first, started = container.sync.start(connection.id)
    assert started
    second, started_again = container.sync.start(connection.id)
    assert not started_again and second.id == first.id
    assert container.sync.run(connection.id).id == first.id

    container.sync.execute(first.id)
    with container.session_factory() as session:
        assert session.get(SyncRun, first.id).status == "SUCCEEDED"  # type: ignore[union-attr]
    third, started = container.sync.start(connection.id)
    assert started and third.id != first.id


def test_concurrent_sync_now_starts_one_run(container: Container, connection: Connection, mock_erp: MockErp):
    mock_erp.state.set_faults([Fault(endpoint="/debtors/list", page=1, delay=0.5, times=1)])
    results: list[str] = []
    barrier = threading.Barrier(6)

    def sync_now() -> None:
        barrier.wait()
        results.append(container.sync.run(connection.id).id)

    threads = [threading.Thread(target=sync_now) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 6 and len(set(results)) == 1
    with container.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(SyncRun)) == 1


def test_abandoned_run_is_taken_over(container: Container, connection: Connection):
    stale, _ = container.sync.start(connection.id)
    with transaction(container.session_factory) as session:
        row = session.get(SyncRun, stale.id)
        assert row is not None
        row.heartbeat_at = row.heartbeat_at - timedelta(hours=1)
    fresh, started = container.sync.start(connection.id)
    assert started and fresh.id != stale.id
    with container.session_factory() as session:
        old = session.get(SyncRun, stale.id)
        assert old is not None and old.status == "FAILED" and old.error["kind"] == "Abandoned"  # type: ignore[index]


def test_tenants_do_not_share_erp_identity(container: Container, connection: Connection, mock_erp: MockErp):
    with transaction(container.session_factory) as session:
        other = tenancy.create_tenant(session, "other-tenant", "prod")
    other_connection, _ = container.connections.save_rest(other.tenant_id, other.environment_id, mock_erp.url)
    assert container.sync.run(connection.id).status == "SUCCEEDED"
    assert container.sync.run(other_connection.id).status == "SUCCEEDED"
    with container.session_factory() as session:
        per_tenant = dict(session.execute(select(Customer.tenant_id, func.count()).group_by(Customer.tenant_id)).all())
    assert len(per_tenant) == 2 and len(set(per_tenant.values())) == 1


def test_wrong_middleware_key_gets_401_and_fails_with_hint(
    container: Container, connection: Connection, mock_erp: MockErp
):
    mock_erp.state.token = "ask_only-this-one"
    run = container.sync.run(connection.id)
    assert run.status == "FAILED"
    assert run.error is not None
    assert run.error["httpStatus"] == 401 and run.error["code"] == "UNAUTHORIZED"
    assert run.error["message"].startswith("Missing or invalid Authorization header")
    assert run.error["hint"] == "rotate the key or fix middleware config, then Sync now"
    assert _connection(container, connection.id).status == "FAILED"
    assert sum(1 for r in mock_erp.state.requests if r["endpoint"] == "/debtors/list") == 1, "401 is not retried"


def test_with_private_addresses_off_a_sync_to_loopback_fails_without_calling_it(
    container: Container, connection: Connection, mock_erp: MockErp
):
    calls_before = len(mock_erp.state.requests)
    with container.outbound.private_addresses(allowed=False):
        run = container.sync.run(connection.id)
    assert run.status == "FAILED" and run.error is not None
    assert run.error["kind"] == "OutboundRefused" and "ARSYNC_OUTBOUND_ALLOW_PRIVATE" in run.error["message"]
    assert len(mock_erp.state.requests) == calls_before
    with container.session_factory() as session:
        saved = session.get(Connection, connection.id)
        assert saved is not None and saved.status == "FAILED"
    assert container.sync.run(connection.id).status == "SUCCEEDED"  # the default allows loopback again


def test_a_record_the_database_cannot_hold_is_skipped_with_a_warning_not_a_failed_sync(
    container: Container, scope: Scope
) -> None:
    """One NUL character in one debtor's name used to fail every sync of the connection on
    PostgreSQL, with the SQL and its parameters in the stored error."""
    erp = ContractMiddleware.with_records(debtors=6, invoices=10, payments=4)
    erp.debtors[2]["name"] = "Bad\x00Debtor"
    erp.debtors[4]["name"] = "Escapes \\u0000 Ltd"  # the six characters, not a NUL: stored as they are
    with serve_in_thread(create_contract_app(erp)) as server:
        saved, key = container.connections.save_rest(scope.tenant_id, scope.environment_id, server.url, "090")
        assert key is not None
        erp.token = key  # the middleware accepts the key arsync issued
        run = container.sync.run(saved.id)
    assert run.status == "SUCCEEDED", run.error
    warnings = [w for w in run.warnings if w["code"] == "RECORD_UNSTORABLE"]
    assert [w["erpDebtorId"] for w in warnings] == ["D003"] and "NUL character" in warnings[0]["message"]
    with container.session_factory() as session:
        names = dict(session.execute(
            select(Customer.erp_debtor_id, Customer.name).where(Customer.tenant_id == scope.tenant_id)
        ).all())  # fmt: skip
    # The other debtors are in; D003 only as its invoices name it, never with the NUL.
    assert {"D001", "D002", "D004", "D005", "D006"} <= set(names) and "\x00" not in names.get("D003", "")
    assert names["D005"] == "Escapes \\u0000 Ltd"


def test_an_internal_database_error_is_stored_without_its_sql() -> None:
    error = DataError(
        "INSERT INTO customers (name) VALUES (%(name)s)", {"name": "Secret Client Ltd"},
        Exception("A string literal cannot contain NUL (0x00) characters.\nLINE 1: INSERT INTO customers"),
    )  # fmt: skip
    message = internal_error_message(error)
    assert "cannot contain NUL" in message and "INSERT" not in message and "Secret Client" not in message


def test_a_first_import_whose_pages_repeat_a_record_stores_it_once(container: Container, scope: Scope) -> None:
    """Into an empty scope the pages are written without looking their ERP ids up. An ERP that
    serves a record on two pages then meets the unique index: that page is written again the
    usual way, and the record is in the ledger once."""
    erp = ContractMiddleware.with_records(debtors=5, invoices=120, payments=0)
    erp.overlap_pages = True  # each invoice page after the first starts one record early
    erp.page_cap = 40  # pages shorter than the limit, so the extra record stays within it
    with serve_in_thread(create_contract_app(erp)) as server:
        saved, key = container.connections.save_rest(scope.tenant_id, scope.environment_id, server.url, "090")
        assert key is not None
        erp.token = key
        run = container.sync.run(saved.id)
    assert run.status == "SUCCEEDED", run.error
    counts = run.stats["invoices"]
    assert (counts["pages"], counts["records"], counts["created"], counts["unchanged"]) == (3, 122, 120, 2)
    with container.session_factory() as session:
        stored = session.scalars(select(Invoice.erp_invoice_id).where(Invoice.tenant_id == scope.tenant_id)).all()
    assert len(stored) == len(set(stored)) == 120


def test_a_large_first_sync_analyzes_each_table_as_it_grows_and_only_then(pg_container: Container) -> None:
    """Statistics are refreshed when a table has doubled in this run: the customers while debtors
    arrive, not again at every doubling of the invoices that reference them."""
    with transaction(pg_container.session_factory) as session:
        created = tenancy.create_tenant(session, "analyzed", "prod")
    erp = ContractMiddleware.with_records(debtors=1000, invoices=2000, payments=0)
    analyzed: list[str] = []

    def record_analyze(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.startswith("ANALYZE"):
            analyzed.append(statement.split()[1].strip('"'))

    event.listen(pg_container.engine, "before_cursor_execute", record_analyze)
    try:
        with serve_in_thread(create_contract_app(erp)) as server:
            saved, key = pg_container.connections.save_rest(created.tenant_id, created.environment_id, server.url)
            assert key is not None
            erp.token = key
            run = pg_container.sync.run(saved.id)
    finally:
        event.remove(pg_container.engine, "before_cursor_execute", record_analyze)
    assert run.status == "SUCCEEDED", run.error
    assert (run.stats["debtors"]["created"], run.stats["invoices"]["created"]) == (1000, 2000)
    # At 1000 rows and again at twice that: customers once, invoices and their lines twice.
    assert sorted(analyzed) == ["customers", "invoice_lines", "invoice_lines", "invoices", "invoices"]
