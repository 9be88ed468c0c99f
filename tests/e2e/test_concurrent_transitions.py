"""Every state transition, asked for by 20 processes at the same moment, on PostgreSQL.

Each request runs in its own forked process with its own database connections, released
together by a barrier: what a double click, a retried HTTP request or several API servers
do. Exactly one may win; the others get 409 INVALID_STATE, and nothing is recorded twice.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from arsync.bootstrap import Container, bootstrap
from arsync.db import transaction
from arsync.erp.models import Push
from arsync.erp.push import TASK_PUSH
from arsync.errors import Conflict
from arsync.ledger import schemas
from arsync.ledger import service as ledger
from arsync.ledger.models import CashApplication, Invoice, Payment
from arsync.nomod import service as nomod_service
from arsync.nomod.models import EntityIntegrationMapping
from arsync.nomod.repository import CUSTOMER
from arsync.tenancy import service as tenancy
from arsync.tenancy.scope import Scope
from tests.conftest import make_settings
from tests.factories import ledger_invoice

PROCESSES = 20
Action = Callable[[Container, int], Any]


@pytest.fixture
def race(postgres_url: str, tmp_path: Path) -> Iterator[Callable[[Action], Counter[str]]]:
    """``race(action)`` runs ``action(container, n)`` in processes n = 0‥19 at once; counts of outcomes."""
    context = multiprocessing.get_context("fork")

    def child(action: Action, number: int, barrier: Any, results: Any) -> None:
        app = bootstrap(make_settings(postgres_url, tmp_path), upgrade_schema=False)
        try:
            barrier.wait(timeout=60)
            action(app, number)
            results.put("ok")
        except Conflict as exc:
            results.put(f"409 {exc.code}")
        except Exception:
            results.put("error " + traceback.format_exc())
        finally:
            app.close()

    def run(action: Action) -> Counter[str]:
        barrier = context.Barrier(PROCESSES)
        results = context.Queue()
        processes = [context.Process(target=child, args=(action, n, barrier, results)) for n in range(PROCESSES)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(timeout=30)
        assert not [o for o in outcomes if o.startswith("error")], outcomes
        return Counter(outcomes)

    yield run


def _scope(app: Container) -> Scope:
    with transaction(app.session_factory) as session:
        created = tenancy.create_tenant(session, "racing", "prod")
    return Scope(created.tenant_id, created.environment_id)


def _invoice(app: Container, scope: Scope, *, finalized: bool) -> str:
    with transaction(app.session_factory) as session:
        customer = ledger.create_customer(session, scope, schemas.CustomerCreate(name="Acme"))
        customer.erp_debtor_id = "DEB-ACME"  # as a sync links it: only then can its invoices be dispatched
        session.flush()
        return ledger_invoice(
            session, scope, customer.id, "RACE-1", currency="USD", unit_price=Decimal(100), finalize=finalized
        ).id


def _cash_application(app: Container, scope: Scope, invoice_id: str) -> str:
    with transaction(app.session_factory) as session:
        body = schemas.CashApplicationCreate(
            invoice_id=invoice_id, amount=Decimal("40.00"), date=date(2026, 3, 5), reference="EFT"
        )
        return ledger.create_cash_application(session, scope, body).id


def _count(app: Container, model: type[Any], *where: Any) -> int:
    with app.session_factory() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_twenty_approvals_of_one_cash_application_record_one_payment(
    pg_container: Container, race: Callable[[Action], Counter[str]]
) -> None:
    scope = _scope(pg_container)
    invoice_id = _invoice(pg_container, scope, finalized=True)
    application_id = _cash_application(pg_container, scope, invoice_id)

    def approve(app: Container, _: int) -> None:
        with transaction(app.session_factory) as session:
            app.pushes.approve_cash_application(session, scope, application_id)

    assert race(approve) == Counter({"ok": 1, "409 INVALID_STATE": 19})
    assert _count(pg_container, Payment, Payment.invoice_id == invoice_id) == 1
    assert _count(pg_container, Push, Push.kind == "payment", Push.invoice_id == invoice_id) == 1
    with pg_container.session_factory() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None and invoice.amount_outstanding == Decimal("60.00")


def test_approvals_racing_rejections_settle_one_way(
    pg_container: Container, race: Callable[[Action], Counter[str]]
) -> None:
    scope = _scope(pg_container)
    invoice_id = _invoice(pg_container, scope, finalized=True)
    application_id = _cash_application(pg_container, scope, invoice_id)

    def approve_or_reject(app: Container, number: int) -> None:
        with transaction(app.session_factory) as session:
            if number % 2:
                app.pushes.approve_cash_application(session, scope, application_id)
            else:
                ledger.reject_cash_application(session, scope, application_id)

    assert race(approve_or_reject) == Counter({"ok": 1, "409 INVALID_STATE": 19})
    with pg_container.session_factory() as session:
        application = session.get(CashApplication, application_id)
        assert application is not None
    payments = _count(pg_container, Payment, Payment.invoice_id == invoice_id)
    assert (application.status, payments) in {("APPROVED", 1), ("REJECTED", 0)}


@pytest.mark.parametrize("transition", ["finalize", "void"])
def test_twenty_finalizes_or_voids_give_one_success(
    pg_container: Container, race: Callable[[Action], Counter[str]], transition: str
) -> None:
    scope = _scope(pg_container)
    invoice_id = _invoice(pg_container, scope, finalized=False)
    change = ledger.finalize_invoice if transition == "finalize" else ledger.void_invoice

    def act(app: Container, _: int) -> None:
        with transaction(app.session_factory) as session:
            change(session, scope, invoice_id)

    assert race(act) == Counter({"ok": 1, "409 INVALID_STATE": 19})


def test_twenty_dispatches_record_one_push(pg_container: Container, race: Callable[[Action], Counter[str]]) -> None:
    scope = _scope(pg_container)
    invoice_id = _invoice(pg_container, scope, finalized=True)

    def dispatch(app: Container, _: int) -> None:
        with transaction(app.session_factory) as session:
            app.pushes.dispatch_invoice(session, scope, invoice_id)

    # Dispatching is safe to repeat: every call answers with the dispatched invoice.
    assert race(dispatch) == Counter({"ok": PROCESSES})
    assert _count(pg_container, Push, Push.kind == "invoice", Push.invoice_id == invoice_id) == 1


def test_twenty_retries_of_a_failed_push_queue_it_once(
    pg_container: Container, race: Callable[[Action], Counter[str]]
) -> None:
    scope = _scope(pg_container)
    invoice_id = _invoice(pg_container, scope, finalized=True)
    with transaction(pg_container.session_factory) as session:
        pg_container.pushes.dispatch_invoice(session, scope, invoice_id)
        push = session.scalars(select(Push).where(Push.invoice_id == invoice_id)).one()
        push.status, push.last_error = "FAILED", {"kind": "RemoteError", "message": "refused"}
        push_id = push.id

    def retry(app: Container, _: int) -> None:
        with transaction(app.session_factory) as session:
            app.pushes.retry(session, scope, push_id)

    assert race(retry) == Counter({"ok": 1, "409 INVALID_STATE": 19})
    with pg_container.session_factory() as session:
        retried = session.get(Push, push_id)
        assert retried is not None and retried.status == "PENDING" and retried.manual_retries == 1
        jobs = session.scalar(
            text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task AND args->>'push_id' = :id"),
            {"task": TASK_PUSH, "id": push_id},
        )
        assert jobs == 2  # the dispatch's and one retry's


def test_twenty_rejections_of_one_cash_application_give_one_success(
    pg_container: Container, race: Callable[[Action], Counter[str]]
) -> None:
    scope = _scope(pg_container)
    invoice_id = _invoice(pg_container, scope, finalized=True)
    application_id = _cash_application(pg_container, scope, invoice_id)

    def reject(app: Container, _: int) -> None:
        with transaction(app.session_factory) as session:
            ledger.reject_cash_application(session, scope, application_id)

    assert race(reject) == Counter({"ok": 1, "409 INVALID_STATE": 19})
    assert _count(pg_container, Payment, Payment.invoice_id == invoice_id) == 0


def test_twenty_unlinks_of_a_nomod_customer_give_one_success(
    pg_container: Container, race: Callable[[Action], Counter[str]]
) -> None:
    scope = _scope(pg_container)
    with transaction(pg_container.session_factory) as session:
        customer = ledger.create_customer(session, scope, schemas.CustomerCreate(name="Linked", email="l@example.com"))
        session.flush()
        session.add(nomod_service.new_mapping(scope, CUSTOMER, customer.id, "nomod-cust-1"))
        customer_id = customer.id

    def unlink(app: Container, _: int) -> None:
        app.nomod.unlink_customer(scope, customer_id)

    assert race(unlink) == Counter({"ok": 1, "409 INVALID_STATE": 19})
    assert _count(pg_container, EntityIntegrationMapping, EntityIntegrationMapping.entity_id == customer_id) == 0
