"""``arsync worker`` processes on PostgreSQL: crashes, the schedule and mutual exclusion.

Workers are real processes, killed with SIGKILL. The mock ERP runs in this process on a
loopback port, so the test can see exactly what the middleware received.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text

from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.erp.models import Push, SyncRun
from arsync.ledger import schemas
from arsync.ledger import service as ledger
from arsync.ledger.models import Customer, Invoice
from arsync.mocks.erp import Fault, MockErpState, create_mock_erp_app
from arsync.mocks.erp_data import MockErpData
from arsync.mocks.serving import serve_in_thread
from arsync.tenancy import service as tenancy
from arsync.tenancy.scope import Scope
from tests.conftest import TEST_SECRET_KEY, MockErp, free_port
from tests.polling import eventually

ARSYNC = Path(sys.executable).with_name("arsync")


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_worker(postgres_url: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(name: str = "w", **env: str) -> Worker:
        log = tmp_path / f"worker-{name}-{len(started)}.log"
        environment = os.environ | {
            "ARSYNC_DATABASE_URL": postgres_url,
            "ARSYNC_SECRET_KEY": TEST_SECRET_KEY,
            "ARSYNC_DATA_DIR": str(tmp_path),
            "ARSYNC_WORKER_HEARTBEAT_SECONDS": "0.5",
            "ARSYNC_HTTP_TIMEOUT_SECONDS": "2",
            "ARSYNC_HTTP_BACKOFF_SECONDS": "0.05",
            "ARSYNC_PUSH_BACKOFF_SECONDS": "0.2",
            "ARSYNC_SYNC_PAGE_SIZE": "50",
        }
        environment.update(env)
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [str(ARSYNC), "worker", "--name", name, "--concurrency", "4"],
                env=environment,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(process, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60, workers: Sequence[Worker] = ()) -> None:
    eventually(condition, what, timeout, interval=0.1, explain=lambda: "\n".join(w.output()[-3000:] for w in workers))


def _scope_with_connection(container: Container, mock_url: str, environment: str = "prod") -> tuple[Scope, str]:
    with transaction(container.session_factory) as session:
        created = tenancy.create_tenant(session, f"tenant-{environment}-{time.monotonic_ns()}", environment)
    saved, _ = container.connections.save_rest(created.tenant_id, created.environment_id, mock_url, "090")
    connection = container.connections.check_health(saved.id, scope=None)
    assert connection.status == "ACTIVE"
    return Scope(created.tenant_id, created.environment_id), connection.id


def _dispatched_invoice(container: Container, scope: Scope) -> tuple[str, str]:
    """Dispatch a new invoice to a linked customer; returns (invoice id, push id)."""
    with transaction(container.session_factory) as session:
        customer_id = session.scalars(
            select(Customer.id).where(Customer.tenant_id == scope.tenant_id, Customer.erp_debtor_id.is_not(None))
        ).first()
        assert customer_id is not None
        invoice = ledger.create_invoice(
            session,
            scope,
            schemas.InvoiceCreate(
                customer_id=customer_id,
                invoice_number="AR-CRASH-1",
                issue_date=date(2026, 3, 1),
                due_date=date(2026, 3, 31),
                currency="ZAR",
                lines=[schemas.LineIn(description="Work", quantity=Decimal(1), unit_price=Decimal(100))],
            ),
        )
        ledger.finalize_invoice(session, scope, invoice.id)
        container.pushes.dispatch_invoice(session, scope, invoice.id)
        push_id = session.scalars(select(Push.id).where(Push.invoice_id == invoice.id)).one()
        return invoice.id, push_id


def _push(container: Container, push_id: str) -> Push:
    with container.session_factory() as session:
        push = session.get(Push, push_id)
        assert push is not None
        session.expunge(push)
        return push


@pytest.mark.parametrize("crash_point", ["before_send", "while_middleware_handles", "after_response"])
def test_a_worker_killed_mid_push_loses_and_duplicates_nothing(
    pg_container: Container, mock_erp: MockErp, start_worker: Callable[..., Worker], crash_point: str
) -> None:
    scope, connection_id = _scope_with_connection(pg_container, mock_erp.url)
    assert pg_container.sync.run(connection_id).status == "SUCCEEDED"
    pushed = lambda: mock_erp.data.stats()["pushedInvoices"]  # noqa: E731

    if crash_point == "before_send":
        first = start_worker("first", ARSYNC_FAILPOINTS="push.before_send")
        invoice_id, push_id = _dispatched_invoice(pg_container, scope)
        wait_for(lambda: "failpoint push.before_send reached" in first.output(), "the failpoint", workers=[first])
        assert pushed() == 0
    elif crash_point == "while_middleware_handles":
        # The mock stores the invoice, then holds the answer back.
        mock_erp.state.set_faults([Fault(endpoint="/invoices/push", delay_after=8, times=1)])
        first = start_worker("first")
        invoice_id, push_id = _dispatched_invoice(pg_container, scope)
        wait_for(lambda: pushed() == 1, "the middleware to store the invoice", workers=[first])
    else:
        first = start_worker("first", ARSYNC_FAILPOINTS="push.after_response")
        invoice_id, push_id = _dispatched_invoice(pg_container, scope)
        wait_for(lambda: "failpoint push.after_response reached" in first.output(), "the failpoint", workers=[first])
        assert pushed() == 1

    first.kill()
    assert _push(pg_container, push_id).status == "PENDING"

    second = start_worker("second")
    wait_for(lambda: _push(pg_container, push_id).status != "PENDING", "the push to finish", workers=[second])
    push = _push(pg_container, push_id)
    assert push.status == "SUCCEEDED", push.last_error
    assert pushed() == 1, "the ERP holds a duplicate invoice"
    with pg_container.session_factory() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None and invoice.erp_invoice_id == push.erp_id


def test_three_workers_sync_every_due_connection_exactly_once(
    pg_container: Container, start_worker: Callable[..., Worker]
) -> None:
    state = MockErpState(MockErpData(debtors=10, invoices=20, payments=10, seed=5))
    with serve_in_thread(create_mock_erp_app(state)) as mock:
        connection_ids = [_scope_with_connection(pg_container, mock.url, f"env{n}")[1] for n in range(30)]
        now = datetime.now(UTC)
        # A daily slot that has just passed: each worker, on start, defers the slot it missed
        # (Procrastinate looks back up to ten minutes); the database lets only one through.
        cron = f"{now.minute} {now.hour} * * *"
        workers = [start_worker(f"w{n}", ARSYNC_SYNC_CRON=cron) for n in range(3)]

        def finished() -> int:
            with pg_container.session_factory() as session:
                return session.scalar(select(func.count()).where(SyncRun.status != "RUNNING")) or 0

        wait_for(lambda: finished() >= 30, "30 scheduled syncs", timeout=120, workers=workers)
        time.sleep(2)  # room for any duplicate to show up
        with pg_container.session_factory() as session:
            runs = session.execute(select(SyncRun.connection_id, SyncRun.trigger, SyncRun.status)).all()
            # Only this schedule's slots: the daily job clean-up has its own and may be due too.
            slots = session.scalar(
                text("SELECT count(*) FROM procrastinate_periodic_defers WHERE periodic_id = 'active-connections'")
            )
        per_connection = {cid: [r for r in runs if r.connection_id == cid] for cid in connection_ids}
        assert all(len(r) == 1 for r in per_connection.values()), {k: len(v) for k, v in per_connection.items()}
        assert {(r.trigger, r.status) for r in runs} == {("schedule", "SUCCEEDED")}
        assert slots == 1


def test_worker_refuses_sqlite(tmp_path: Path) -> None:
    environment = os.environ | {"ARSYNC_DATA_DIR": str(tmp_path), "ARSYNC_DATABASE_URL": ""}
    result = subprocess.run([str(ARSYNC), "worker"], env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "needs PostgreSQL" in result.stderr


def test_cli_sync_queue_hands_the_run_to_a_worker(
    pg_container: Container, mock_erp: MockErp, start_worker: Callable[..., Worker], postgres_url: str, tmp_path: Path
) -> None:
    _, connection_id = _scope_with_connection(pg_container, mock_erp.url)
    worker = start_worker("w")
    environment = os.environ | {
        "ARSYNC_DATABASE_URL": postgres_url,
        "ARSYNC_SECRET_KEY": TEST_SECRET_KEY,
        "ARSYNC_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [str(ARSYNC), "sync", connection_id, "--queue", "--json"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "RUNNING" and run["trigger"] == "cli"
    wait_for(lambda: _run_status(pg_container, run["id"]) != "RUNNING", "the queued run", workers=[worker])
    assert _run_status(pg_container, run["id"]) == "SUCCEEDED"


def _run_status(container: Container, run_id: str) -> str:
    with container.session_factory() as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        return run.status


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``GET /metrics``, read with prometheus-client's own parser."""
    answer = httpx.get(f"{url}/metrics", timeout=10)
    answer.raise_for_status()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_metrics_add_up_what_two_workers_did(
    pg_container: Container, mock_erp: MockErp, start_worker: Callable[..., Worker], postgres_url: str, tmp_path: Path
) -> None:
    """A sync and a push run by two ``arsync worker`` processes show in ``arsync serve``'s
    /metrics, through prometheus-client's multiprocess mode (one directory for all three)."""
    shared = tmp_path / "metrics"
    shared.mkdir()
    scope, connection_id = _scope_with_connection(pg_container, mock_erp.url)
    workers = [start_worker(name, PROMETHEUS_MULTIPROC_DIR=str(shared)) for name in ("w1", "w2")]
    port = free_port()
    environment = os.environ | {
        "ARSYNC_DATABASE_URL": postgres_url,
        "ARSYNC_SECRET_KEY": TEST_SECRET_KEY,
        "ARSYNC_DATA_DIR": str(tmp_path),
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as handle:
        server = subprocess.Popen(
            [str(ARSYNC), "serve", "--no-worker", "--port", str(port)], env=environment, stdout=handle,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{url}/api/v1/health"), "arsync serve", workers=[Worker(server, log)])
        before = _scrape(url)
        assert before.get(("arsync_sync_runs_total", (("status", "SUCCEEDED"), ("trigger", "cli")))) is None

        queued = subprocess.run([str(ARSYNC), "sync", connection_id, "--queue", "--json"], env=environment,
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert queued.returncode == 0, queued.stderr
        run_id = json.loads(queued.stdout)["id"]
        wait_for(lambda: _run_status(pg_container, run_id) == "SUCCEEDED", "the queued sync", workers=workers)
        _, push_id = _dispatched_invoice(pg_container, scope)
        wait_for(lambda: _push(pg_container, push_id).status == "SUCCEEDED", "the push", workers=workers)

        after = _scrape(url)
    finally:
        server.terminate()
        server.wait(timeout=15)
    assert after[("arsync_sync_runs_total", (("status", "SUCCEEDED"), ("trigger", "cli")))] == 1
    assert after[("arsync_sync_records_total", (("entity", "invoices"), ("outcome", "created")))] == 230
    assert after[("arsync_sync_duration_seconds_count", (("status", "SUCCEEDED"),))] == 1
    assert after[("arsync_pushes_total", (("kind", "invoice"), ("status", "SUCCEEDED")))] == 1
    assert after[("arsync_push_latency_seconds_count", (("kind", "invoice"),))] == 1
    list_pages = -(-120 // 50) + -(-230 // 50) + -(-180 // 50)  # the mock ERP's debtors, invoices, payments
    assert after[("arsync_erp_calls_total", (("erp", "rest"), ("outcome", "2xx")))] >= list_pages + 1  # and the push
