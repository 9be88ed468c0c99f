"""Nomod use cases: saving the connection, customer and invoice sync, and payment links.

These own their transactions and call Nomod; the changes they make are in ``nomod.service``.

Customer sync makes sure an arsync customer exists in Nomod, once: the mapping is checked
first, then name and email are validated, then the Nomod customer is created, then the
mapping and the customer's metadata are stored in one transaction. A failure at any step
writes no mapping; it is recorded on the customer's sync state instead.

Invoice sync runs as a job queued in the transaction that finalizes the invoice (when the
connection's ``invoice_sync.outbound`` is on). It ensures the customer, creates the Nomod
invoice and stores its id and URL. Transient failures are retried later with doubling delays;
the others fail at once with their stable message.

Everything that creates something in Nomod is serialised per record (an advisory lock on
PostgreSQL, a striped lock in this process), so concurrent triggers create one Nomod object,
and the mapping's unique keys back that up. Locks are never nested.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from arsync.db import exclusive_transaction, transaction, utcnow
from arsync.errors import (
    Conflict,
    InvalidState,
    NomodApiError,
    NomodCustomerNotFound,
    NomodError,
    NomodInvalidEmail,
    NomodMissingFields,
    NotFound,
)
from arsync.http_retry import HttpRetryOptions
from arsync.jobs.queue import JobQueue, runs_early
from arsync.ledger import service as ledger
from arsync.ledger.models import SENT_TO_NOMOD, Customer, Invoice, InvoiceStatus
from arsync.nomod import service
from arsync.nomod.client import NomodClient
from arsync.nomod.models import IntegrationSync, NomodConnection
from arsync.nomod.payloads import customer_payload, invoice_payload, link_payload, object_id
from arsync.nomod.repository import CUSTOMER, INVOICE, INVOICE_LINK, mapped_id, mapping_row, sync_state
from arsync.nomod.service import ConnectionSettings, RetryPolicy
from arsync.outbound import OutboundPolicy
from arsync.schemas import is_email
from arsync.tenancy.scope import Scope
from arsync.vault import Vault

log = logging.getLogger(__name__)

ClientFactory = Callable[[str, str], NomodClient]
T = TypeVar("T")


@dataclass(frozen=True)
class PaymentLink:
    invoice_id: str
    kind: str  # "invoice" (the Nomod invoice's page) or "link" (a Nomod payment link)
    nomod_id: str
    url: str | None
    nomod_customer_id: str


class NomodFlows:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        vault: Vault,
        options: HttpRetryOptions | None = None,
        client_factory: ClientFactory | None = None,
        *,
        outbound: OutboundPolicy,
        queue: JobQueue | None = None,
        retry: RetryPolicy | None = None,
        default_base_url: str = "https://api.nomod.com",
    ) -> None:
        self.session_factory = session_factory
        self.vault = vault
        self.options = options or HttpRetryOptions()
        self.outbound = outbound
        self.client_factory = client_factory or (
            lambda url, key: NomodClient(url, key, self.options, outbound=self.outbound)
        )
        self.queue = queue
        self.retry = retry or RetryPolicy()
        self.default_base_url = default_base_url

    # The connection -------------------------------------------------------------------------

    def save_connection(
        self,
        scope: Scope,
        *,
        api_key: str,
        invoice_sync_outbound: bool,
        base_url: str | None = None,
        webhook_secret: str | None = None,
        allow_service_fee: bool | None = None,
    ) -> NomodConnection:
        """Create or update the environment's Nomod connection; a None setting keeps the current one."""
        settings = ConnectionSettings(api_key, invoice_sync_outbound, base_url, webhook_secret, allow_service_fee)
        checked = settings.checked(self.outbound)
        with transaction(self.session_factory) as session:
            saved = service.save_connection(
                session, scope, checked, vault=self.vault, default_base_url=self.default_base_url
            )
            session.expunge(saved)
            return saved

    # Customer sync -------------------------------------------------------------------------

    def ensure_customer(self, scope: Scope, customer_id: str) -> str:
        """The customer's Nomod id; creates the Nomod customer the first time. Raises NomodError."""
        with self.session_factory() as session:
            known = mapped_id(session, scope, CUSTOMER, customer_id)
        if known is not None:
            return known
        try:
            return self._create_customer(scope, customer_id)
        except NomodError as exc:
            if not isinstance(exc, NomodCustomerNotFound):  # there is no customer here to show it on
                self._record_state(scope, CUSTOMER, customer_id, "FAILED", exc.as_dict())
            raise

    def _create_customer(self, scope: Scope, customer_id: str) -> str:
        with self.exclusive(f"nomod:customer:{customer_id}") as session:
            known = mapped_id(session, scope, CUSTOMER, customer_id)
            if known is not None:
                return known
            customer = session.get(Customer, customer_id)
            if customer is None or (customer.tenant_id, customer.environment_id) != (
                scope.tenant_id,
                scope.environment_id,
            ):
                raise NomodCustomerNotFound(detail=f"customer {customer_id}")
            name, email = (customer.name or "").strip(), (customer.email or "").strip()
            if not name or not email:
                missing = " and ".join(f for f, v in (("name", name), ("email", email)) if not v)
                raise NomodMissingFields(detail=f"customer {customer.id} has no {missing}; Nomod needs both")
            if not is_email(email):
                raise NomodInvalidEmail(detail=f"customer {customer.id}: {email!r} is not an email address")
            connection = service.usable_connection(session, scope)
            payload = customer_payload(customer.id, name, email, customer.phone)
            now = utcnow()
            created = self._create(
                session,
                connection,
                scope,
                CUSTOMER,
                customer.id,
                "/v1/customers",
                payload,
                matches=lambda found: str(found.get("email") or "").lower() == email.lower(),
            )
            nomod_id = _required_id(created, "customer")
            session.add(service.new_mapping(scope, CUSTOMER, customer.id, nomod_id))
            customer.metadata_ = (customer.metadata_ or {}) | {
                "nomod_customer_id": nomod_id,
                "nomod_sync_timestamp": now.isoformat(),
            }
            customer.updated_at = now
            service.set_state(session, scope, CUSTOMER, customer.id, "SYNCED", None)
            return nomod_id

    def unlink_customer(self, scope: Scope, customer_id: str) -> None:
        """Forget the customer's Nomod customer id (``service.unlink_customer``), under its sync's lock."""
        with self.exclusive(f"nomod:customer:{customer_id}") as session:
            service.unlink_customer(session, scope, customer_id)

    # Invoice sync ---------------------------------------------------------------------------

    def queue_invoice_sync(self, session: Session, scope: Scope, invoice: Invoice) -> IntegrationSync | None:
        """In the finalizing transaction: queue the invoice's sync if outbound sync is on."""
        return service.queue_invoice_sync(session, scope, invoice, self._queue())

    def retry_invoice_sync(self, session: Session, scope: Scope, invoice_id: str) -> IntegrationSync:
        """In the caller's transaction: queue a FAILED invoice sync again."""
        return service.retry_invoice_sync(session, scope, invoice_id, self._queue())

    def requeue_pending(self) -> int:
        """Queue every PENDING invoice sync again (embedded mode, at start)."""
        with transaction(self.session_factory) as session:
            return service.requeue_pending(session, self._queue())

    def _queue(self) -> JobQueue:
        assert self.queue is not None, "queueing invoice syncs needs a job queue"
        return self.queue

    def run_invoice_sync(self, sync_id: str) -> str | None:
        """The job: sync one queued invoice; returns its sync status afterwards (None if gone)."""
        with self.session_factory() as session:
            state = session.get(IntegrationSync, sync_id)
            if state is None or state.status != "PENDING":
                return state.status if state else None
            if runs_early(state.next_attempt_at):
                return state.status
            scope, invoice_id = Scope(state.tenant_id, state.environment_id), state.entity_id
        try:
            self.sync_invoice(scope, invoice_id)
        except NomodError as exc:
            return self._invoice_sync_failed(sync_id, exc.as_dict(), transient=exc.transient)
        except (Conflict, NotFound) as exc:
            return self._invoice_sync_failed(sync_id, {"code": exc.code, "message": exc.message}, transient=False)
        except Exception as exc:
            log.exception("Nomod sync of invoice %s failed unexpectedly", invoice_id)
            error = {"code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {str(exc)[:500]}"}
            return self._invoice_sync_failed(sync_id, error, transient=False)
        return "SYNCED"

    def sync_invoice(self, scope: Scope, invoice_id: str) -> tuple[str, str | None]:
        """Create the invoice in Nomod once; returns its Nomod id and URL. Raises NomodError."""
        with self.session_factory() as session:
            existing = mapping_row(session, scope, INVOICE, invoice_id)
            invoice = session.get(Invoice, invoice_id)
            customer_id = invoice.customer_id if invoice is not None else None
        if existing is not None:
            self._record_state(scope, INVOICE, invoice_id, "SYNCED", None)
            return existing.provider_id, existing.url
        if customer_id is None:
            raise NotFound(f"invoice {invoice_id} no longer exists")
        nomod_customer_id = self.ensure_customer(scope, customer_id)
        with self.exclusive(f"nomod:invoice:{invoice_id}") as session:
            existing = mapping_row(session, scope, INVOICE, invoice_id)
            if existing is None:
                invoice = session.get(Invoice, invoice_id)
                assert invoice is not None
                if invoice.status not in SENT_TO_NOMOD:
                    raise InvalidState(f"invoice {invoice.id} is {invoice.status}; it is not sent to Nomod")
                connection = service.usable_connection(session, scope)
                payload = invoice_payload(
                    invoice,
                    ledger.invoice_lines(session, [invoice.id])[invoice.id],
                    nomod_customer_id,
                    allow_service_fee=connection.allow_service_fee,
                )
                number = invoice.invoice_number
                created = self._create(
                    session,
                    connection,
                    scope,
                    INVOICE,
                    invoice.id,
                    "/v1/invoices",
                    payload,
                    matches=lambda found: (
                        found.get("invoice_number") == number and object_id(found.get("customer")) == nomod_customer_id
                    ),
                )
                existing = service.new_mapping(
                    scope, INVOICE, invoice.id, _required_id(created, "invoice"), created.get("url")
                )
                session.add(existing)
            state = service.set_state(session, scope, INVOICE, invoice_id, "SYNCED", None)
            state.attempts += 1
            state.next_attempt_at = None
            return existing.provider_id, existing.url

    def _invoice_sync_failed(self, sync_id: str, error: dict[str, Any], *, transient: bool) -> str | None:
        with transaction(self.session_factory) as session:
            return service.record_invoice_sync_failure(
                session, sync_id, error, transient=transient, retry=self.retry, queue=self._queue()
            )

    # Payment links -------------------------------------------------------------------------

    def payment_link(self, scope: Scope, invoice_id: str) -> PaymentLink:
        """The URL the customer pays at: the Nomod invoice's, or else a new Nomod payment link's."""
        with self.session_factory() as session:
            invoice = ledger.get_invoice(session, scope, invoice_id)
            if invoice.status != InvoiceStatus.FINALIZED:
                hint = {"DRAFT": "finalize it first", "PAID": "it is already paid", "VOIDED": "it is voided"}
                raise InvalidState(
                    f"invoice {invoice.id} is {invoice.status}; {hint.get(invoice.status, '')}".rstrip("; "),
                )
            customer_id = invoice.customer_id
            # A Nomod invoice asks for the whole total; once part is paid, a link asks for the rest.
            untouched = invoice.amount_outstanding == invoice.amount_total
            state = sync_state(session, scope, INVOICE, invoice.id)
            synced = mapping_row(session, scope, INVOICE, invoice_id) if untouched else None
        nomod_customer_id = self.ensure_customer(scope, customer_id)
        if untouched and synced is None and state is not None and state.status == "PENDING":
            # Its sync is queued: run it now rather than create a second thing to pay.
            nomod_id, url = self.sync_invoice(scope, invoice_id)
            return PaymentLink(invoice_id, "invoice", nomod_id, url, nomod_customer_id)
        if synced is not None:
            return PaymentLink(invoice_id, "invoice", synced.provider_id, synced.url, nomod_customer_id)
        try:
            return self._payment_link(scope, invoice_id, nomod_customer_id)
        except NomodError as exc:
            if exc.uncertain:  # so the next try looks for the link before making one
                self._record_state(scope, INVOICE_LINK, invoice_id, "FAILED", exc.as_dict())
            raise

    def _payment_link(self, scope: Scope, invoice_id: str, nomod_customer_id: str) -> PaymentLink:
        with self.exclusive(f"nomod:invoice:{invoice_id}") as session:
            link = mapping_row(session, scope, INVOICE_LINK, invoice_id)
            current = session.get(Invoice, invoice_id)
            assert current is not None
            if link is not None and link.amount != current.amount_outstanding:
                # Cash was applied since it was made: it asks for too much. A payment through it
                # still reaches the invoice by its note, and waits for review if it does not fit.
                session.delete(link)
                session.flush()
                link = None
            if link is None:
                connection = service.usable_connection(session, scope)
                payload = link_payload(current, allow_service_fee=connection.allow_service_fee)
                note = payload["note"]
                created = self._create(
                    session,
                    connection,
                    scope,
                    INVOICE_LINK,
                    current.id,
                    "/v1/links",
                    payload,
                    matches=lambda found: found.get("note") == note,
                )
                link = service.new_mapping(
                    scope, INVOICE_LINK, current.id, _required_id(created, "link"), created.get("url")
                )
                link.amount = current.amount_outstanding
                session.add(link)
                if sync_state(session, scope, INVOICE_LINK, current.id) is not None:
                    service.set_state(session, scope, INVOICE_LINK, current.id, "SYNCED", None)
            return PaymentLink(invoice_id, "link", link.provider_id, link.url, nomod_customer_id)

    # Plumbing ------------------------------------------------------------------------------

    def _record_state(
        self, scope: Scope, entity_type: str, entity_id: str, status: str, error: dict[str, Any] | None
    ) -> None:
        # The same key as the sync of that record, so its state row is written by one at a time.
        with self.exclusive(f"nomod:{entity_type}:{entity_id}") as session:
            service.set_state(session, scope, entity_type, entity_id, status, error)

    def _create(
        self,
        session: Session,
        connection: NomodConnection,
        scope: Scope,
        entity_type: str,
        entity_id: str,
        path: str,
        payload: dict[str, Any],
        *,
        matches: Callable[[dict[str, Any]], bool],
    ) -> dict[str, Any]:
        """POST ``payload`` to ``path`` once, never blindly twice.

        Nomod documents no idempotency key, so after a create whose outcome is unknown (a
        timeout, a dropped connection, a 5xx) the list is searched for what it may have made,
        at once and, since the caller records the error with ``uncertain`` on the record's sync
        state, before the next try. Until that search has answered, nothing is created again.
        """

        def made_before() -> dict[str, Any] | None:
            found = self.call(connection, lambda client: client.find(path, matches))
            if found is not None:
                log.info("adopted the Nomod object %s for %s %s", found.get("id"), entity_type, entity_id)
            return found

        state = sync_state(session, scope, entity_type, entity_id)
        if state is not None and state.last_error and state.last_error.get("uncertain"):
            found = made_before()
            if found is not None:
                return found
        try:
            return self.call(connection, lambda client: client.post(path, payload))
        except NomodError as exc:
            if not exc.uncertain:
                raise
            try:
                found = made_before()
            except NomodError:
                raise exc from None
            if found is None:
                raise
            return found

    def test_key(self, scope: Scope) -> int:
        """Ask Nomod for the customers list with the saved key: its count on success. A rejected key
        marks the connection FAILED; an accepted one makes a FAILED connection ACTIVE again."""
        with self.session_factory() as session:
            connection = service.connection(session, scope)
            if connection is None:
                raise InvalidState("Nomod is not connected: save an API key first")
            session.expunge(connection)
        customers = self.call(connection, lambda client: client.count("/v1/customers"))
        with transaction(self.session_factory) as session:
            service.mark_connection_working(session, connection.id)
        return customers

    def call(self, connection: NomodConnection, request: Callable[[NomodClient], T]) -> T:
        """Run ``request`` with the connection's key; a 401 marks the connection FAILED."""
        client = self.client_factory(connection.base_url, self.vault.decrypt(connection.api_key_encrypted))
        try:
            return request(client)
        except NomodError as exc:
            if exc.unauthorized:
                self._mark_failed(connection.id, exc)
            raise
        finally:
            client.close()

    def _mark_failed(self, connection_id: str, error: NomodError) -> None:
        with transaction(self.session_factory) as session:
            service.mark_connection_failed(session, connection_id, error)

    @contextmanager
    def exclusive(self, key: str) -> Iterator[Session]:
        """A transaction that holds ``key``: across processes on PostgreSQL, within this process everywhere."""
        with exclusive_transaction(self.session_factory, key) as session:
            yield session


def _required_id(created: dict[str, Any], what: str) -> str:
    nomod_id = created.get("id")
    if not isinstance(nomod_id, str) or not nomod_id:
        raise NomodApiError(detail=f"Nomod created the {what} but answered without its id")
    return nomod_id
