"""Reconciliation runs on SQLite and PostgreSQL: what the ERP deleted, changed without a
timestamp or listed again is found, counted and totalled, and the ledger then equals the ERP."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

from sqlalchemy import select

from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.erp.models import Connection, SyncRun
from arsync.erp.tasks import TASK_SCHEDULED_RECONCILE, reconcile_every_connection
from arsync.ledger import reports
from arsync.ledger.models import Invoice, Payment
from arsync.mocks.erp_data import UNMATCHED_PAYMENT_EVERY, debtor_id, invoice_id, payment_id
from arsync.tenancy import service as tenancy
from arsync.tenancy.scope import Scope as TenantScope
from tests.conftest import MockErp, Scope

DELETED_INVOICES = [0, 1, 2]
CHANGED_INVOICES = [10, 11, 12, 13]


def _owed_by_currency(mock_erp: MockErp, deleted: set[int]) -> dict[str, Decimal]:
    """What the ERP says is owed: each listed invoice's amountOutstanding, by currency."""
    owed: dict[str, Decimal] = defaultdict(Decimal)
    for index in range(mock_erp.data.invoices):
        record = mock_erp.data.invoice(index)
        if index not in deleted and record["amountOutstanding"] > 0:
            owed[record["currency"]] += record["amountOutstanding"]
    return dict(owed)


def _aging_totals(container: Container, scope: Scope) -> dict[str, Decimal]:
    with container.read_session_factory() as session:
        rows = reports.aging_by_currency(session, TenantScope(scope.tenant_id, scope.environment_id), date(2026, 6, 1))
    return {row.currency: row.total for row in rows}


def test_a_reconciliation_finds_deletions_silent_changes_and_returns(
    container: Container, scope: Scope, connection: Connection, mock_erp: MockErp
):
    assert container.sync.run(connection.id).status == "SUCCEEDED"
    referenced = {mock_erp.data.invoice(i)["erpDebtorId"] for i in range(mock_erp.data.invoices)}
    lone_debtor = next(i for i in range(mock_erp.data.debtors) if debtor_id(i) not in referenced)
    deleted_payments = [i for i in range(3, 10) if i % UNMATCHED_PAYMENT_EVERY != UNMATCHED_PAYMENT_EVERY - 1][:2]
    mock_erp.data.delete("invoices", DELETED_INVOICES)
    mock_erp.data.delete("payments", deleted_payments)
    mock_erp.data.delete("debtors", [lone_debtor])
    mock_erp.data.change_unannounced("invoices", CHANGED_INVOICES)

    unaware = container.sync.run(connection.id)  # an incremental sees none of it
    assert unaware.status == "SUCCEEDED" and unaware.stats["invoices"]["updated"] == 0
    assert _aging_totals(container, scope) != _owed_by_currency(mock_erp, set(DELETED_INVOICES))

    run = container.sync.run(connection.id, kind="reconcile")
    assert run.status == "SUCCEEDED", run.error
    assert run.kind == "reconcile" and run.full and run.report is not None
    report = run.report
    invoices, payments, debtors = (report["entities"][e] for e in ("invoices", "payments", "debtors"))
    assert (invoices["missingInErp"], invoices["differing"], invoices["returned"]) == (3, 4, 0)
    assert (invoices["erp"], invoices["ledgerBefore"], invoices["ledgerAfter"]) == (227, 230, 227)
    assert sorted(invoices["missingExamples"]) == sorted(invoice_id(i) for i in DELETED_INVOICES)
    assert payments["missingInErp"] == 2 and payments["missingExamples"] == [payment_id(i) for i in deleted_payments]
    assert debtors["missingInErp"] == 1 and debtors["missingExamples"] == [debtor_id(lone_debtor)]
    assert report["ledgerEqualsErp"] is True, __import__("json").dumps(report, indent=1)
    erp_owed = _owed_by_currency(mock_erp, set(DELETED_INVOICES))
    assert _aging_totals(container, scope) == erp_owed  # the ghosts are not owed; the silent changes are in
    for currency, row in report["invoicesByCurrency"].items():
        assert row["erp"] == row["ledgerAfter"], currency

    with container.read_session_factory() as session:
        ghosts = session.scalars(select(Invoice).where(Invoice.erp_deleted_at.is_not(None))).all()
        assert sorted(str(g.erp_invoice_id) for g in ghosts) == sorted(invoice_id(i) for i in DELETED_INVOICES)
        assert all(g.erp_deleted_at == run.finished_at for g in ghosts)  # kept, marked, not deleted
        gone = session.scalars(select(Payment.erp_deleted_at).where(
            Payment.erp_payment_id.in_([payment_id(i) for i in deleted_payments]))).all()  # fmt: skip
        assert len(gone) == 2 and None not in gone

    mock_erp.data.restore("invoices", [DELETED_INVOICES[0]])
    again = container.sync.run(connection.id, kind="reconcile")
    assert again.status == "SUCCEEDED" and again.report is not None
    assert again.report["entities"]["invoices"]["returned"] == 1
    assert again.report["entities"]["invoices"]["missingInErp"] == 0
    assert again.report["entities"]["invoices"]["differing"] == 0
    assert again.report["ledgerEqualsErp"] is True
    with container.read_session_factory() as session:
        back = session.scalar(select(Invoice).where(Invoice.erp_invoice_id == invoice_id(DELETED_INVOICES[0])))
        assert back is not None and back.erp_deleted_at is None
    assert _aging_totals(container, scope) == _owed_by_currency(mock_erp, set(DELETED_INVOICES[1:]))

    after = container.sync.run(connection.id)
    assert after.status == "SUCCEEDED"
    assert all(after.stats[e]["created"] == after.stats[e]["updated"] == 0 for e in after.stats), after.stats


def test_a_reconciliation_of_a_ledger_that_equals_the_erp_says_so(
    container: Container, connection: Connection, mock_erp: MockErp
):
    assert container.sync.run(connection.id).status == "SUCCEEDED"
    run = container.sync.run(connection.id, kind="reconcile")
    assert run.status == "SUCCEEDED" and run.report is not None
    assert run.report["ledgerEqualsErp"] is True
    assert all(row["missingInErp"] == row["differing"] == row["returned"] == 0
               for row in run.report["entities"].values())  # fmt: skip
    assert run.report["entities"]["invoices"]["erp"] == mock_erp.data.invoices


def test_the_weekly_schedule_reconciles_every_connection_a_schedule_syncs(
    container: Container, scope: Scope, connection: Connection, mock_erp: MockErp
):
    with transaction(container.session_factory) as session:
        other = tenancy.create_tenant(session, "needs-reauth", "prod")
    parked, _ = container.connections.save_rest(other.tenant_id, other.environment_id, mock_erp.url, "090")
    with transaction(container.session_factory) as session:
        stored = session.get(Connection, parked.id)
        assert stored is not None
        stored.status = "NEEDS_REAUTH"
    tasks = {task.name: task for task in container.tasks}
    reconcile = tasks[TASK_SCHEDULED_RECONCILE]
    assert (
        reconcile.schedule is not None and reconcile.schedule.cron == container.settings.reconcile_cron == "0 3 * * 0"
    )
    assert reconcile_every_connection(container.sync) == 1
    with container.read_session_factory() as session:
        runs = session.scalars(select(SyncRun)).all()
    assert [(r.connection_id, r.kind, r.trigger, r.full) for r in runs] == [
        (connection.id, "reconcile", "schedule", True)
    ]
