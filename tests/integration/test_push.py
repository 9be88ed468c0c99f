"""Outbound pushes against the mock ERP over loopback HTTP, on SQLite and PostgreSQL.

The push service here gets a recording queue, so each test runs the push job itself, when it
chooses to, and can look at the state in between.
"""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.erp.models import Connection, Push, SyncRun
from arsync.erp.port import ErpConnector
from arsync.erp.push import TASK_PUSH, PushFlows, PushOptions
from arsync.erp.sync import TASK_SYNC, SyncEngine
from arsync.errors import Conflict, PrerequisiteMissing
from arsync.jobs.queue import InProcessQueue, ProcrastinateQueue
from arsync.jobs.runner import InProcessRunner
from arsync.jobs.worker import build_app, remove_finished_jobs
from arsync.ledger import flows as ledger_flows
from arsync.ledger import schemas
from arsync.ledger import service as ledger
from arsync.ledger.models import Customer, Invoice, Payment
from arsync.mocks.erp import Fault
from arsync.notify.models import NotificationDelivery
from arsync.tenancy import service as tenancy
from arsync.tenancy.scope import Scope
from tests.conftest import MockErp
from tests.conftest import Scope as TenantScope
from tests.factories import ledger_invoice, link_to_erp
from tests.fakes import RecordingQueue


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def pushes(container: Container, queue: RecordingQueue) -> PushFlows:
    return PushFlows(
        container.session_factory, container.connector_for, queue, PushOptions(max_attempts=3, backoff_seconds=0)
    )


@pytest.fixture
def synced(container: Container, scope: TenantScope, connection: Connection) -> Scope:
    """The scope after a first sync, so its customers are linked to ERP debtors."""
    assert container.sync.run(connection.id).status == "SUCCEEDED"
    return Scope(scope.tenant_id, scope.environment_id)


def _finalized_invoice(container: Container, scope: Scope, *, linked: bool, number: str = "AR-0001") -> str:
    with transaction(container.session_factory) as session:
        if linked:
            customer_id = session.scalars(
                select(Customer.id).where(Customer.tenant_id == scope.tenant_id, Customer.erp_debtor_id.is_not(None))
            ).first()
        else:
            customer_id = ledger.create_customer(session, scope, schemas.CustomerCreate(name="Walk-in Ltd")).id
        assert customer_id is not None
        return ledger_invoice(
            session,
            scope,
            customer_id,
            number,
            description="Services",
            quantity=Decimal(2),
            unit_price=Decimal("500.25"),
        ).id


def _dispatch(container: Container, pushes: PushFlows, scope: Scope, invoice_id: str) -> Push:
    with transaction(container.session_factory) as session:
        pushes.dispatch_invoice(session, scope, invoice_id)
    return _push_of(container, invoice_id)


def _push_of(container: Container, invoice_id: str, kind: str = "invoice") -> Push:
    with container.session_factory() as session:
        push = session.scalars(select(Push).where(Push.invoice_id == invoice_id, Push.kind == kind)).one()
        session.expunge(push)
        return push


def _approve_payment(container: Container, pushes: PushFlows, scope: Scope, invoice_id: str, amount: Decimal) -> str:
    """Record and approve a cash application on the invoice; the payment's id."""
    with transaction(container.session_factory) as session:
        body = schemas.CashApplicationCreate(
            invoice_id=invoice_id, amount=amount, date=date(2026, 3, 15), reference="EFT"
        )
        application = ledger.create_cash_application(session, scope, body)
        approved = pushes.approve_cash_application(session, scope, application.id)
        assert approved.payment_id is not None
        return approved.payment_id


def _push_requests(mock_erp: MockErp, endpoint: str) -> list[dict[str, object]]:
    return [r for r in mock_erp.state.requests if r.get("endpoint") == endpoint]


def test_dispatch_records_a_pending_push_and_queues_it_once(
    container: Container, pushes: PushFlows, queue: RecordingQueue, synced: Scope
) -> None:
    invoice_id = _finalized_invoice(container, synced, linked=True)
    push = _dispatch(container, pushes, synced, invoice_id)
    assert (push.status, push.attempts, push.erp_id) == ("PENDING", 0, None)
    assert queue.jobs == [(TASK_PUSH, {"push_id": push.id}, None)]

    _dispatch(container, pushes, synced, invoice_id)  # dispatching again records nothing new
    assert len(queue.jobs) == 1


def test_invoice_push_stores_the_erp_id_and_is_never_sent_twice(
    container: Container, pushes: PushFlows, mock_erp: MockErp, synced: Scope
) -> None:
    invoice_id = _finalized_invoice(container, synced, linked=True)
    push = _dispatch(container, pushes, synced, invoice_id)
    before = mock_erp.data.stats()["pushedInvoices"]

    assert pushes.execute(push.id) == "SUCCEEDED"
    done = _push_of(container, invoice_id)
    assert done.erp_id and done.erp_id.startswith("INV-ERP-") and done.attempts == 1 and done.succeeded_at
    with container.session_factory() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None and invoice.erp_invoice_id == done.erp_id
    assert mock_erp.data.stats()["pushedInvoices"] == before + 1

    sent = len(_push_requests(mock_erp, "/invoices/push"))
    assert pushes.execute(push.id) == "SUCCEEDED"
    assert len(_push_requests(mock_erp, "/invoices/push")) == sent, "a SUCCEEDED push was sent again"


def test_invoice_push_body_follows_the_contract(
    container: Container, pushes: PushFlows, mock_erp: MockErp, synced: Scope
) -> None:
    invoice_id = _finalized_invoice(container, synced, linked=True, number="AR-0042")
    pushes.execute(_dispatch(container, pushes, synced, invoice_id).id)
    body = _push_requests(mock_erp, "/invoices/push")[-1]["body"]
    assert isinstance(body, dict)
    assert body["schemaVersion"] == "1" and body["invoiceNumber"] == "AR-0042" and body["status"] == "AUTHORISED"
    assert str(body["erpDebtorId"]).startswith("DEB-")
    assert body["lines"] == [{"description": "Services", "quantity": 2, "unitPrice": 500.25, "amount": 1000.5}]


def test_an_invoice_of_an_unlinked_customer_is_not_dispatched_and_the_refusal_names_the_fix(
    container: Container, pushes: PushFlows, queue: RecordingQueue, synced: Scope
) -> None:
    invoice_id = _finalized_invoice(container, synced, linked=False)
    with pytest.raises(PrerequisiteMissing) as refused, transaction(container.session_factory) as session:
        pushes.dispatch_invoice(session, synced, invoice_id)
    assert "is not in the ERP yet" in refused.value.message
    assert "/merge" in refused.value.hint and "/erp-debtor" in refused.value.hint
    with container.session_factory() as session:
        assert session.get(Invoice, invoice_id).dispatched_at is None  # type: ignore[union-attr]
        assert session.scalar(select(Push).where(Push.invoice_id == invoice_id)) is None
    assert not queue.jobs


def test_a_push_recorded_for_an_unlinked_customer_fails_with_a_reason_and_sends_nothing(
    container: Container, pushes: PushFlows, mock_erp: MockErp, synced: Scope
) -> None:
    """Dispatch refuses such an invoice; a push recorded before it did still fails plainly."""
    invoice_id = _finalized_invoice(container, synced, linked=False)
    with transaction(container.session_factory) as session:
        push = Push(tenant_id=synced.tenant_id, environment_id=synced.environment_id, kind="invoice",
                    invoice_id=invoice_id)  # fmt: skip
        session.add(push)
    assert pushes.execute(push.id) == "FAILED"
    failed = _push_of(container, invoice_id)
    assert failed.last_error is not None
    assert failed.last_error["kind"] == "PrerequisiteMissing"
    assert "debtor not linked" in failed.last_error["message"] and "Link to an ERP debtor" in failed.last_error["hint"]
    assert _push_requests(mock_erp, "/invoices/push") == []

    # Linking the customer to its debtor sends it again by itself.
    with transaction(container.session_factory) as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        debtor_id = session.scalars(
            select(Customer.id).where(Customer.tenant_id == synced.tenant_id, Customer.erp_debtor_id.is_not(None))
        ).first()
        assert debtor_id is not None
        ledger_flows.merge_customer(session, synced, invoice.customer_id, debtor_id, pushes=pushes)
    assert _push_of(container, invoice_id).status == "PENDING"
    assert pushes.execute(push.id) == "SUCCEEDED"
    assert len(_push_requests(mock_erp, "/invoices/push")) == 1


def test_payment_push_carries_the_bank_account_code_and_stores_the_erp_id(
    container: Container, pushes: PushFlows, queue: RecordingQueue, mock_erp: MockErp, synced: Scope
) -> None:
    invoice_id = _finalized_invoice(container, synced, linked=True)
    pushes.execute(_dispatch(container, pushes, synced, invoice_id).id)
    payment_id = _approve_payment(container, pushes, synced, invoice_id, Decimal("400.10"))
    push = _push_of(container, invoice_id, kind="payment")
    assert push.payment_id == payment_id and queue.jobs[-1] == (TASK_PUSH, {"push_id": push.id}, None)

    assert pushes.execute(push.id) == "SUCCEEDED"
    body = _push_requests(mock_erp, "/payments/push")[-1]["body"]
    assert isinstance(body, dict)
    assert body["bankAccountCode"] == "090" and body["amount"] == 400.1 and body["paymentDate"] == "2026-03-15"
    with container.session_factory() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None and payment.erp_payment_id == _push_of(container, invoice_id, "payment").erp_id


def test_payment_push_for_an_invoice_not_in_the_erp_fails_with_a_reason_then_goes_after_the_invoice(
    container: Container, pushes: PushFlows, queue: RecordingQueue, mock_erp: MockErp, synced: Scope
) -> None:
    invoice_id = _finalized_invoice(container, synced, linked=True)
    _approve_payment(container, pushes, synced, invoice_id, Decimal(10))
    push = _push_of(container, invoice_id, kind="payment")
    assert pushes.execute(push.id) == "FAILED"
    failed = _push_of(container, invoice_id, kind="payment")
    assert failed.last_error and "not in the ERP" in failed.last_error["message"]
    assert _push_requests(mock_erp, "/payments/push") == []

    # Once the invoice reaches the ERP, the waiting payment is queued again on its own.
    invoice_push = _dispatch(container, pushes, synced, invoice_id)
    assert pushes.execute(invoice_push.id) == "SUCCEEDED"
    released = _push_of(container, invoice_id, kind="payment")
    assert (released.status, released.attempts, released.manual_retries) == ("PENDING", 0, 0)
    assert queue.jobs[-1] == (TASK_PUSH, {"push_id": released.id}, None)
    assert pushes.execute(released.id) == "SUCCEEDED"
    (sent,) = _push_requests(mock_erp, "/payments/push")
    assert isinstance(sent["body"], dict) and sent["body"]["erpInvoiceId"] == _push_of(container, invoice_id).erp_id


def test_a_payment_the_erp_refused_is_not_sent_again_when_its_invoice_arrives(
    container: Container, pushes: PushFlows, synced: Scope
) -> None:
    invoice_id = _finalized_invoice(container, synced, linked=True)
    _approve_payment(container, pushes, synced, invoice_id, Decimal(10))
    refused = _push_of(container, invoice_id, kind="payment")
    with transaction(container.session_factory) as session:
        row = session.get(Push, refused.id)
        assert row is not None
        row.status, row.last_error = "FAILED", {"kind": "RemoteError", "message": "bank account closed"}
    assert pushes.execute(_dispatch(container, pushes, synced, invoice_id).id) == "SUCCEEDED"
    assert _push_of(container, invoice_id, kind="payment").status == "FAILED"


def test_transient_failures_retry_with_backoff_then_fail_and_can_be_retried(
    container: Container, pushes: PushFlows, queue: RecordingQueue, mock_erp: MockErp, synced: Scope
) -> None:
    invoice_id = _finalized_invoice(container, synced, linked=True)
    push = _dispatch(container, pushes, synced, invoice_id)
    mock_erp.state.set_faults([Fault(endpoint="/invoices/push", status=503)])

    assert pushes.execute(push.id) == "PENDING"
    waiting = _push_of(container, invoice_id)
    assert waiting.attempts == 1 and waiting.next_attempt_at is not None
    assert waiting.last_error and waiting.last_error["kind"] == "TransientError"
    assert queue.jobs[-1] == (TASK_PUSH, {"push_id": push.id}, waiting.next_attempt_at)

    assert pushes.execute(push.id) == "PENDING"
    assert pushes.execute(push.id) == "FAILED"  # max_attempts=3
    failed = _push_of(container, invoice_id)
    assert failed.attempts == 3 and "gave up after 3 attempts" in (failed.last_error or {})["message"]
    assert mock_erp.data.stats()["pushedInvoices"] == 0

    mock_erp.state.set_faults([])
    with transaction(container.session_factory) as session:
        retried = pushes.retry(session, synced, push.id)
        assert (retried.status, retried.attempts, retried.manual_retries) == ("PENDING", 0, 1)
    assert pushes.execute(push.id) == "SUCCEEDED"
    with transaction(container.session_factory) as session, pytest.raises(Conflict) as refused:
        pushes.retry(session, synced, push.id)
    assert refused.value.code == "INVALID_STATE"


@pytest.mark.parametrize("kind", ["invoice", "payment"])
def test_an_answer_slower_than_the_timeout_is_looked_up_not_sent_again(
    container: Container, pushes: PushFlows, mock_erp: MockErp, synced: Scope, kind: str
) -> None:
    invoice_id = _finalized_invoice(container, synced, linked=True)
    push = _dispatch(container, pushes, synced, invoice_id)
    if kind == "payment":
        assert pushes.execute(push.id) == "SUCCEEDED"
        _approve_payment(container, pushes, synced, invoice_id, Decimal("250.00"))
        push = _push_of(container, invoice_id, kind)
    endpoint = f"/{kind}s/push"
    # The mock stores the record, then answers after the client's 2 s timeout, once.
    mock_erp.state.set_faults([Fault(endpoint=endpoint, delay_after=3, times=1)])
    assert pushes.execute(push.id) == "PENDING"
    waiting = _push_of(container, invoice_id, kind)
    assert waiting.attempts == 1 and waiting.last_error and waiting.last_error["kind"] == "TransientError"
    assert waiting.sending_since is None and waiting.first_sent_at is not None

    assert pushes.execute(push.id) == "SUCCEEDED"
    done = _push_of(container, invoice_id, kind)
    assert done.attempts == 2
    assert len(_push_requests(mock_erp, endpoint)) == 1, "sent again instead of found"
    stats = mock_erp.data.stats()
    assert stats["pushedInvoices"] == 1 and stats["pushedPayments"] == (1 if kind == "payment" else 0)
    assert done.erp_id == ("INV-ERP-000001" if kind == "invoice" else "PAY-ERP-000001")


def test_every_push_carries_its_own_idempotency_key_so_equal_payments_are_two(
    container: Container, pushes: PushFlows, mock_erp: MockErp, synced: Scope
) -> None:
    invoice_id = _finalized_invoice(container, synced, linked=True)
    assert pushes.execute(_dispatch(container, pushes, synced, invoice_id).id) == "SUCCEEDED"
    # Two customers' transfers of the same amount on the same day: two payments at the ERP.
    first = _approve_payment(container, pushes, synced, invoice_id, Decimal("100.00"))
    second = _approve_payment(container, pushes, synced, invoice_id, Decimal("100.00"))
    with container.session_factory() as session:
        push_ids = {p.payment_id: p.id for p in session.scalars(select(Push).where(Push.kind == "payment"))}
    for payment_id in (first, second):
        assert pushes.execute(push_ids[payment_id]) == "SUCCEEDED"
    keys = [r["idempotencyKey"] for r in _push_requests(mock_erp, "/payments/push")]
    assert keys == [f"arsync-{push_ids[first]}", f"arsync-{push_ids[second]}"]
    with container.session_factory() as session:
        erp_ids = {session.get(Payment, p).erp_payment_id for p in (first, second)}  # type: ignore[union-attr]
    assert len(erp_ids) == 2 and mock_erp.data.stats()["pushedPayments"] == 2


def test_a_key_the_middleware_remembers_is_answered_with_the_first_id(
    container: Container, pushes: PushFlows, mock_erp: MockErp, synced: Scope
) -> None:
    """A resend after an uncertain failure that the look-up could not settle goes under the same key."""
    invoice_id = _finalized_invoice(container, synced, linked=True)
    assert pushes.execute(_dispatch(container, pushes, synced, invoice_id).id) == "SUCCEEDED"
    _approve_payment(container, pushes, synced, invoice_id, Decimal("5.00"))
    push = _push_of(container, invoice_id, "payment")
    # The look-up's list call fails outright, then the push is sent again: the same key, one payment.
    mock_erp.state.set_faults([Fault(endpoint="/payments/push", delay_after=3, times=1)])
    assert pushes.execute(push.id) == "PENDING"
    mock_erp.state.set_faults([Fault(endpoint="/payments/list", status=503, times=50)])
    assert pushes.execute(push.id) == "PENDING"  # the look-up failed: nothing was sent
    assert len(_push_requests(mock_erp, "/payments/push")) == 1
    mock_erp.state.set_faults([])
    with transaction(container.session_factory) as session:
        row = session.get(Push, push.id)
        assert row is not None
        row.next_attempt_at = None
    mock_erp.data._pushed_payment_times[:] = [mock_erp.data._pushed_payment_times[0].replace(year=2000)]
    assert pushes.execute(push.id) == "SUCCEEDED"  # not listed any more: sent again under the key
    sent = _push_requests(mock_erp, "/payments/push")
    assert len(sent) == 2 and sent[0]["idempotencyKey"] == sent[1]["idempotencyKey"]
    assert mock_erp.data.stats()["pushedPayments"] == 1 and _push_of(container, invoice_id, "payment").attempts == 3


def test_no_connection_fails_the_push_with_a_reason(
    container: Container, pushes: PushFlows, scope: TenantScope
) -> None:
    bare = Scope(scope.tenant_id, scope.environment_id)
    invoice_id = _finalized_invoice(container, bare, linked=False)
    with container.session_factory() as session:
        customer_id = session.get(Invoice, invoice_id).customer_id  # type: ignore[union-attr]
    link_to_erp(container.session_factory, customer_id, "DEB-FROM-A-REMOVED-CONNECTION")
    push = _dispatch(container, pushes, bare, invoice_id)
    assert pushes.execute(push.id) == "FAILED"
    assert "no ERP connection" in (_push_of(container, invoice_id).last_error or {})["message"]


def test_in_process_queue_runs_jobs_only_after_commit(container: Container) -> None:
    runner = InProcessRunner(workers=1)
    queue = InProcessQueue(runner, container.session_factory)
    ran: list[str] = []
    queue.register("t", lambda item: ran.append(item))
    try:
        with container.session_factory() as session:
            with session.begin():
                queue.enqueue(session, "t", {"item": "rolled back"})
                session.rollback()
            with session.begin():
                queue.enqueue(session, "t", {"item": "committed"})
        runner.shutdown()
    finally:
        queue.close()
    assert ran == ["committed"]


def test_procrastinate_queue_inserts_the_job_in_the_callers_transaction(pg_container: Container) -> None:
    queue = ProcrastinateQueue()
    factory = pg_container.session_factory
    with factory() as session:
        with session.begin():
            queue.enqueue(session, TASK_PUSH, {"push_id": "push_rolled_back"})
            session.rollback()
        with session.begin():
            queue.enqueue(session, TASK_PUSH, {"push_id": "push_committed"}, lock="connection:x")
    with factory() as session:
        rows = session.execute(text("SELECT task_name, args, lock, status FROM procrastinate_jobs")).all()
    assert [tuple(r) for r in rows] == [(TASK_PUSH, {"push_id": "push_committed"}, "connection:x", "todo")]


def test_an_unavailable_transport_fails_the_push_visibly(
    container: Container, queue: RecordingQueue, synced: Scope
) -> None:
    def no_connector(connection: Connection) -> ErpConnector:
        raise NotImplementedError(f"transport {connection.transport!r} is not available")

    service = PushFlows(container.session_factory, no_connector, queue)
    invoice_id = _finalized_invoice(container, synced, linked=True)
    push = _dispatch(container, service, synced, invoice_id)
    assert service.execute(push.id) == "FAILED"
    error = _push_of(container, invoice_id).last_error or {}
    assert error["kind"] == "InternalError" and "not available" in error["message"]


def test_start_scheduled_queues_one_run_per_active_connection(
    container: Container, queue: RecordingQueue, connection: Connection, mock_erp: MockErp
) -> None:
    with transaction(container.session_factory) as session:
        other = tenancy.create_tenant(session, "never-checked", "prod")
    pending, _ = container.connections.save_rest(other.tenant_id, other.environment_id, mock_erp.url, None)
    assert pending.status == "PENDING"  # never health-checked: not due
    engine = SyncEngine(container.session_factory, container.connector_for, queue=queue)

    assert engine.start_scheduled() == 1
    assert engine.start_scheduled() == 0  # the run is still RUNNING: nothing new
    with container.session_factory() as session:
        runs = session.scalars(select(SyncRun).where(SyncRun.connection_id == connection.id)).all()
    assert [(r.trigger, r.status) for r in runs] == [("schedule", "RUNNING")]
    assert queue.jobs == [(TASK_SYNC, {"run_id": runs[0].id}, None)]
    assert queue.locks == [f"connection:{connection.id}"]


def test_jobs_that_ended_badly_are_removed_after_the_retention(pg_container: Container) -> None:
    """Failed jobs stay for diagnosis, then go; recent ones, waiting ones and other queues stay."""
    queue = ProcrastinateQueue()
    factory = pg_container.session_factory
    set_status = text("UPDATE procrastinate_jobs SET status = :status WHERE id = :id")
    age = text("UPDATE procrastinate_events SET at = now() - make_interval(days => :days) WHERE job_id = :id")
    with transaction(factory) as session:
        for name in ("old_failed", "old_cancelled", "new_failed", "waiting"):
            queue.enqueue(session, TASK_PUSH, {"push_id": name})
        other = session.execute(
            text("INSERT INTO procrastinate_jobs (queue_name, task_name, args, status) "
                 "VALUES ('elsewhere', 'other.task', '{}', 'failed') RETURNING id")
        ).scalar_one()  # fmt: skip
    with transaction(factory) as session:
        ids: dict[str, int] = dict(session.execute(text("SELECT args->>'push_id', id FROM procrastinate_jobs")).all())
        for name, status in (("old_failed", "failed"), ("old_cancelled", "cancelled"), ("new_failed", "failed")):
            session.execute(set_status, {"status": status, "id": ids[name]})
        for job_id, days in ((ids["old_failed"], 31), (ids["old_cancelled"], 31), (other, 90)):
            session.execute(age, {"days": days, "id": job_id})

    async def clean() -> None:
        app = build_app(pg_container.settings, pg_container.tasks)
        async with app.open_async():
            await remove_finished_jobs(app, retention_days=30)

    asyncio.run(clean())
    with factory() as session:
        left = session.execute(text("SELECT coalesce(args->>'push_id', task_name), status FROM procrastinate_jobs"))
        remaining = sorted(tuple(row) for row in left)
    assert remaining == [("new_failed", "failed"), ("other.task", "failed"), ("waiting", "todo")]


def test_a_failed_push_is_announced_to_subscribers_once(
    container: Container, queue: RecordingQueue, scope: TenantScope
) -> None:
    bare = Scope(scope.tenant_id, scope.environment_id)
    container.notifier.queue = RecordingQueue()
    announcing = PushFlows(container.session_factory, container.connector_for, queue, notifier=container.notifier)
    with transaction(container.session_factory) as session:
        container.notifier.add_endpoint(session, bare, "webhook", "https://ops.example.com/h", ["push.failed"], None)
    invoice_id = _finalized_invoice(container, bare, linked=False)
    with container.session_factory() as session:
        customer_id = session.get(Invoice, invoice_id).customer_id  # type: ignore[union-attr]
    link_to_erp(container.session_factory, customer_id, "DEB-WITHOUT-A-CONNECTION")
    push = _dispatch(container, announcing, bare, invoice_id)
    assert announcing.execute(push.id) == "FAILED"
    assert announcing.execute(push.id) == "FAILED"  # a second run of the job announces nothing more
    with container.session_factory() as session:
        [delivery] = session.scalars(select(NotificationDelivery)).all()
    data = delivery.payload["data"]
    assert delivery.event_type == "push.failed" and data["pushId"] == push.id and data["invoiceId"] == invoice_id
    assert "no ERP connection" in data["error"]["message"] and set(data["error"]) <= {"kind", "code", "message", "hint"}
