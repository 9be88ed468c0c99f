"""Incremental syncs against an independent middleware with a skewed clock, outages and late data.

The middleware (``tests/middleware.py``) is not arsync's mock: it is written from the contract
alone, stamps changes with a clock 120 s behind ours and filters ``modifiedSince`` with ">".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.erp.models import Connection, SyncRun
from arsync.ledger.models import Invoice, Payment
from arsync.mocks.erp import Fault
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.tenancy import service as tenancy
from tests.conftest import MockErp, clean_container, make_settings
from tests.middleware import SkewedMiddleware, create_app, outstanding_by_invoice
from tests.polling import eventually


@pytest.fixture
def erp() -> SkewedMiddleware:
    middleware = SkewedMiddleware(clock_offset=-120)
    for n in range(1, 4):
        middleware.put_debtor(f"D{n}", f"Debtor {n}")
    for n in range(1, 6):
        middleware.put_invoice(f"I{n}", f"D{1 + n % 3}", "100.00", "100.00")
    return middleware


@pytest.fixture
def served(erp: SkewedMiddleware) -> Iterator[RunningServer]:
    with serve_in_thread(create_app(erp)) as server:
        yield server


def _app(database_url: str, tmp_path: Path, **settings: object) -> Iterator[Container]:
    with clean_container(make_settings(database_url, tmp_path, **settings)) as app:
        yield app


def _connect(app: Container, erp: SkewedMiddleware, served: RunningServer) -> str:
    with transaction(app.session_factory) as session:
        created = tenancy.create_tenant(session, "skewed", "prod")
    saved, key = app.connections.save_rest(created.tenant_id, created.environment_id, served.url, "090")
    assert key is not None
    erp.token = key  # the key arsync generated is the one the middleware is configured with
    connection = app.connections.check_health(saved.id, scope=None)
    assert connection.status == "ACTIVE"
    return connection.id


def _ledger(app: Container) -> tuple[dict[str, Decimal], set[str]]:
    with app.session_factory() as session:
        outstanding = {
            row[0]: row[1] for row in session.execute(select(Invoice.erp_invoice_id, Invoice.amount_outstanding))
        }
        payments = set(session.scalars(select(Payment.erp_payment_id)).all())
    return {k: v for k, v in outstanding.items() if k}, {p for p in payments if p}


def _changes(erp: SkewedMiddleware, round_: int) -> None:
    """One round of a finance team's day in the ERP: a payment, a new invoice, a renamed debtor."""
    invoice = f"I{1 + round_ % 5}"
    paid = Decimal(outstanding_by_invoice(erp)[invoice]) - Decimal("5.00")
    erp.put_invoice(invoice, f"D{1 + (1 + round_ % 5) % 3}", "100.00", f"{paid:.2f}")
    erp.put_payment(f"P{round_}", invoice, "5.00")
    erp.put_invoice(f"NEW{round_}", "D1", "50.00", "50.00")
    erp.put_debtor("D2", f"Debtor 2, renamed {round_}")


@pytest.mark.parametrize("lookback", [300, 0])
def test_ten_incremental_runs_against_a_clock_120s_behind_miss_nothing(
    database_url: str, tmp_path: Path, erp: SkewedMiddleware, served: RunningServer, lookback: int
) -> None:
    for app in _app(database_url, tmp_path, sync_lookback_seconds=lookback):
        connection_id = _connect(app, erp, served)
        assert app.sync.run(connection_id).status == "SUCCEEDED"
        missed = 0
        for round_ in range(10):
            _changes(erp, round_)
            run = app.sync.run(connection_id)
            assert run.status == "SUCCEEDED" and not run.full, run.error
            outstanding, payments = _ledger(app)
            missed += sum(outstanding.get(k) != v for k, v in outstanding_by_invoice(erp).items())
            missed += len(set(erp.payments) - payments)
        if lookback:
            assert missed == 0
            # The overlap re-reads a few records; they count as unchanged, not as updates.
            assert run.stats["debtors"]["unchanged"] >= 1 and run.stats["debtors"]["updated"] == 1
        else:
            # Without the lookback this ERP's changes are all stamped before the watermark.
            assert missed > 0


def test_one_outage_heals_at_the_next_scheduled_slot(
    database_url: str, tmp_path: Path, erp: SkewedMiddleware, served: RunningServer
) -> None:
    for app in _app(database_url, tmp_path, sync_retry_attempts=0):
        connection_id = _connect(app, erp, served)
        erp.outage = 4  # one call's every attempt (ARSYNC_HTTP_MAX_ATTEMPTS is 4)
        failed = app.sync.run(connection_id, trigger="schedule")
        assert failed.status == "FAILED" and failed.error and failed.error["kind"] == "TransientError"
        assert _status(app, connection_id) == "FAILED"

        erp.put_invoice("LATE1", "D1", "70.00", "70.00")
        assert app.sync.start_scheduled() == 1  # what the next cron slot does
        _work_the_queue(app, connection_id)
        healed = _wait_for_run(app, connection_id, lambda r: r.status != "RUNNING", other_than=failed.id)
        assert healed.status == "SUCCEEDED" and healed.trigger == "schedule"
        assert _status(app, connection_id) == "ACTIVE"
        assert "LATE1" in _ledger(app)[0]


def test_a_failed_scheduled_run_is_tried_again_with_backoff_within_the_slot(
    sqlite_url: str, tmp_path: Path, erp: SkewedMiddleware, served: RunningServer
) -> None:
    """On the embedded queue, which runs the delayed retry jobs itself (workers do on PostgreSQL)."""
    for app in _app(sqlite_url, tmp_path, sync_retry_attempts=3, sync_retry_backoff_seconds=0.3):
        connection_id = _connect(app, erp, served)
        erp.outage = 8  # two runs' worth
        assert app.sync.start_scheduled() == 1
        final = _wait_for_run(app, connection_id, lambda r: r.status == "SUCCEEDED", timeout=30)
        with app.session_factory() as session:
            runs = session.scalars(select(SyncRun).order_by(SyncRun.started_at)).all()
        assert [(r.trigger, r.attempt, r.status) for r in runs] == [
            ("schedule", 1, "FAILED"), ("retry", 2, "FAILED"), ("retry", 3, "SUCCEEDED"),
        ]  # fmt: skip
        assert runs[0].error and "tried again by itself" in runs[0].error["hint"]
        assert final.id == runs[-1].id and _status(app, connection_id) == "ACTIVE"


def test_a_payment_that_arrives_before_its_invoice_is_applied_when_the_invoice_does(
    database_url: str, tmp_path: Path, erp: SkewedMiddleware, served: RunningServer
) -> None:
    erp.put_invoice("I9", "D1", "300.00", "200.00")
    erp.hidden_invoices.add("I9")
    erp.put_payment("P9", "I9", "100.00")
    erp.payments["P9"].stamped -= timedelta(hours=1)  # paid long ago: outside any lookback
    for app in _app(database_url, tmp_path):
        connection_id = _connect(app, erp, served)
        first = app.sync.run(connection_id)
        assert first.status == "SUCCEEDED" and first.stats["payments"]["skipped"] == 1
        assert first.warnings[0]["code"] == "PAYMENT_INVOICE_UNKNOWN" and "kept" in first.warnings[0]["message"]
        assert "P9" not in _ledger(app)[1]

        erp.reveal_invoice("I9")  # the payment itself is not changed, so it is not listed again
        second = app.sync.run(connection_id)
        assert second.status == "SUCCEEDED"
        assert second.stats["payments"]["records"] == 0, "the payment was listed again; the test proves nothing"
        assert second.stats["payments"]["applied_late"] == 1 and second.stats["payments"]["created"] == 1
        with app.session_factory() as session:
            payment = session.scalars(select(Payment).where(Payment.erp_payment_id == "P9")).one()
            invoice = session.scalars(select(Invoice).where(Invoice.erp_invoice_id == "I9")).one()
        assert payment.invoice_id == invoice.id and payment.amount == Decimal("100.00")

        third = app.sync.run(connection_id, full=True)
        assert third.stats["payments"]["created"] == 0 and len(_ledger(app)[1]) == 1


def _work_the_queue(app: Container, connection_id: str) -> None:
    """On PostgreSQL do what a worker would with the queued run; the embedded queue runs it itself."""
    if app.settings.is_postgresql:
        with app.session_factory() as session:
            run_id = session.scalars(
                select(SyncRun.id).where(SyncRun.connection_id == connection_id, SyncRun.status == "RUNNING")
            ).one()
        app.sync.execute(run_id)


def _status(app: Container, connection_id: str) -> str:
    with app.session_factory() as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None
        return connection.status


def _wait_for_run(
    app: Container,
    connection_id: str,
    done: Callable[[SyncRun], bool],
    timeout: float = 20,
    other_than: str | None = None,
) -> SyncRun:
    def finished() -> SyncRun | None:
        with app.session_factory() as session:
            runs = session.scalars(
                select(SyncRun).where(SyncRun.connection_id == connection_id).order_by(SyncRun.started_at.desc())
            ).all()
        return next((run for run in runs if run.id != other_than and done(run)), None)

    return eventually(finished, "a run to finish as expected", timeout, interval=0.1)


def _connection_status(container: Container, connection_id: str) -> tuple[str, str | None]:
    with container.session_factory() as session:
        stored = session.get(Connection, connection_id)
        assert stored is not None
        return stored.status, stored.status_reason


def test_scheduled_syncs_failing_night_after_night_pause_the_connection_until_a_sync_now_succeeds(
    container: Container, connection: Connection, mock_erp: MockErp
):
    """ARSYNC_SYNC_PAUSE_AFTER_FAILURES (5): a success in between starts the count again; the
    fifth failed slot in a row pauses it, the schedule passes it by, and a fixed Sync now resumes it."""
    mock_erp.state.set_faults([Fault(endpoint="/debtors/list", status=500)])  # not transient: no retries
    for _ in range(4):
        assert container.sync.run(connection.id, trigger="schedule").status == "FAILED"
    mock_erp.state.set_faults([])
    assert container.sync.run(connection.id).status == "SUCCEEDED"
    mock_erp.state.set_faults([Fault(endpoint="/debtors/list", status=500)])
    for _ in range(4):
        assert container.sync.run(connection.id, trigger="schedule").status == "FAILED"
    assert _connection_status(container, connection.id)[0] == "FAILED"

    assert container.sync.run(connection.id, trigger="schedule").status == "FAILED"
    status, reason = _connection_status(container, connection.id)
    assert status == "PAUSED" and reason is not None
    assert reason.startswith("paused after 5 scheduled syncs in a row failed (last: ") and "Sync now" in reason
    assert container.sync.start_scheduled() == 0  # the schedule passes it by

    mock_erp.state.set_faults([])
    assert container.sync.run(connection.id, trigger="manual").status == "SUCCEEDED"
    assert _connection_status(container, connection.id) == ("ACTIVE", None)
