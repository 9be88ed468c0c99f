"""Ledger use cases that reach past the ledger, each the one entry point the API and the UI call.

They run inside the caller's transaction, so what they queue is committed with the change or
not at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from arsync.ledger import service as ledger
from arsync.ledger.models import Customer, Invoice
from arsync.nomod import service as nomod_service
from arsync.nomod.flows import NomodFlows
from arsync.tenancy.scope import Scope

if TYPE_CHECKING:
    from arsync.erp.push import PushFlows


def finalize_invoice(session: Session, scope: Scope, invoice_id: str, *, nomod: NomodFlows) -> Invoice:
    """DRAFT → FINALIZED, then, when Nomod's outbound invoice sync is on, queue the invoice for Nomod."""
    invoice = ledger.finalize_invoice(session, scope, invoice_id)
    nomod.queue_invoice_sync(session, scope, invoice)
    return invoice


def merge_customer(session: Session, scope: Scope, customer_id: str, debtor_id: str, *, pushes: PushFlows) -> Customer:
    """Link a customer made in arsync to the ERP debtor it is, by merging it into the debtor's
    record (``ledger.merge_customer``); its Nomod customer goes with it. Its invoices can then
    be dispatched, and the pushes that failed for want of the link go again by themselves."""
    ledger.get_customer(session, scope, customer_id)
    ledger.get_customer(session, scope, debtor_id)
    nomod_service.move_customer_links(session, scope, customer_id, debtor_id)
    debtor = ledger.merge_customer(session, scope, customer_id, debtor_id)
    pushes.release_invoices_of(session, scope, debtor.id)
    return debtor
