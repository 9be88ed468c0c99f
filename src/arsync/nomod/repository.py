"""Queries over the mapping table and the sync state: which arsync record is which Nomod object."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arsync.ledger.models import Customer, Invoice
from arsync.nomod.models import EntityIntegrationMapping, IntegrationSync
from arsync.tenancy.scope import Scope, in_scope

PROVIDER = "nomod"

# entity_type values in the mapping table
CUSTOMER = "customer"
INVOICE = "invoice"
INVOICE_LINK = "invoice_link"
CASH_APPLICATION = "cash_application"


def sync_state(session: Session, scope: Scope, entity_type: str, entity_id: str) -> IntegrationSync | None:
    return session.scalar(
        select(IntegrationSync).where(
            in_scope(IntegrationSync, scope),
            IntegrationSync.entity_type == entity_type,
            IntegrationSync.entity_id == entity_id,
            IntegrationSync.provider == PROVIDER,
        )
    )


def mapping_row(session: Session, scope: Scope, entity_type: str, entity_id: str) -> EntityIntegrationMapping | None:
    return session.scalar(
        select(EntityIntegrationMapping).where(
            in_scope(EntityIntegrationMapping, scope),
            EntityIntegrationMapping.entity_type == entity_type,
            EntityIntegrationMapping.entity_id == entity_id,
            EntityIntegrationMapping.provider == PROVIDER,
        )
    )


def entity_for(session: Session, scope: Scope, entity_type: str, provider_id: str) -> str | None:
    """The arsync record a provider object is mapped to, if any (the reverse of :func:`mapped_id`)."""
    found: str | None = session.scalar(
        select(EntityIntegrationMapping.entity_id).where(
            in_scope(EntityIntegrationMapping, scope),
            EntityIntegrationMapping.provider == PROVIDER,
            EntityIntegrationMapping.entity_type == entity_type,
            EntityIntegrationMapping.provider_id == provider_id,
        )
    )
    return found


def mapped_id(session: Session, scope: Scope, entity_type: str, entity_id: str) -> str | None:
    """The provider id stored for an arsync record, if any."""
    row = mapping_row(session, scope, entity_type, entity_id)
    return row.provider_id if row else None


InvoiceNomodState = tuple[IntegrationSync | None, EntityIntegrationMapping | None, EntityIntegrationMapping | None]


def invoice_states(session: Session, invoice_ids: list[str]) -> dict[str, InvoiceNomodState]:
    """For each invoice that has been near Nomod: its sync state, Nomod invoice and payment link."""
    if not invoice_ids:
        return {}
    states = {
        s.entity_id: s
        for s in session.scalars(
            select(IntegrationSync).where(
                IntegrationSync.entity_type == INVOICE,
                IntegrationSync.provider == PROVIDER,
                IntegrationSync.entity_id.in_(invoice_ids),
            )
        )
    }
    mappings: dict[tuple[str, str], EntityIntegrationMapping] = {
        (m.entity_type, m.entity_id): m
        for m in session.scalars(
            select(EntityIntegrationMapping).where(
                EntityIntegrationMapping.entity_type.in_((INVOICE, INVOICE_LINK)),
                EntityIntegrationMapping.provider == PROVIDER,
                EntityIntegrationMapping.entity_id.in_(invoice_ids),
            )
        )
    }
    found = set(states) | {entity_id for _, entity_id in mappings}
    return {i: (states.get(i), mappings.get((INVOICE, i)), mappings.get((INVOICE_LINK, i))) for i in found}


MAX_LISTED_INVOICES = 100


def customer_integrations(session: Session, scope: Scope, customer: Customer) -> dict[str, Any]:
    """The documented integrations document, read from the mapping table and the sync state.

    ``nomod`` carries ``nomod_customer_id`` (as documented), plus the sync status, the last
    error, and the customer's invoices in Nomod with their payment URLs, newest first.
    """
    mapping = mapping_row(session, scope, CUSTOMER, customer.id)
    state = sync_state(session, scope, CUSTOMER, customer.id)
    if mapping is None and state is None:
        return {"customer_id": customer.id, "integrations": {}}
    rows = session.execute(
        select(EntityIntegrationMapping, Invoice.invoice_number)
        .join(Invoice, Invoice.id == EntityIntegrationMapping.entity_id)
        .where(
            in_scope(EntityIntegrationMapping, scope),
            EntityIntegrationMapping.provider == PROVIDER,
            EntityIntegrationMapping.entity_type.in_((INVOICE, INVOICE_LINK)),
            Invoice.customer_id == customer.id,
        )
        .order_by(EntityIntegrationMapping.created_at.desc(), EntityIntegrationMapping.id.desc())
        .limit(MAX_LISTED_INVOICES)
    ).all()
    nomod: dict[str, Any] = {
        "nomod_customer_id": mapping.provider_id if mapping else None,
        "nomod_sync_timestamp": (customer.metadata_ or {}).get("nomod_sync_timestamp"),
        "status": state.status if state else "SYNCED",
        "error": state.last_error if state and state.status == "FAILED" else None,
        "invoices": [
            {
                "invoice_id": m.entity_id,
                "invoice_number": number,
                "kind": "invoice" if m.entity_type == INVOICE else "link",
                "nomod_id": m.provider_id,
                "url": m.url,
            }
            for m, number in rows
        ],
    }
    return {"customer_id": customer.id, "integrations": {"nomod": nomod}}
