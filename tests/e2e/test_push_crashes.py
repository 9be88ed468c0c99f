"""A process killed with SIGKILL in the middle of a push, ten times at each point, on PostgreSQL.

The push runs in a forked process with its own database connections, exactly as a worker
runs the push job; the test kills it at one point, then lets the push run again. The mock
ERP runs in this process on a loopback port, so the test sees every record the ERP holds.
It ignores Idempotency-Key here, so nothing but arsync's own look-up keeps a payment single.

Points: the attempt committed but nothing sent; the ERP holding the request, not yet stored;
the ERP having stored it but not answered; the answer received but not stored by arsync.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from arsync.bootstrap import Container, bootstrap
from arsync.db import transaction
from arsync.erp.models import Push
from arsync.ledger import schemas
from arsync.ledger import service as ledger
from arsync.ledger.models import Customer, Invoice, Payment
from arsync.mocks.erp import Fault, MockErpState, create_mock_erp_app
from arsync.mocks.erp_data import MockErpData
from arsync.mocks.serving import serve_in_thread
from arsync.tenancy import service as tenancy
from arsync.tenancy.scope import Scope
from tests.conftest import MockErp, make_settings
from tests.factories import ledger_invoice
from tests.polling import eventually

TRIALS = 10
POINTS = ["before_send", "while_erp_holds_it", "after_erp_stored_it", "after_response"]
HELD_SECONDS = 1.5  # how long the ERP holds a request before (or after) storing it


@pytest.fixture
def forgetful_erp() -> Iterator[MockErp]:
    state = MockErpState(MockErpData(debtors=5, invoices=5, payments=0, seed=9),
                         breakages=frozenset({"ignore-idempotency-key"}))  # fmt: skip
    with serve_in_thread(create_mock_erp_app(state)) as server:
        yield MockErp(state, server)


@pytest.fixture
def children() -> Iterator[list[int]]:
    """Pids of forked pushers; any still alive when the test ends is killed (it would hold locks)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            _kill(pid)


def _said(log: Path, text: str) -> Callable[[], bool]:
    return lambda: log.exists() and text in log.read_text()


def _above(count: Callable[[], int], floor: int) -> Callable[[], bool]:
    return lambda: count() > floor


def _equal(count: Callable[[], int], target: int) -> Callable[[], bool]:
    return lambda: count() == target


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    eventually(condition, what, timeout, interval=0.02)


def _setup(app: Container, erp: MockErp) -> tuple[Scope, str]:
    with transaction(app.session_factory) as session:
        created = tenancy.create_tenant(session, "crashing", "prod")
    scope = Scope(created.tenant_id, created.environment_id)
    saved, _ = app.connections.save_rest(scope.tenant_id, scope.environment_id, erp.url, "090")
    connection = app.connections.check_health(saved.id, scope=None)
    assert app.sync.run(connection.id).status == "SUCCEEDED"
    with app.session_factory() as session:
        customer_id = session.scalars(select(Customer.id).where(Customer.erp_debtor_id.is_not(None))).first()
    assert customer_id is not None
    return scope, customer_id


def _invoice(app: Container, scope: Scope, customer_id: str, number: str) -> str:
    with transaction(app.session_factory) as session:
        invoice = ledger_invoice(session, scope, customer_id, number)
        app.pushes.dispatch_invoice(session, scope, invoice.id)
        return session.scalars(select(Push.id).where(Push.invoice_id == invoice.id)).one()


def _payment(app: Container, scope: Scope, invoice_id: str) -> str:
    """Every trial pays the same amount on the same day: only the push tells the payments apart."""
    with transaction(app.session_factory) as session:
        body = schemas.CashApplicationCreate(
            invoice_id=invoice_id, amount=Decimal("10.00"), date=date(2026, 3, 15), reference="EFT"
        )
        application = ledger.create_cash_application(session, scope, body)
        approved = app.pushes.approve_cash_application(session, scope, application.id)
        return session.scalars(select(Push.id).where(Push.payment_id == approved.payment_id)).one()


def _run_push_in_a_process(postgres_url: str, tmp_path: Path, push_id: str, failpoint: str | None, log: Path) -> int:
    """Fork a process that executes the push; its pid."""
    pid = os.fork()
    if pid == 0:  # the child: a worker of its own, with a failpoint if asked
        code = 1
        try:
            sys.stderr = log.open("w", buffering=1)
            settings = make_settings(postgres_url, tmp_path, failpoints=failpoint or "")
            worker = bootstrap(settings, upgrade_schema=False)
            worker.pushes.execute(push_id)
            code = 0
        finally:
            os._exit(code)
    return pid


def _requests_to(erp: MockErp, endpoint: str) -> int:
    return sum(r["endpoint"] == endpoint for r in erp.state.requests)


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _push(app: Container, push_id: str) -> Push:
    with app.session_factory() as session:
        push = session.get(Push, push_id)
        assert push is not None
        session.expunge(push)
        return push


@pytest.mark.parametrize("kind", ["payment", "invoice"])
@pytest.mark.parametrize("point", POINTS)
def test_a_push_killed_mid_flight_lands_exactly_once(
    pg_container: Container,
    forgetful_erp: MockErp,
    postgres_url: str,
    tmp_path: Path,
    children: list[int],
    point: str,
    kind: str,
) -> None:
    scope, customer_id = _setup(pg_container, forgetful_erp)
    erp = forgetful_erp.data
    stored = (lambda: erp.stats()["pushedPayments"]) if kind == "payment" else (lambda: erp.stats()["pushedInvoices"])
    endpoint = f"/{kind}s/push"
    paid_invoice_id = ""
    at_start = stored()
    if kind == "payment":
        first = _invoice(pg_container, scope, customer_id, "CRASH-PAID")
        assert pg_container.pushes.execute(first) == "SUCCEEDED"
        paid_invoice_id = _push(pg_container, first).invoice_id

    for trial in range(TRIALS):
        push_id = (_payment(pg_container, scope, paid_invoice_id) if kind == "payment"
                   else _invoice(pg_container, scope, customer_id, f"CRASH-{point}-{trial}"))  # fmt: skip
        before = stored()
        log = tmp_path / f"push-{trial}.log"
        sent = _requests_to(forgetful_erp, endpoint)
        failpoint = {"before_send": "push.before_send", "after_response": "push.after_response"}.get(point)
        if point == "while_erp_holds_it":
            forgetful_erp.state.set_faults([Fault(endpoint=endpoint, delay=HELD_SECONDS, times=1)])
        elif point == "after_erp_stored_it":
            forgetful_erp.state.set_faults([Fault(endpoint=endpoint, delay_after=HELD_SECONDS, times=1)])
        children.append(pid := _run_push_in_a_process(postgres_url, tmp_path, push_id, failpoint, log))
        if failpoint:
            _wait(_said(log, f"failpoint {failpoint} reached"), "the failpoint")
        elif point == "while_erp_holds_it":
            _wait(_above(lambda: _requests_to(forgetful_erp, endpoint), sent), "the request to reach the ERP")
        else:
            _wait(_equal(stored, before + 1), "the ERP to store it")
        _kill(pid)
        killed = _push(pg_container, push_id)
        assert killed.status == "PENDING" and killed.sending_since is not None and killed.attempts == 1

        assert pg_container.pushes.execute(push_id) == "SUCCEEDED", _push(pg_container, push_id).last_error
        done = _push(pg_container, push_id)
        assert done.attempts == 2 and done.sending_since is None
        assert stored() == before + 1, f"trial {trial}: the ERP holds {stored() - before} records for one push"
        with pg_container.session_factory() as session:
            if kind == "payment":
                erp_id = session.scalar(select(Payment.erp_payment_id).where(Payment.id == done.payment_id))
            else:
                erp_id = session.scalar(select(Invoice.erp_invoice_id).where(Invoice.id == done.invoice_id))
            assert erp_id == done.erp_id
    time.sleep(HELD_SECONDS + 0.3)  # room for a held request to be stored late
    assert stored() - at_start == TRIALS
    with pg_container.session_factory() as session:
        if kind == "payment":
            ids = session.scalars(select(Payment.erp_payment_id).where(Payment.invoice_id == paid_invoice_id)).all()
            assert len(ids) == TRIALS and len(set(ids)) == TRIALS, "two payments share one ERP payment"
