"""Properties of the ledger's money rules, on SQLite and PostgreSQL: for any sequence of invoice
creation, finalization, cash applications (recorded, approved, rejected) and voids, with any
amounts a request could carry, every invoice's outstanding amount stays between 0 and its total,
its total is the sum of its rounded lines, and it equals the total less the approved payments."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule, run_state_machine_as_test
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.errors import ArsyncError
from arsync.ledger import schemas
from arsync.ledger import service as ledger
from arsync.ledger.models import CashApplication, Invoice, InvoiceLine, Payment
from arsync.money import exponent
from arsync.tenancy.scope import Scope as LedgerScope
from tests.conftest import Scope

CURRENCIES = ("USD", "KWD", "JPY")
EXAMPLES = itertools.count()  # keeps invoice numbers unique across examples in one database
# What a client could send: mostly sensible values, and some that must be refused.
sensible = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(5000), places=3)
refused = st.sampled_from([Decimal(0), Decimal(-1), Decimal("-25.00"), Decimal("0.00001"), Decimal("1e15")])
decimals = st.one_of(sensible, sensible, sensible, sensible, refused)  # one in five must be refused
line = st.fixed_dictionaries({"description": st.just("Work"), "quantity": decimals, "unitPrice": decimals})


class LedgerMachine(RuleBasedStateMachine):
    """Each rule is one request; a refused one (validation or state) must leave nothing behind."""

    container: Container
    scope: LedgerScope
    customer_id: str
    invoices = Bundle("invoices")
    applications = Bundle("applications")

    def _attempt(self, action: Callable[[Session], object]) -> Any:
        try:
            with transaction(self.container.session_factory) as session:
                made = action(session)
        except (ValidationError, ArsyncError):
            return multiple()  # refused, and (rolled back) nothing of it is stored
        return made if made is not None else multiple()

    @rule(target=invoices, currency=st.sampled_from(CURRENCIES), lines=st.lists(line, min_size=1, max_size=3),
          then_finalize=st.booleans())  # fmt: skip
    def create(self, currency: str, lines: list[dict[str, Any]], then_finalize: bool) -> Any:
        """A new invoice; half of them finalized at once, so cash has somewhere to go."""
        body = {"customerId": self.customer_id, "invoiceNumber": f"P-{next(EXAMPLES)}", "issueDate": "2026-03-01",
                "dueDate": "2026-03-31", "currency": currency, "lines": lines}  # fmt: skip
        made = self._attempt(
            lambda s: ledger.create_invoice(s, self.scope, schemas.InvoiceCreate.model_validate(body)).id
        )
        if then_finalize and isinstance(made, str):
            self.finalize(made)
        return made

    @rule(invoice=invoices)
    def finalize(self, invoice: str) -> None:
        self._attempt(lambda s: ledger.finalize_invoice(s, self.scope, invoice) and None)

    @rule(invoice=invoices)
    def void(self, invoice: str) -> None:
        self._attempt(lambda s: ledger.void_invoice(s, self.scope, invoice) and None)

    @rule(target=applications, invoice=invoices, share=st.sampled_from([100, 50, 120]) | st.integers(1, 120),
          odd=st.none() | decimals)  # fmt: skip
    def apply(self, invoice: str, share: int, odd: Decimal | None) -> Any:
        """A share of what is outstanding (above 100%: too much), or an arbitrary amount."""
        with self.container.session_factory() as session:
            row = session.get(Invoice, invoice)
            assert row is not None
            unit = Decimal(10) ** -exponent(row.currency)
            amount = odd if odd is not None else (row.amount_outstanding * share / 100).quantize(unit) or unit
        body = {"invoiceId": invoice, "amount": amount, "date": "2026-03-15", "reference": "EFT"}
        return self._attempt(lambda s: ledger.create_cash_application(
            s, self.scope, schemas.CashApplicationCreate.model_validate(body)
        ).id)  # fmt: skip

    @rule(invoice=invoices, share=st.sampled_from([100, 101, 150]))
    def apply_and_approve(self, invoice: str, share: int) -> None:
        """Settle an invoice at once: in full, or with more than it is owed (which must be refused)."""
        made = self.apply(invoice, share, None)
        if isinstance(made, str):
            self.approve(made)

    @rule(application=applications)
    def approve(self, application: str) -> None:
        self._attempt(lambda s: ledger.approve_cash_application(s, self.scope, application) and None)

    @rule(application=applications)
    def reject(self, application: str) -> None:
        self._attempt(lambda s: ledger.reject_cash_application(s, self.scope, application) and None)

    @invariant()
    def money_rules_hold(self) -> None:
        _check_invariants(self.container, self.scope)


def _check_invariants(container: Container, scope: LedgerScope) -> None:
    with container.session_factory() as session:
        invoices = session.scalars(select(Invoice).where(Invoice.tenant_id == scope.tenant_id)).all()
        lines: dict[str, list[InvoiceLine]] = {}
        for ln in session.scalars(select(InvoiceLine).join(Invoice).where(Invoice.tenant_id == scope.tenant_id)):
            lines.setdefault(ln.invoice_id, []).append(ln)
        paid = dict(
            session.execute(select(Payment.invoice_id, func.sum(Payment.amount)).group_by(Payment.invoice_id)).all()
        )
        payments = dict(session.execute(select(Payment.invoice_id, func.count()).group_by(Payment.invoice_id)).all())
        approved = dict(session.execute(
            select(CashApplication.invoice_id, func.count())
            .where(CashApplication.status == "APPROVED").group_by(CashApplication.invoice_id)
        ).all())  # fmt: skip
        negative = session.scalar(select(func.count()).where(CashApplication.amount <= Decimal(0)))
    assert negative == 0
    for invoice in invoices:
        mine = lines.get(invoice.id, [])
        unit = Decimal(10) ** -exponent(invoice.currency)
        rounded = [(ln.quantity * ln.unit_price).quantize(unit, rounding=ROUND_HALF_UP) for ln in mine]
        assert [ln.amount for ln in mine] == rounded
        assert all(ln.quantity > 0 and ln.unit_price >= 0 for ln in mine)
        assert invoice.amount_total == sum(rounded, Decimal(0))
        assert Decimal(0) <= invoice.amount_outstanding <= invoice.amount_total, invoice.invoice_number
        assert invoice.amount_outstanding == invoice.amount_total - Decimal(paid.get(invoice.id) or 0)
        assert approved.get(invoice.id, 0) == payments.get(invoice.id, 0)
        assert (invoice.status == "PAID") == (invoice.amount_outstanding == 0 and invoice.id in approved)
        assert invoice.status != "VOIDED" or invoice.id not in approved


@pytest.mark.slow
def test_outstanding_stays_between_zero_and_the_total_whatever_happens(container: Container, scope: Scope) -> None:
    ledger_scope = LedgerScope(scope.tenant_id, scope.environment_id)
    with transaction(container.session_factory) as session:
        customer_id = ledger.create_customer(session, ledger_scope, schemas.CustomerCreate(name="Property Ltd")).id
    LedgerMachine.container, LedgerMachine.scope, LedgerMachine.customer_id = container, ledger_scope, customer_id
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(max_examples=60, stateful_step_count=20, deadline=None, database=None, derandomize=True),
    )
    with container.session_factory() as session:  # the sequences did reach every rule
        invoices = dict(session.execute(select(Invoice.status, func.count()).group_by(Invoice.status)).all())
        applications = dict(
            session.execute(select(CashApplication.status, func.count()).group_by(CashApplication.status)).all()
        )
    assert {"PAID", "VOIDED", "FINALIZED"} <= set(invoices), invoices
    assert {"APPROVED", "REJECTED"} <= set(applications), applications
