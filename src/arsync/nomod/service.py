"""The Nomod connection, customer and invoice sync, and payment links.

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
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from arsync import outbound
from arsync.db import exclusive_transaction, transaction, utcnow
from arsync.errors import Conflict, InvalidInput, NotFound
from arsync.http_retry import HttpRetryOptions
from arsync.jobs.queue import JobQueue, next_attempt_at, runs_early
from arsync.ledger import service as ledger
from arsync.ledger.models import SENT_TO_NOMOD, Customer, Invoice, InvoiceLine, InvoiceStatus
from arsync.money import exponent, format_amount
from arsync.nomod import signing
from arsync.nomod.client import (
    API_ERROR,
    CUSTOMER_NOT_FOUND,
    INVALID_EMAIL,
    MISSING_FIELDS,
    NomodClient,
    NomodError,
)
from arsync.nomod.models import EntityIntegrationMapping, IntegrationSync, NomodConnection
from arsync.nomod.schemas import API_KEY_PATTERN
from arsync.schemas import is_email
from arsync.tenancy.scope import Scope, in_scope
from arsync.vault import Vault, mask

log = logging.getLogger(__name__)

TASK_NOMOD_INVOICE = "arsync.nomod_invoice"  # job names are stored with queued jobs: never rename one

PROVIDER = "nomod"
NO_CONNECTION = "this environment has no Nomod connection (PUT /api/v1/connections/nomod)"
ClientFactory = Callable[[str, str], NomodClient]
T = TypeVar("T")

# entity_type values in the mapping table
CUSTOMER = "customer"
INVOICE = "invoice"
INVOICE_LINK = "invoice_link"
CASH_APPLICATION = "cash_application"


def split_name(name: str) -> tuple[str, str | None]:
    """``first_name`` and ``last_name`` for Nomod: the first word, and the rest."""
    first, _, rest = name.strip().partition(" ")
    return first, rest.strip() or None


@dataclass(frozen=True)
class RetryPolicy:
    """Job-level retries of transient failures (each call also retries a few times itself)."""

    max_attempts: int = 8
    backoff_seconds: float = 5.0


@dataclass(frozen=True)
class PaymentLink:
    invoice_id: str
    kind: str  # "invoice" (the Nomod invoice's page) or "link" (a Nomod payment link)
    nomod_id: str
    url: str | None
    nomod_customer_id: str


class NomodService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        vault: Vault,
        options: HttpRetryOptions | None = None,
        client_factory: ClientFactory | None = None,
        *,
        queue: JobQueue | None = None,
        retry: RetryPolicy | None = None,
        default_base_url: str = "https://api.nomod.com",
    ) -> None:
        self.session_factory = session_factory
        self.vault = vault
        self.options = options or HttpRetryOptions()
        self.client_factory = client_factory or (lambda url, key: NomodClient(url, key, self.options))
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

        if not re.fullmatch(API_KEY_PATTERN, api_key):
            raise InvalidInput(
                "apiKey must be a Nomod secret key (sk_test_… or sk_live_…)", details={"field": "apiKey"}
            )
        if base_url is not None:
            base_url = outbound.validate_base_url(base_url.rstrip("/"))
            outbound.check_url(base_url, "baseUrl")
        secret_problem = signing.secret_problem(webhook_secret) if webhook_secret is not None else None
        if secret_problem:
            raise InvalidInput(f"webhookSecret {secret_problem}", details={"field": "webhookSecret"})
        now = utcnow()
        with transaction(self.session_factory) as session:
            connection = self.connection(session, scope)
            if connection is None:
                connection = NomodConnection(
                    tenant_id=scope.tenant_id, environment_id=scope.environment_id, allow_service_fee=False
                )
                session.add(connection)
            connection.base_url = (base_url or connection.base_url or self.default_base_url).rstrip("/")
            connection.api_key_encrypted = self.vault.encrypt(api_key)
            connection.api_key_hint = mask(api_key)
            if webhook_secret is not None:
                connection.webhook_secret_encrypted = self.vault.encrypt(webhook_secret)
            connection.invoice_sync_outbound = invoice_sync_outbound
            if allow_service_fee is not None:
                connection.allow_service_fee = allow_service_fee
            connection.status, connection.status_reason, connection.last_error = "ACTIVE", None, None
            connection.updated_at = now
            session.flush()
            session.expunge(connection)
            return connection

    @staticmethod
    def connection(session: Session, scope: Scope) -> NomodConnection | None:
        return session.scalar(select(NomodConnection).where(in_scope(NomodConnection, scope)))

    def _usable_connection(self, session: Session, scope: Scope) -> NomodConnection:
        connection = self.connection(session, scope)
        if connection is None:
            raise NomodError(API_ERROR, detail=NO_CONNECTION)
        if connection.status == "FAILED":
            raise NomodError(API_ERROR, detail=f"the Nomod connection is FAILED: {connection.status_reason}")
        return connection

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
            if exc.message != CUSTOMER_NOT_FOUND:  # there is no customer here to show it on
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
                raise NomodError(CUSTOMER_NOT_FOUND, detail=f"customer {customer_id}")
            name, email = (customer.name or "").strip(), (customer.email or "").strip()
            if not name or not email:
                missing = " and ".join(f for f, v in (("name", name), ("email", email)) if not v)
                raise NomodError(MISSING_FIELDS, detail=f"customer {customer.id} has no {missing}; Nomod needs both")
            if not is_email(email):
                raise NomodError(INVALID_EMAIL, detail=f"customer {customer.id}: {email!r} is not an email address")
            connection = self._usable_connection(session, scope)
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
            session.add(self.new_mapping(scope, CUSTOMER, customer.id, nomod_id))
            customer.metadata_ = (customer.metadata_ or {}) | {
                "nomod_customer_id": nomod_id,
                "nomod_sync_timestamp": now.isoformat(),
            }
            customer.updated_at = now
            self._set_state(session, scope, CUSTOMER, customer.id, "SYNCED", None)
            return nomod_id

    def unlink_customer(self, scope: Scope, customer_id: str) -> None:
        """Forget the customer's Nomod customer id, e.g. after the customer was deleted in Nomod.

        Its next Nomod sync creates a new Nomod customer. Its invoices already in Nomod keep their
        mappings and payment URLs.
        """
        with self.exclusive(f"nomod:customer:{customer_id}") as session:
            customer = ledger.get_customer(session, scope, customer_id)
            mapping = _mapping_row(session, scope, CUSTOMER, customer.id)
            if mapping is None:
                raise Conflict(f"customer {customer.id} is not linked to a Nomod customer", code="INVALID_STATE")
            session.delete(mapping)
            state = _state(session, scope, CUSTOMER, customer.id)
            if state is not None:
                session.delete(state)
            metadata = dict(customer.metadata_ or {})
            metadata.pop("nomod_customer_id", None)
            metadata.pop("nomod_sync_timestamp", None)
            customer.metadata_ = metadata
            customer.updated_at = utcnow()
            log.info("customer %s unlinked from Nomod customer %s", customer.id, mapping.provider_id)

    # Invoice sync ---------------------------------------------------------------------------

    def queue_invoice_sync(self, session: Session, scope: Scope, invoice: Invoice) -> IntegrationSync | None:
        """In the finalizing transaction: queue the invoice's sync if outbound sync is on."""
        connection = self.connection(session, scope)
        if connection is None or not connection.invoice_sync_outbound:
            return None
        return self._queue(session, scope, invoice.id)

    def retry_invoice_sync(self, session: Session, scope: Scope, invoice_id: str) -> IntegrationSync:
        """Queue a FAILED (or never queued) invoice sync again, with a fresh budget of attempts."""
        invoice = ledger.get_invoice(session, scope, invoice_id)
        # Concurrent retries wait here, then the later ones find the sync PENDING and get 409.
        session.scalars(select(Invoice.id).where(Invoice.id == invoice.id).with_for_update()).one()
        session.expire_all()
        if invoice.status not in SENT_TO_NOMOD:
            raise Conflict(
                f"invoice {invoice.id} is {invoice.status}; only finalized invoices go to Nomod", code="INVALID_STATE"
            )
        if mapped_id(session, scope, INVOICE, invoice.id) is not None:
            raise Conflict(f"invoice {invoice.id} is already in Nomod", code="INVALID_STATE")
        state = _state(session, scope, INVOICE, invoice.id)
        if state is not None and state.status == "PENDING":
            raise Conflict(f"invoice {invoice.id} is already queued for Nomod", code="INVALID_STATE")
        if self.connection(session, scope) is None:
            raise NomodError(API_ERROR, detail=NO_CONNECTION)
        return self._queue(session, scope, invoice.id)

    def _queue(self, session: Session, scope: Scope, invoice_id: str) -> IntegrationSync:
        state = self._set_state(session, scope, INVOICE, invoice_id, "PENDING", None)
        state.attempts = 0
        state.next_attempt_at = None
        session.flush()
        assert self.queue is not None, "queueing invoice syncs needs a job queue"
        self.queue.enqueue(session, TASK_NOMOD_INVOICE, {"sync_id": state.id})
        return state

    def requeue_pending(self) -> int:
        """Queue every PENDING invoice sync again (embedded mode, at start)."""
        assert self.queue is not None
        with transaction(self.session_factory) as session:
            states = session.scalars(
                select(IntegrationSync).where(
                    IntegrationSync.status == "PENDING", IntegrationSync.entity_type == INVOICE
                )
            ).all()
            for state in states:
                self.queue.enqueue(session, TASK_NOMOD_INVOICE, {"sync_id": state.id}, run_at=state.next_attempt_at)
            return len(states)

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
            existing = _mapping_row(session, scope, INVOICE, invoice_id)
            invoice = session.get(Invoice, invoice_id)
            customer_id = invoice.customer_id if invoice is not None else None
        if existing is not None:
            self._record_state(scope, INVOICE, invoice_id, "SYNCED", None)
            return existing.provider_id, existing.url
        if customer_id is None:
            raise NotFound(f"invoice {invoice_id} no longer exists")
        nomod_customer_id = self.ensure_customer(scope, customer_id)
        with self.exclusive(f"nomod:invoice:{invoice_id}") as session:
            existing = _mapping_row(session, scope, INVOICE, invoice_id)
            if existing is None:
                invoice = session.get(Invoice, invoice_id)
                assert invoice is not None
                if invoice.status not in SENT_TO_NOMOD:
                    raise Conflict(
                        f"invoice {invoice.id} is {invoice.status}; it is not sent to Nomod", code="INVALID_STATE"
                    )
                connection = self._usable_connection(session, scope)
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
                existing = self.new_mapping(
                    scope, INVOICE, invoice.id, _required_id(created, "invoice"), created.get("url")
                )
                session.add(existing)
            state = self._set_state(session, scope, INVOICE, invoice_id, "SYNCED", None)
            state.attempts += 1
            state.next_attempt_at = None
            return existing.provider_id, existing.url

    def _invoice_sync_failed(self, sync_id: str, error: dict[str, Any], *, transient: bool) -> str | None:
        with transaction(self.session_factory) as session:
            state = session.scalars(
                select(IntegrationSync).where(IntegrationSync.id == sync_id).with_for_update()
            ).one_or_none()
            if state is None or state.status != "PENDING":
                return state.status if state else None
            state.attempts += 1
            now = utcnow()
            state.updated_at = now
            state.last_error = error | {"at": now.isoformat()}
            if transient and state.attempts < self.retry.max_attempts:
                state.next_attempt_at = next_attempt_at(state.attempts, self.retry.backoff_seconds)
                assert self.queue is not None
                self.queue.enqueue(session, TASK_NOMOD_INVOICE, {"sync_id": state.id}, run_at=state.next_attempt_at)
            else:
                state.status = "FAILED"
                state.next_attempt_at = None
            log.info(
                "Nomod sync %s: %s after attempt %d (%s)", sync_id, state.status, state.attempts, error.get("code")
            )
            return state.status

    # Payment links -------------------------------------------------------------------------

    def payment_link(self, scope: Scope, invoice_id: str) -> PaymentLink:
        """The URL the customer pays at: the Nomod invoice's, or else a new Nomod payment link's."""
        with self.session_factory() as session:
            invoice = ledger.get_invoice(session, scope, invoice_id)
            if invoice.status != InvoiceStatus.FINALIZED:
                hint = {"DRAFT": "finalize it first", "PAID": "it is already paid", "VOIDED": "it is voided"}
                raise Conflict(
                    f"invoice {invoice.id} is {invoice.status}; {hint.get(invoice.status, '')}".rstrip("; "),
                    code="INVALID_STATE",
                )
            customer_id = invoice.customer_id
            state = _state(session, scope, INVOICE, invoice.id)
            synced = _mapping_row(session, scope, INVOICE, invoice_id)
        nomod_customer_id = self.ensure_customer(scope, customer_id)
        if synced is None and state is not None and state.status == "PENDING":
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
            link = _mapping_row(session, scope, INVOICE_LINK, invoice_id)
            if link is None:
                current = session.get(Invoice, invoice_id)
                assert current is not None
                connection = self._usable_connection(session, scope)
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
                link = self.new_mapping(
                    scope, INVOICE_LINK, current.id, _required_id(created, "link"), created.get("url")
                )
                session.add(link)
                if _state(session, scope, INVOICE_LINK, current.id) is not None:
                    self._set_state(session, scope, INVOICE_LINK, current.id, "SYNCED", None)
            return PaymentLink(invoice_id, "link", link.provider_id, link.url, nomod_customer_id)

    # Plumbing ------------------------------------------------------------------------------

    @staticmethod
    def new_mapping(
        scope: Scope, entity_type: str, entity_id: str, provider_id: str, url: Any = None
    ) -> EntityIntegrationMapping:
        return EntityIntegrationMapping(
            tenant_id=scope.tenant_id,
            environment_id=scope.environment_id,
            entity_type=entity_type,
            entity_id=entity_id,
            provider=PROVIDER,
            provider_id=provider_id,
            url=url if isinstance(url, str) and url else None,
        )

    @staticmethod
    def _set_state(
        session: Session, scope: Scope, entity_type: str, entity_id: str, status: str, error: dict[str, Any] | None
    ) -> IntegrationSync:
        state = _state(session, scope, entity_type, entity_id)
        if state is None:
            state = IntegrationSync(
                tenant_id=scope.tenant_id,
                environment_id=scope.environment_id,
                entity_type=entity_type,
                entity_id=entity_id,
                provider=PROVIDER,
                attempts=0,
            )
            session.add(state)
        now = utcnow()
        state.status = status
        state.last_error = error | {"at": now.isoformat()} if error else None
        state.updated_at = now
        return state

    def _record_state(
        self, scope: Scope, entity_type: str, entity_id: str, status: str, error: dict[str, Any] | None
    ) -> None:
        # The same key as the sync of that record, so its state row is written by one at a time.
        with self.exclusive(f"nomod:{entity_type}:{entity_id}") as session:
            self._set_state(session, scope, entity_type, entity_id, status, error)

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

        state = _state(session, scope, entity_type, entity_id)
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
            connection = session.get(NomodConnection, connection_id)
            if connection is not None:
                connection.status = "FAILED"
                connection.status_reason = "Nomod rejected the API key; save the connection with a valid key"
                connection.last_error = error.as_dict() | {"at": utcnow().isoformat()}
                connection.updated_at = utcnow()

    @contextmanager
    def exclusive(self, key: str) -> Iterator[Session]:
        """A transaction that holds ``key``: across processes on PostgreSQL, within this process everywhere."""
        with exclusive_transaction(self.session_factory, key) as session:
            yield session


def _required_id(created: dict[str, Any], what: str) -> str:
    nomod_id = created.get("id")
    if not isinstance(nomod_id, str) or not nomod_id:
        raise NomodError(API_ERROR, detail=f"Nomod created the {what} but answered without its id")
    return nomod_id


# Nomod's documented field limits (API reference: create-contact, invoices/create, generate-link).
NAME_MAX = 150
PHONE_MAX = 15
INVOICE_NUMBER_MAX = 30
TITLE_MAX = 50
NOTE_MAX = 280
ITEM_NAME_MAX = 200
QUANTITY_MAX = 999  # "typically 1-999" (flexprice's Nomod client)
_PHONE_PUNCTUATION = str.maketrans("", "", " -.()/")


def _too_long(what: str, record_id: str, field: str, value: str, limit: int) -> NomodError:
    return NomodError(
        API_ERROR,
        detail=f"{what} {record_id}: {field} {value!r} has {len(value)} characters; Nomod allows at most {limit}",
    )


def customer_payload(customer_id: str, name: str, email: str, phone: str | None) -> dict[str, Any]:
    """``POST /v1/customers``: only documented fields, and only those with a value (Nomod types them
    as strings; how it treats JSON null is unknown)."""
    first_name, last_name = split_name(name)
    if len(first_name) > NAME_MAX:
        raise _too_long("customer", customer_id, "first_name", first_name, NAME_MAX)
    payload: dict[str, Any] = {"first_name": first_name, "email": email}
    if last_name:
        if len(last_name) > NAME_MAX:
            raise _too_long("customer", customer_id, "last_name", last_name, NAME_MAX)
        payload["last_name"] = last_name
    number = (phone or "").strip().translate(_PHONE_PUNCTUATION)
    if number:
        if len(number) > PHONE_MAX:
            raise _too_long("customer", customer_id, "phone_number", number, PHONE_MAX)
        payload["phone_number"] = number
    return payload


def invoice_payload(
    invoice: Invoice, lines: list[InvoiceLine], nomod_customer_id: str, *, allow_service_fee: bool
) -> dict[str, Any]:
    """``POST /v1/invoices`` for a finalized invoice, checked against Nomod's limits first."""
    if len(invoice.invoice_number) > INVOICE_NUMBER_MAX:
        raise _too_long("invoice", invoice.id, "invoice_number", invoice.invoice_number, INVOICE_NUMBER_MAX)
    today = utcnow().date()
    if invoice.due_date < today:
        # Nomod answers invalid_due_date for a due date before the invoice's start (today).
        raise NomodError(
            API_ERROR,
            detail=f"invoice {invoice.id} was due on {invoice.due_date.isoformat()}; Nomod refuses invoices due "
            "before today, so ask for a payment link instead",
        )
    return {
        "customer": nomod_customer_id,
        "currency": invoice.currency,
        "items": _items(invoice, lines),
        "due_date": invoice.due_date.isoformat(),
        "invoice_number": invoice.invoice_number,
        "note": _note(invoice),
        "allow_service_fee": allow_service_fee,
    }


def link_payload(invoice: Invoice, *, allow_service_fee: bool) -> dict[str, Any]:
    """``POST /v1/links`` for what is outstanding on an invoice."""
    title = f"Invoice {invoice.invoice_number}"[:TITLE_MAX]
    return {
        "title": title,
        "currency": invoice.currency,
        "items": [
            {"name": title, "amount": format_amount(invoice.amount_outstanding, invoice.currency), "quantity": 1}
        ],
        "note": _note(invoice),
        "allow_service_fee": allow_service_fee,
    }


def _note(invoice: Invoice) -> str:
    """Names the arsync invoice, so a create whose answer was lost can be found again."""
    return f"arsync invoice {invoice.id}"[:NOTE_MAX]


def object_id(value: Any) -> str | None:
    """An id Nomod writes either bare or as an object with ``id``."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def _items(invoice: Invoice, lines: list[InvoiceLine]) -> list[dict[str, Any]]:
    """Nomod items that add up to the invoice total exactly.

    A line whose quantity is a whole number and whose unit price fits the currency goes as is;
    any other line goes as its (already rounded) amount × 1, so Nomod never rounds anything.
    Credit lines cannot be items, so an invoice with one goes as a single item of its total.
    """
    places = exponent(invoice.currency)
    whole_invoice = [
        {
            "name": f"Invoice {invoice.invoice_number}",
            "amount": format_amount(invoice.amount_total, invoice.currency),
            "quantity": 1,
        }
    ]
    # An invoice whose lines do not add up to its total (tax on top, say) is billed as one item of
    # the total, so Nomod asks for exactly what the invoice says.
    if (
        not lines
        or any(line.amount <= 0 for line in lines)
        or sum(line.amount for line in lines) != invoice.amount_total
    ):
        return whole_invoice
    items = []
    for line in lines:
        whole = line.quantity == line.quantity.to_integral_value() and 1 <= line.quantity <= QUANTITY_MAX
        unit_fits = line.unit_price == line.unit_price.quantize(Decimal(10) ** -places)
        if whole and unit_fits and line.unit_price * line.quantity == line.amount:
            items.append(
                {
                    "name": line.description[:ITEM_NAME_MAX] or f"Invoice {invoice.invoice_number}",
                    "amount": format_amount(line.unit_price.quantize(Decimal(10) ** -places), invoice.currency),
                    "quantity": int(line.quantity),
                }
            )
        else:
            name = f"{line.description[:160]} ({line.quantity.normalize():f} × {line.unit_price.normalize():f})"
            items.append({"name": name, "amount": format_amount(line.amount, invoice.currency), "quantity": 1})
    return items


def _state(session: Session, scope: Scope, entity_type: str, entity_id: str) -> IntegrationSync | None:
    return session.scalar(
        select(IntegrationSync).where(
            in_scope(IntegrationSync, scope),
            IntegrationSync.entity_type == entity_type,
            IntegrationSync.entity_id == entity_id,
            IntegrationSync.provider == PROVIDER,
        )
    )


def _mapping_row(session: Session, scope: Scope, entity_type: str, entity_id: str) -> EntityIntegrationMapping | None:
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
    row = _mapping_row(session, scope, entity_type, entity_id)
    return row.provider_id if row else None


# Reading ------------------------------------------------------------------------------------

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
    mapping = _mapping_row(session, scope, CUSTOMER, customer.id)
    state = _state(session, scope, CUSTOMER, customer.id)
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
