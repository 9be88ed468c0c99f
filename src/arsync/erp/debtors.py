"""A customer made in arsync becomes known to the ERP: created there as a debtor (a Xero contact).

The REST contract has no endpoint that creates debtors, so this works on native connections
only; on REST middleware the customer is linked to a debtor already synced instead
(``ledger.flows.merge_customer``).

The call is made while the user waits, outside any database transaction. It is safe to repeat:
the contact carries arsync's customer id (Xero's ``ContactNumber``), so it is looked up before
one is created, and the create goes under an ``Idempotency-Key`` of the customer and what is sent.
Once linked, the customer's invoice pushes that failed for want of the link are queued again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from arsync.db import transaction
from arsync.erp.models import Connection
from arsync.erp.port import CreatesDebtors, NewDebtor, PushAttempt
from arsync.erp.push import ConnectorFactory, PushFlows
from arsync.errors import InvalidState, PrerequisiteMissing, RemoteError
from arsync.ledger import flows as ledger_flows
from arsync.ledger import service as ledger
from arsync.ledger.models import Customer
from arsync.tenancy.scope import Scope, in_scope

# Xero's answer to a second active contact of one name (xero_accounting.yaml, paths./Contacts.put,
# its 400 example: "The contact name … is already assigned to another contact").
NAME_TAKEN = "is already assigned to another contact"


@dataclass(frozen=True)
class ErpReach:
    """What the environment's ERP connections allow for a customer made in arsync."""

    connected: bool  # an ERP connection exists, so invoices can be dispatched to it
    creates_debtors: str | None  # the native ERP that can create the customer ("Xero"), if any


def erp_reach(session: Session, scope: Scope) -> ErpReach:
    providers = session.execute(
        select(Connection.transport, Connection.provider, Connection.external_tenant_id).where(
            in_scope(Connection, scope)
        )
    ).all()
    native = next((p for transport, p, tenant in providers if transport == "native" and tenant), None)
    return ErpReach(connected=bool(providers), creates_debtors=native.title() if native else None)


def native_connection(session: Session, scope: Scope) -> Connection | None:
    """The environment's connected native ERP (Xero), if there is one."""
    return session.scalars(
        select(Connection).where(
            in_scope(Connection, scope), Connection.transport == "native", Connection.external_tenant_id.is_not(None)
        )
    ).first()


class DebtorFlows:
    def __init__(
        self, session_factory: sessionmaker[Session], connector_factory: ConnectorFactory, pushes: PushFlows
    ) -> None:
        self.session_factory = session_factory
        self.connector_factory = connector_factory
        self.pushes = pushes

    def create_in_erp(self, scope: Scope, customer_id: str) -> Customer:
        """Create the customer as a debtor in the native ERP and link it; answers the linked customer."""
        with self.session_factory() as session:
            customer = ledger.get_customer(session, scope, customer_id)
            if customer.erp_debtor_id:
                raise InvalidState(f"customer {customer.name} is already ERP debtor {customer.erp_debtor_id}")
            connection = native_connection(session, scope)
            if connection is None:
                raise PrerequisiteMissing(
                    "creating the customer in the ERP needs a native ERP connection (Xero); REST middleware "
                    "cannot create debtors",
                    "link the customer to its ERP debtor instead (the customer's page: Link to an ERP debtor)",
                )
            new = NewDebtor(reference=customer.id, name=customer.name, email=customer.email)
            session.expunge(connection)
        erp_debtor_id = self._find_or_create(connection, new)
        with transaction(self.session_factory) as session:
            return self._link(session, scope, customer_id, erp_debtor_id)

    def _find_or_create(self, connection: Connection, new: NewDebtor) -> str:
        connector = self.connector_factory(connection)
        try:
            if not isinstance(connector, CreatesDebtors):
                raise PrerequisiteMissing(
                    f"the {connection.provider} connection cannot create debtors",
                    "link the customer to its ERP debtor instead (the customer's page: Link to an ERP debtor)",
                )
            found = connector.find_debtor(new.reference)
            if found:
                return found
            sent = hashlib.sha256(f"{new.name}\n{new.email or ''}".encode()).hexdigest()[:16]
            return connector.create_debtor(new, PushAttempt(f"arsync-debtor-{new.reference}-{sent}"))
        except RemoteError as exc:
            if NAME_TAKEN in exc.message:
                raise RemoteError(
                    exc.message, endpoint=exc.endpoint, http_status=exc.http_status,
                    hint="the ERP already has a contact of this name: Sync now, then link this customer to it "
                    "(Link to an ERP debtor), or rename the customer and create it again",
                ) from exc  # fmt: skip
            raise
        finally:
            connector.close()

    def _link(self, session: Session, scope: Scope, customer_id: str, erp_debtor_id: str) -> Customer:
        customer = ledger.get_customer(session, scope, customer_id)
        if customer.erp_debtor_id == erp_debtor_id:
            return customer  # linked meanwhile by a concurrent call
        if customer.erp_debtor_id:
            raise InvalidState(f"customer {customer.name} was linked to ERP debtor {customer.erp_debtor_id} meanwhile")
        synced = session.scalar(
            select(Customer).where(in_scope(Customer, scope), Customer.erp_debtor_id == erp_debtor_id)
        )
        if synced is not None:
            # A sync brought the new contact in meanwhile: the two records are one debtor.
            return ledger_flows.merge_customer(session, scope, customer.id, synced.id, pushes=self.pushes)
        customer.erp_debtor_id = erp_debtor_id
        session.flush()
        self.pushes.release_invoices_of(session, scope, customer.id)
        return customer
