"""Changes to the Nomod connection and sync state, made inside the caller's transaction.

Every function takes the caller's session and never commits; ``nomod.flows`` owns the
transactions and the calls to Nomod.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arsync.db import utcnow
from arsync.errors import InvalidInput, InvalidState, NomodApiError, NomodError
from arsync.jobs.queue import JobQueue, next_attempt_at
from arsync.ledger import service as ledger
from arsync.ledger.models import SENT_TO_NOMOD, Invoice
from arsync.nomod import signing
from arsync.nomod.models import EntityIntegrationMapping, IntegrationSync, NomodConnection
from arsync.nomod.repository import CUSTOMER, INVOICE, PROVIDER, mapped_id, mapping_row, sync_state
from arsync.nomod.schemas import API_KEY_PATTERN
from arsync.outbound import OutboundPolicy, validate_base_url
from arsync.tenancy.scope import Scope, in_scope
from arsync.vault import Vault, mask

log = logging.getLogger(__name__)

TASK_NOMOD_INVOICE = "arsync.nomod_invoice"  # job names are stored with queued jobs: never rename one

NO_CONNECTION = "this environment has no Nomod connection (PUT /api/v1/connections/nomod)"


@dataclass(frozen=True)
class RetryPolicy:
    """Job-level retries of transient failures (each call also retries a few times itself)."""

    max_attempts: int = 8
    backoff_seconds: float = 5.0


@dataclass(frozen=True)
class ConnectionSettings:
    """What a user saves; a None setting keeps the current one."""

    api_key: str
    invoice_sync_outbound: bool
    base_url: str | None = None
    webhook_secret: str | None = None
    allow_service_fee: bool | None = None

    def checked(self, outbound: OutboundPolicy) -> ConnectionSettings:
        """These settings with the base URL normalised; InvalidInput names the first bad field."""
        if not re.fullmatch(API_KEY_PATTERN, self.api_key):
            raise InvalidInput(
                "apiKey must be a Nomod secret key (sk_test_… or sk_live_…)", details={"field": "apiKey"}
            )
        base_url = self.base_url
        if base_url is not None:
            base_url = validate_base_url(base_url.rstrip("/"))
            outbound.check_url(base_url, "baseUrl")
        secret_problem = signing.secret_problem(self.webhook_secret) if self.webhook_secret is not None else None
        if secret_problem:
            raise InvalidInput(f"webhookSecret {secret_problem}", details={"field": "webhookSecret"})
        return ConnectionSettings(
            self.api_key, self.invoice_sync_outbound, base_url, self.webhook_secret, self.allow_service_fee
        )


def connection(session: Session, scope: Scope) -> NomodConnection | None:
    return session.scalar(select(NomodConnection).where(in_scope(NomodConnection, scope)))


def usable_connection(session: Session, scope: Scope) -> NomodConnection:
    found = connection(session, scope)
    if found is None:
        raise NomodApiError(detail=NO_CONNECTION)
    if found.status == "FAILED":
        raise NomodApiError(detail=f"the Nomod connection is FAILED: {found.status_reason}")
    return found


def save_connection(
    session: Session, scope: Scope, settings: ConnectionSettings, *, vault: Vault, default_base_url: str
) -> NomodConnection:
    """Create or update the environment's Nomod connection from checked settings; it is ACTIVE after."""
    saved = connection(session, scope)
    if saved is None:
        saved = NomodConnection(tenant_id=scope.tenant_id, environment_id=scope.environment_id, allow_service_fee=False)
        session.add(saved)
    saved.base_url = (settings.base_url or saved.base_url or default_base_url).rstrip("/")
    saved.api_key_encrypted = vault.encrypt(settings.api_key)
    saved.api_key_hint = mask(settings.api_key)
    if settings.webhook_secret is not None:
        saved.webhook_secret_encrypted = vault.encrypt(settings.webhook_secret)
    saved.invoice_sync_outbound = settings.invoice_sync_outbound
    if settings.allow_service_fee is not None:
        saved.allow_service_fee = settings.allow_service_fee
    saved.status, saved.status_reason, saved.last_error = "ACTIVE", None, None
    saved.updated_at = utcnow()
    session.flush()
    return saved


def mark_connection_working(session: Session, connection_id: str) -> None:
    """The key was just accepted by Nomod: a connection FAILED for a rejected key works again."""
    working = session.get(NomodConnection, connection_id)
    if working is not None and working.status != "ACTIVE":
        working.status, working.status_reason, working.last_error = "ACTIVE", None, None


def mark_connection_failed(session: Session, connection_id: str, error: NomodError) -> None:
    """Nomod refused the key: the connection is FAILED until a valid key is saved."""
    failed = session.get(NomodConnection, connection_id)
    if failed is not None:
        failed.status = "FAILED"
        failed.status_reason = "Nomod rejected the API key; save the connection with a valid key"
        failed.last_error = error.as_dict() | {"at": utcnow().isoformat()}
        failed.updated_at = utcnow()


def unlink_customer(session: Session, scope: Scope, customer_id: str) -> None:
    """Forget the customer's Nomod customer id, e.g. after the customer was deleted in Nomod.

    Its next Nomod sync creates a new Nomod customer. Its invoices already in Nomod keep their
    mappings and payment URLs.
    """
    customer = ledger.get_customer(session, scope, customer_id)
    mapping = mapping_row(session, scope, CUSTOMER, customer.id)
    if mapping is None:
        raise InvalidState(f"customer {customer.id} is not linked to a Nomod customer")
    session.delete(mapping)
    state = sync_state(session, scope, CUSTOMER, customer.id)
    if state is not None:
        session.delete(state)
    metadata = dict(customer.metadata_ or {})
    metadata.pop("nomod_customer_id", None)
    metadata.pop("nomod_sync_timestamp", None)
    customer.metadata_ = metadata
    customer.updated_at = utcnow()
    log.info("customer %s unlinked from Nomod customer %s", customer.id, mapping.provider_id)


# Invoice sync state ----------------------------------------------------------------------


def queue_invoice_sync(session: Session, scope: Scope, invoice: Invoice, queue: JobQueue) -> IntegrationSync | None:
    """In the finalizing transaction: queue the invoice's sync if outbound sync is on."""
    found = connection(session, scope)
    if found is None or not found.invoice_sync_outbound:
        return None
    return _queue(session, scope, invoice.id, queue)


def retry_invoice_sync(session: Session, scope: Scope, invoice_id: str, queue: JobQueue) -> IntegrationSync:
    """Queue a FAILED (or never queued) invoice sync again, with a fresh budget of attempts."""
    invoice = ledger.get_invoice(session, scope, invoice_id)
    # Concurrent retries wait here, then the later ones find the sync PENDING and get 409.
    session.scalars(select(Invoice.id).where(Invoice.id == invoice.id).with_for_update()).one()
    session.expire_all()
    if invoice.status not in SENT_TO_NOMOD:
        raise InvalidState(f"invoice {invoice.id} is {invoice.status}; only finalized invoices go to Nomod")
    if mapped_id(session, scope, INVOICE, invoice.id) is not None:
        raise InvalidState(f"invoice {invoice.id} is already in Nomod")
    state = sync_state(session, scope, INVOICE, invoice.id)
    if state is not None and state.status == "PENDING":
        raise InvalidState(f"invoice {invoice.id} is already queued for Nomod")
    if connection(session, scope) is None:
        raise NomodApiError(detail=NO_CONNECTION)
    return _queue(session, scope, invoice.id, queue)


def _queue(session: Session, scope: Scope, invoice_id: str, queue: JobQueue) -> IntegrationSync:
    state = set_state(session, scope, INVOICE, invoice_id, "PENDING", None)
    state.attempts = 0
    state.next_attempt_at = None
    session.flush()
    queue.enqueue(session, TASK_NOMOD_INVOICE, {"sync_id": state.id})
    return state


def requeue_pending(session: Session, queue: JobQueue) -> int:
    """Queue every PENDING invoice sync again (embedded mode, at start)."""
    states = session.scalars(
        select(IntegrationSync).where(IntegrationSync.status == "PENDING", IntegrationSync.entity_type == INVOICE)
    ).all()
    for state in states:
        queue.enqueue(session, TASK_NOMOD_INVOICE, {"sync_id": state.id}, run_at=state.next_attempt_at)
    return len(states)


def record_invoice_sync_failure(
    session: Session, sync_id: str, error: dict[str, Any], *, transient: bool, retry: RetryPolicy, queue: JobQueue
) -> str | None:
    """Count a failed attempt: a transient one is queued again while attempts last; returns the status."""
    state = session.scalars(
        select(IntegrationSync).where(IntegrationSync.id == sync_id).with_for_update()
    ).one_or_none()
    if state is None or state.status != "PENDING":
        return state.status if state else None
    state.attempts += 1
    now = utcnow()
    state.updated_at = now
    state.last_error = error | {"at": now.isoformat()}
    if transient and state.attempts < retry.max_attempts:
        state.next_attempt_at = next_attempt_at(state.attempts, retry.backoff_seconds)
        queue.enqueue(session, TASK_NOMOD_INVOICE, {"sync_id": state.id}, run_at=state.next_attempt_at)
    else:
        state.status = "FAILED"
        state.next_attempt_at = None
    log.info("Nomod sync %s: %s after attempt %d (%s)", sync_id, state.status, state.attempts, error.get("code"))
    return state.status


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


def set_state(
    session: Session, scope: Scope, entity_type: str, entity_id: str, status: str, error: dict[str, Any] | None
) -> IntegrationSync:
    state = sync_state(session, scope, entity_type, entity_id)
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


def move_customer_links(session: Session, scope: Scope, customer_id: str, debtor_id: str) -> None:
    """Before ``customer_id`` is merged into ``debtor_id``: its Nomod customer (and that link's
    sync state) become the debtor's, unless the debtor has its own already; then the merged
    one's are forgotten here (its Nomod customer stays in Nomod)."""
    mapping, debtor_mapping = (
        mapping_row(session, scope, CUSTOMER, customer_id),
        mapping_row(session, scope, CUSTOMER, debtor_id),
    )
    state, debtor_state = (
        sync_state(session, scope, CUSTOMER, customer_id),
        sync_state(session, scope, CUSTOMER, debtor_id),
    )
    if mapping is not None and debtor_mapping is None:
        mapping.entity_id = debtor_id
        if state is not None and debtor_state is None:
            state.entity_id = debtor_id
            state = None
    elif mapping is not None:
        session.delete(mapping)
    if state is not None:
        session.delete(state)
    session.flush()
