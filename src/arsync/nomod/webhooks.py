"""Nomod's webhooks: verified, read back at the source, routed through arsync's own mappings, logged.

Nomod's event names and body shapes are not fully documented (unknown), so nothing here
depends on them. Bodies seen in the wild are ``{"eventId", "type": "charge.completed", "data":
{"id"}}`` and a flat ``{"id", "invoice_id" | "payment_link_id"}`` (flexprice's Nomod webhook
handler). For any delivery whose Svix signature verifies, the charge id is taken from whichever
shape it has, the charge is read back from Nomod with the environment's key, and only that
answer decides: its status, its ``total`` and what it paid.

A charge is routed to an arsync invoice, in this order, by: the link it carries
(``link: {id, …}``); a Nomod invoice or link id in the charge or in the signed body; the
``arsync invoice …`` note arsync puts on what it creates; and last, the payer's Nomod customer,
whose Nomod invoices that arsync made are read back to find the one now paid.

Each paid charge becomes one cash application, mapped to the charge id under a unique key, so a
webhook delivered five times (or five at once) records one payment. When the charge fits the
invoice (same currency, not more than is outstanding, invoice still FINALIZED) the cash
application is approved on the spot, which records the payment and queues its ERP push.
Otherwise it waits, PENDING, for someone to look at it.

Every delivery is written to the delivery log with its outcome; one that cannot be routed or
applied is ``needs_attention`` there, never dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arsync import metrics
from arsync.db import transaction, utcnow
from arsync.errors import InvalidInput, NomodApiError, NomodError, NotFound, Unauthorized
from arsync.ledger.models import CashApplication, Invoice, InvoiceStatus
from arsync.money import decimal_places, exponent, format_amount
from arsync.nomod import service as nomod_service
from arsync.nomod import signing
from arsync.nomod.client import NomodClient
from arsync.nomod.flows import NomodFlows
from arsync.nomod.models import EntityIntegrationMapping, NomodConnection, NomodWebhookDelivery
from arsync.nomod.payloads import object_id
from arsync.nomod.repository import CASH_APPLICATION, CUSTOMER, INVOICE, INVOICE_LINK, PROVIDER, entity_for
from arsync.notify.flows import Notifier
from arsync.tenancy.scope import Scope, in_scope

log = logging.getLogger(__name__)

# "paid" is what flexprice's handler acts on. Nomod's docs example of a charge shows
# "authorised"; whether that means the money is settled is unknown, so such a charge is shown
# as needing attention rather than recorded or ignored.
PAID_STATUSES = frozenset({"paid", "captured", "completed", "succeeded"})
UNSETTLED_STATUSES = frozenset({"authorised", "authorized"})
NOTE = re.compile(r"arsync invoice (inv_[A-Za-z0-9]+)")
CHARGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
MAX_CUSTOMER_CANDIDATES = 20


class Approver(Protocol):
    def approve_cash_application(
        self, session: Session, scope: Scope, application_id: str, *, keep_rest_as_credit: bool = ...
    ) -> CashApplication: ...


@dataclass(frozen=True)
class WebhookOutcome:
    status: str  # recorded | duplicate | needs_attention | ignored
    reason: str | None = None
    charge_id: str | None = None
    invoice_id: str | None = None
    cash_application_id: str | None = None
    payment_id: str | None = None
    delivery_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "chargeId": self.charge_id,
            "invoiceId": self.invoice_id,
            "cashApplicationId": self.cash_application_id,
            "paymentId": self.payment_id,
            "deliveryId": self.delivery_id,
        }


@dataclass(frozen=True)
class Delivery:
    """What a verified body says, in whichever known shape it came."""

    event_type: str | None
    charge_id: str | None
    invoice_hint: str | None  # a Nomod invoice id
    link_hint: str | None  # a Nomod payment link id


def read_delivery(event: dict[str, Any]) -> Delivery:
    data = event.get("data")
    source = data if isinstance(data, dict) and "id" in data else event
    charge_id = source.get("id")
    if not isinstance(charge_id, str) or not CHARGE_ID.match(charge_id):
        charge_id = None

    def text(key: str) -> str | None:
        value = source.get(key, event.get(key))
        return value if isinstance(value, str) and CHARGE_ID.match(value) else None

    event_type = event.get("type")
    return Delivery(
        event_type=event_type[:100] if isinstance(event_type, str) else None,
        charge_id=charge_id,
        invoice_hint=text("invoice_id"),
        link_hint=text("payment_link_id"),
    )


class PaidWebhooks:
    def __init__(self, nomod: NomodFlows, approver: Approver, notifier: Notifier | None = None) -> None:
        self.nomod = nomod
        self.approver = approver
        self.notifier = notifier

    def handle(self, scope: Scope, headers: Mapping[str, str], body: bytes) -> WebhookOutcome:
        message_id = (headers.get("svix-id") or "")[:200] or None
        with self.nomod.session_factory() as session:
            connection = nomod_service.connection(session, scope)
            if connection is None:
                raise NotFound("no Nomod connection in this tenant and environment")
            session.expunge(connection)
        if connection.webhook_secret_encrypted is None:
            reason = "no webhook secret is set on the Nomod connection; save it with webhookSecret"
            self._log(scope, message_id, "rejected", reason)
            raise Unauthorized(reason)
        try:
            signing.verify(self.nomod.vault.decrypt(connection.webhook_secret_encrypted), headers, body)
        except signing.InvalidSignature as exc:
            self._log(scope, message_id, "rejected", f"signature rejected: {exc}")
            raise Unauthorized(f"webhook signature rejected: {exc}") from None
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            self._log(scope, message_id, "needs_attention", "the body is not JSON", verified=True)
            raise InvalidInput("the webhook body is not JSON") from None
        if not isinstance(event, dict):
            self._log(scope, message_id, "needs_attention", "the body is not a JSON object", verified=True)
            raise InvalidInput("the webhook body is not a JSON object")
        delivery = read_delivery(event)
        try:
            outcome = self._process(scope, connection, delivery)
        except NomodError as exc:
            # Nomod is told to deliver again (a 502), and the delivery is logged as failed.
            reason = f"Nomod could not be asked about charge {delivery.charge_id}: {exc.detail}"
            self._log(scope, message_id, "failed", reason, verified=True, delivery=delivery, body=event)
            raise
        delivery_id = self._log(
            scope, message_id, outcome.status, outcome.reason, verified=True, delivery=delivery, body=event,
            outcome=outcome,
        )  # fmt: skip
        return WebhookOutcome(**(outcome.__dict__ | {"delivery_id": delivery_id}))

    def _process(self, scope: Scope, connection: NomodConnection, delivery: Delivery) -> WebhookOutcome:
        charge_id = delivery.charge_id
        if charge_id is None:
            return WebhookOutcome("needs_attention", "no charge id in the body (neither data.id nor id)")
        try:
            charge = self.nomod.call(connection, lambda client: client.get_charge(charge_id))
        except NomodError as exc:
            if exc.transient:
                raise
            return WebhookOutcome("needs_attention", f"Nomod does not show charge {charge_id}: {exc.detail}", charge_id)
        status = str(charge.get("status") or "").lower()
        if status in UNSETTLED_STATUSES:
            reason = f"Nomod says charge {charge_id} is {status!r}, not paid; check it in Nomod"
            return WebhookOutcome("needs_attention", reason, charge_id)
        if status not in PAID_STATUSES:
            return WebhookOutcome("ignored", f"Nomod says charge {charge_id} is {status or 'without a status'!r}",
                                  charge_id)  # fmt: skip
        with self.nomod.session_factory() as session:
            known = _recorded(session, scope, charge_id)
            if known is not None:
                return _duplicate(known, charge_id)
        invoice_id = self._route(scope, connection, charge, delivery)
        if invoice_id is None:
            reason = "the charge cannot be matched to an invoice or payment link arsync created in Nomod"
            log.warning("Nomod charge %s needs attention in %s: %s", charge_id, scope, reason)
            return WebhookOutcome("needs_attention", reason, charge_id)
        try:
            amount, currency = settled_amount(charge)
        except NomodError as exc:
            return WebhookOutcome("needs_attention", exc.detail, charge_id, invoice_id)
        try:
            return self._record(scope, charge_id, invoice_id, amount, currency, _charge_date(charge))
        except IntegrityError:
            # Another process recorded this charge between our check and our insert.
            return self._already_recorded(scope, charge_id)

    # Routing --------------------------------------------------------------------------------

    def _route(
        self, scope: Scope, connection: NomodConnection, charge: dict[str, Any], delivery: Delivery
    ) -> str | None:
        """The arsync invoice a charge paid, or None."""
        references = [
            (INVOICE_LINK, object_id(charge.get("link"))),
            (INVOICE, object_id(charge.get("invoice")) or object_id(charge.get("invoice_id"))),
            (INVOICE, delivery.invoice_hint),
            (INVOICE_LINK, delivery.link_hint),
        ]
        with self.nomod.session_factory() as session:
            for entity_type, provider_id in references:
                if provider_id:
                    found = entity_for(session, scope, entity_type, provider_id)
                    if found is not None:
                        return found
            noted = NOTE.search(str(charge.get("note") or ""))
            if noted is not None and _invoice_in_scope(session, scope, noted.group(1)):
                return noted.group(1)
            candidates = _open_nomod_invoices_of(session, scope, object_id(charge.get("customer")))

        def statuses(client: NomodClient) -> list[str]:
            return [str(client.get_invoice(nomod_id).get("status") or "").lower() for _, nomod_id in candidates]

        try:
            now = self.nomod.call(connection, statuses) if candidates else []
        except NomodError as exc:
            if exc.transient:
                raise
            return None  # a Nomod invoice that cannot be read cannot be told paid
        paid = [invoice_id for (invoice_id, _), status in zip(candidates, now, strict=True) if status == "paid"]
        return paid[0] if len(paid) == 1 else None

    # Recording ------------------------------------------------------------------------------

    def _record(
        self, scope: Scope, charge_id: str, invoice_id: str, amount: Decimal, currency: str, paid_on: date
    ) -> WebhookOutcome:
        with self.nomod.exclusive(f"nomod:charge:{charge_id}") as session:
            known = _recorded(session, scope, charge_id)
            if known is not None:
                return _duplicate(known, charge_id)
            invoice = session.get(Invoice, invoice_id)
            assert invoice is not None
            application = CashApplication(
                tenant_id=scope.tenant_id,
                environment_id=scope.environment_id,
                invoice_id=invoice.id,
                amount=amount,
                application_date=paid_on,
                reference=f"Nomod charge {charge_id}"[:200],
                status="PENDING",
                source="nomod",
                currency=currency,
                review_reason=_why_not_applicable(invoice, amount, currency),
            )
            session.add(application)
            session.flush()
            session.add(nomod_service.new_mapping(scope, CASH_APPLICATION, application.id, charge_id))
            problem = application.review_reason
            if problem is None:
                self.approver.approve_cash_application(session, scope, application.id)
                log.info("Nomod charge %s paid %s %s on invoice %s", charge_id, amount, currency, invoice.id)
                return WebhookOutcome("recorded", None, charge_id, invoice.id, application.id, application.payment_id)
            log.warning("Nomod charge %s needs attention: %s", charge_id, problem)
            return WebhookOutcome(
                "needs_attention", f"{problem}; the cash application waits for review", charge_id, invoice.id,
                application.id,
            )  # fmt: skip

    def _already_recorded(self, scope: Scope, charge_id: str) -> WebhookOutcome:
        with self.nomod.session_factory() as session:
            known = _recorded(session, scope, charge_id)
            assert known is not None, "the unique key refused the insert, so the charge is recorded"
            return _duplicate(known, charge_id)

    def _log(
        self,
        scope: Scope,
        message_id: str | None,
        outcome_status: str,
        reason: str | None,
        *,
        verified: bool = False,
        delivery: Delivery | None = None,
        body: dict[str, Any] | None = None,
        outcome: WebhookOutcome | None = None,
    ) -> str:
        metrics.WEBHOOKS_IN.labels(outcome_status).inc()
        with transaction(self.nomod.session_factory) as session:
            row = NomodWebhookDelivery(
                tenant_id=scope.tenant_id,
                environment_id=scope.environment_id,
                received_at=utcnow(),
                message_id=message_id,
                event_type=delivery.event_type if delivery else None,
                verified=verified,
                charge_id=delivery.charge_id if delivery else None,
                outcome=outcome_status,
                reason=reason[:2000] if reason else None,
                invoice_id=outcome.invoice_id if outcome else None,
                cash_application_id=outcome.cash_application_id if outcome else None,
                body=body,
            )
            session.add(row)
            session.flush()
            if outcome_status == "needs_attention" and self.notifier is not None:
                self.notifier.emit(session, scope, "nomod.webhook.unmatched", {
                    "webhookDeliveryId": row.id,
                    "messageId": message_id,
                    "chargeId": row.charge_id,
                    "invoiceId": row.invoice_id,
                    "reason": row.reason,
                })  # fmt: skip
            return row.id


def list_deliveries(
    session: Session, scope: Scope, *, outcome: str | None, offset: int, limit: int
) -> list[NomodWebhookDelivery]:
    """Newest first; one more than ``limit`` tells the caller there is another page."""
    query = select(NomodWebhookDelivery).where(in_scope(NomodWebhookDelivery, scope))
    if outcome is not None:
        query = query.where(NomodWebhookDelivery.outcome == outcome)
    query = query.order_by(NomodWebhookDelivery.received_at.desc(), NomodWebhookDelivery.id.desc())
    return list(session.scalars(query.offset(offset).limit(limit + 1)))


def settled_amount(charge: dict[str, Any]) -> tuple[Decimal, str]:
    """What a charge paid towards the invoice: its ``total`` less any service fee and tip.

    A charge carries ``total``, ``service_fee`` and ``tip`` as decimal strings (flexprice's
    ChargeResponse); whether ``total`` includes the fee is unknown, so the fee and tip are taken
    off (with the service fee off, as arsync sets it by default, both are zero). Older shapes
    with ``amount`` instead of ``total`` are read too.
    """
    currency = charge.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        raise NomodApiError(detail=f"charge {charge.get('id')} has no currency")
    raw = charge.get("total", charge.get("amount"))
    total = _decimal(charge, "total", raw)
    extras = sum((_decimal(charge, key, charge.get(key)) for key in ("service_fee", "tip") if charge.get(key)),
                 Decimal(0))  # fmt: skip
    amount = total - extras
    if amount <= 0 or decimal_places(amount) > exponent(currency):
        raise NomodApiError(detail=f"charge {charge.get('id')} total {raw!r} is not a valid {currency} amount")
    return amount, currency


def _decimal(charge: dict[str, Any], key: str, raw: Any) -> Decimal:
    if isinstance(raw, float) or not isinstance(raw, str | int) or isinstance(raw, bool):
        raise NomodApiError(detail=f"charge {charge.get('id')} {key} {raw!r} is not a decimal string")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise NomodApiError(detail=f"charge {charge.get('id')} {key} {raw!r} is not a decimal") from None
    if not value.is_finite() or value < 0:
        raise NomodApiError(detail=f"charge {charge.get('id')} {key} {raw!r} is not a valid amount")
    return value


def _charge_date(charge: dict[str, Any]) -> date:
    created = charge.get("created")
    if isinstance(created, str):
        try:
            return datetime.fromisoformat(created.replace("Z", "+00:00")).date()
        except ValueError:
            pass
    return utcnow().date()


def _invoice_in_scope(session: Session, scope: Scope, invoice_id: str) -> bool:
    invoice = session.get(Invoice, invoice_id)
    return invoice is not None and (invoice.tenant_id, invoice.environment_id) == (
        scope.tenant_id,
        scope.environment_id,
    )


def _open_nomod_invoices_of(session: Session, scope: Scope, nomod_customer_id: str | None) -> list[tuple[str, str]]:
    """(invoice id, Nomod invoice id) of the payer's still-open invoices that arsync put in Nomod."""
    if not nomod_customer_id:
        return []
    customer_id = entity_for(session, scope, CUSTOMER, nomod_customer_id)
    if customer_id is None:
        return []
    rows = session.execute(
        select(Invoice.id, EntityIntegrationMapping.provider_id)
        .join(EntityIntegrationMapping, EntityIntegrationMapping.entity_id == Invoice.id)
        .where(
            in_scope(EntityIntegrationMapping, scope),
            EntityIntegrationMapping.provider == PROVIDER,
            EntityIntegrationMapping.entity_type == INVOICE,
            Invoice.customer_id == customer_id,
            Invoice.status == InvoiceStatus.FINALIZED,
        )
        .order_by(EntityIntegrationMapping.created_at.desc())
        .limit(MAX_CUSTOMER_CANDIDATES)
    ).all()
    return [(invoice_id, provider_id) for invoice_id, provider_id in rows]


def _why_not_applicable(invoice: Invoice, amount: Decimal, currency: str) -> str | None:
    """Why the charge cannot be applied on arrival, in words for the person who reviews it."""
    if currency != invoice.currency:
        return f"the charge is in {currency} and invoice {invoice.invoice_number} is in {invoice.currency}"
    if invoice.status != InvoiceStatus.FINALIZED:
        return f"invoice {invoice.invoice_number} is {invoice.status.lower()}"
    if amount > invoice.amount_outstanding:
        paid, owed = format_amount(amount, currency), format_amount(invoice.amount_outstanding, currency)
        return f"the charge of {paid} {currency} is more than the {owed} {currency} still outstanding"
    return None


def _recorded(session: Session, scope: Scope, charge_id: str) -> CashApplication | None:
    application_id = entity_for(session, scope, CASH_APPLICATION, charge_id)
    return session.get(CashApplication, application_id) if application_id else None


def _duplicate(application: CashApplication, charge_id: str) -> WebhookOutcome:
    return WebhookOutcome(
        "duplicate",
        "this charge is already recorded",
        charge_id,
        application.invoice_id,
        application.id,
        application.payment_id,
    )
