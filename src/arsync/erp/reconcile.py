"""Reconciliation: is the ledger what the ERP holds now, record by record and in totals?

A reconciliation run is a full sync (every list, no ``modifiedSince``) that also writes each
page's ERP ids into ``reconcile_seen``. Loading the pages fixes records whose content changed
without the ERP stamping them (the sync's ``updated`` counts). When every list has been read:

- records of the scope with an ERP id the ERP did not list are marked ``erp_deleted_at`` (not
  deleted: their cash applications and pushes stay); an invoice so marked is not owed;
- marked records the ERP listed again are un-marked;
- counts and totals per entity and per currency, ERP against ledger, before and after, go into
  the run's report.

The ERP's ids stay in the database, never all in memory. A debtor the ERP does not list but one
of its invoices names (the sync creates such debtors) counts as listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CursorResult, Table, Update, delete, exists, func, insert, select, text, update
from sqlalchemy.orm import Session

from arsync.erp import contract
from arsync.erp.loader import ERP_IDS, invoices, parked_payments, payments
from arsync.erp.models import ReconcileSeen, SyncRun
from arsync.erp.port import ENTITIES, Entity
from arsync.money import canonical
from arsync.tenancy.scope import Scope, in_scope

seen: Table = ReconcileSeen.__table__  # type: ignore[assignment]
EXAMPLES = 10


def _money(value: Any) -> str:
    return str(canonical(Decimal(value or 0)))


@dataclass
class Reconciliation:
    run_id: str
    tenant_id: str
    environment_id: str
    before: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def begin(cls, session: Session, run: SyncRun) -> Reconciliation:
        # Rows left by a reconciliation whose process died are of no use to anyone.
        running = select(SyncRun.id).where(SyncRun.status == "RUNNING")
        session.execute(delete(seen).where(seen.c.run_id.not_in(running)))
        started = cls(run.id, run.tenant_id, run.environment_id)
        started.before = started._ledger_totals(session)
        return started

    def _scope(self, table: Table) -> Any:
        return in_scope(table.c, Scope(self.tenant_id, self.environment_id))

    def _held(self, entity: str) -> list[Any]:
        """The rows of ``entity`` the ledger holds from the ERP and has not marked as gone."""
        erp_id = ERP_IDS[entity]
        return [self._scope(erp_id.table), erp_id.column.is_not(None), erp_id.table.c.erp_deleted_at.is_(None)]

    # While the pages are read ---------------------------------------------------------

    def remember(self, session: Session, entity: Entity, items: Sequence[Any]) -> None:
        """The page's ERP ids (and for invoices the debtors they name), in the page's transaction."""
        rows: list[dict[str, Any]] = []
        for item in items:
            if isinstance(item, contract.Invoice):
                rows.append(self._row("invoices", item.erp_invoice_id, item.currency, item.amount_total,
                                      item.amount_outstanding))  # fmt: skip
                rows.append(self._row("debtors", item.erp_debtor_id))
            elif isinstance(item, contract.Payment):
                rows.append(self._row("payments", item.erp_payment_id, None, item.amount) | {
                    "erp_invoice_id": item.erp_invoice_id})  # fmt: skip
            else:
                rows.append(self._row("debtors", item.erp_debtor_id))
        if rows:
            session.execute(insert(seen), rows)

    def _row(
        self, entity: str, erp_id: str, currency: str | None = None, total: Decimal | None = None,
        outstanding: Decimal | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        return {"run_id": self.run_id, "entity": entity, "erp_id": erp_id, "currency": currency,
                "amount_total": total, "amount_outstanding": outstanding, "erp_invoice_id": None}  # fmt: skip

    # When every list has been read ------------------------------------------------------

    def conclude(self, session: Session, now: datetime, stats: dict[str, Any]) -> dict[str, Any]:
        """Mark and un-mark, then the report (also stored on the run by the caller)."""
        if session.get_bind().dialect.name == "postgresql":
            # The table grew from empty during the run; without fresh statistics the planner
            # takes it for tiny and answers each record's "was it listed" by scanning it whole.
            session.execute(text("ANALYZE reconcile_seen"))
        missing: dict[str, int] = {}
        returned: dict[str, int] = {}
        examples: dict[str, list[str]] = {}
        for entity in ENTITIES:
            table, column = ERP_IDS[entity].table, ERP_IDS[entity].column
            listed = exists().where(seen.c.run_id == self.run_id, seen.c.entity == entity, seen.c.erp_id == column)
            gone = [*self._held(entity), ~listed]
            examples[entity] = list(session.scalars(select(column).where(*gone).order_by(column).limit(EXAMPLES)))
            missing[entity] = _changed(session, update(table).where(*gone).values(erp_deleted_at=now, updated_at=now))
            returned[entity] = _changed(
                session,
                update(table)
                .where(self._scope(table), table.c.erp_deleted_at.is_not(None), listed)
                .values(erp_deleted_at=None, updated_at=now),
            )
        after = self._ledger_totals(session)
        erp = self._erp_totals(session)
        by_entity = {
            entity: {
                "erp": erp["counts"][entity],
                "ledgerBefore": self.before["counts"][entity],
                "ledgerAfter": after["counts"][entity],
                "missingInErp": missing[entity],
                "returned": returned[entity],
                "differing": int(stats.get(entity, {}).get("updated", 0)),
                "missingExamples": examples[entity],
            }
            for entity in ENTITIES
        }
        by_currency = {part: _side_by_side(part, erp, self.before, after) for part in ("invoices", "payments")}
        equal = all(row["erp"] == row["ledgerAfter"] for row in by_entity.values()) and all(
            row["erp"] == row["ledgerAfter"] for part in by_currency.values() for row in part.values()
        )
        return {
            "ledgerEqualsErp": equal,
            "entities": by_entity,
            "invoicesByCurrency": by_currency["invoices"],
            "paymentsByCurrency": by_currency["payments"],
        }

    def forget(self, session: Session) -> None:
        session.execute(delete(seen).where(seen.c.run_id == self.run_id))

    # Totals ---------------------------------------------------------------------------

    def _ledger_totals(self, session: Session) -> dict[str, Any]:
        """What the ledger holds from the ERP, leaving out what is marked as gone."""
        counts = {
            entity: session.scalar(select(func.count()).select_from(ERP_IDS[entity].table).where(*self._held(entity)))
            for entity in ENTITIES
        }
        by_currency = _invoice_figures(session.execute(
            select(invoices.c.currency, func.count(), func.sum(invoices.c.amount_total),
                   func.sum(invoices.c.amount_outstanding)).where(*self._held("invoices")).group_by(invoices.c.currency)
        ))  # fmt: skip
        paid = _payment_figures(session.execute(
            select(invoices.c.currency, func.count(), func.sum(payments.c.amount))
            .join(invoices, invoices.c.id == payments.c.invoice_id)
            .where(*self._held("payments"))
            .group_by(invoices.c.currency)
        ))  # fmt: skip
        return {"counts": counts, "invoices": by_currency, "payments": paid}

    def _erp_totals(self, session: Session) -> dict[str, Any]:
        """The same figures for what the ERP listed: each ERP id once (a record repeated on two
        pages is one record); payments kept aside for an invoice the ERP does not list are not
        in the ledger, so they are left out here too."""

        def listed(entity: str) -> Any:
            return select(seen.c.erp_id, func.max(seen.c.currency).label("currency"),
                          func.max(seen.c.amount_total).label("total"),
                          func.max(seen.c.amount_outstanding).label("outstanding"),
                          func.max(seen.c.erp_invoice_id).label("invoice")).where(
                seen.c.run_id == self.run_id, seen.c.entity == entity).group_by(seen.c.erp_id).subquery()  # fmt: skip

        parked = select(parked_payments.c.erp_payment_id).where(self._scope(parked_payments))
        counts = {entity: session.scalar(select(func.count()).select_from(listed(entity))) or 0 for entity in ENTITIES}
        listed_invoices = listed("invoices")
        by_currency = _invoice_figures(session.execute(
            select(listed_invoices.c.currency, func.count(), func.sum(listed_invoices.c.total),
                   func.sum(listed_invoices.c.outstanding)).group_by(listed_invoices.c.currency)
        ))  # fmt: skip
        # A payment is in its invoice's currency (the ledger's invoice, so also one the ERP no
        # longer lists); one whose invoice the ledger does not have is parked, not in the ledger.
        listed_payments = listed("payments")
        paid = _payment_figures(session.execute(
            select(invoices.c.currency, func.count(), func.sum(listed_payments.c.total))
            .join(invoices, (invoices.c.erp_invoice_id == listed_payments.c.invoice) & self._scope(invoices))
            .where(listed_payments.c.erp_id.not_in(parked))
            .group_by(invoices.c.currency)
        ))  # fmt: skip
        counts["payments"] = sum(row["count"] for row in paid.values())
        return {"counts": counts, "invoices": by_currency, "payments": paid}


def _invoice_figures(rows: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Rows of (currency, count, total, outstanding) as the report writes them."""
    return {
        currency: {"invoices": count, "amountTotal": _money(total), "amountOutstanding": _money(outstanding)}
        for currency, count, total, outstanding in rows
    }


def _payment_figures(rows: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Rows of (currency, count, amount) as the report writes them."""
    return {currency: {"count": count, "amount": _money(amount)} for currency, count, amount in rows}


def _changed(session: Session, statement: Update) -> int:
    """How many rows an UPDATE changed."""
    result: CursorResult[Any] = session.execute(statement.execution_options(synchronize_session=False))  # type: ignore[assignment]
    return int(result.rowcount)


def _side_by_side(part: str, *sides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per currency, the ERP's figures beside the ledger's before and after (zeros where absent)."""
    nothing = {"invoices": {"invoices": 0, "amountTotal": "0", "amountOutstanding": "0"},
               "payments": {"count": 0, "amount": "0"}}[part]  # fmt: skip
    currencies = sorted({currency for side in sides for currency in side[part]})
    names = ("erp", "ledgerBefore", "ledgerAfter")
    return {c: {name: side[part].get(c, nothing) for name, side in zip(names, sides, strict=True)} for c in currencies}
