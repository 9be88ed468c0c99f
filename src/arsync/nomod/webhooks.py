"""Nomod's "paid" webhook: verified, re-read at the source, and recorded once per charge.

The body of a webhook is only a hint. After the signature checks out, the charge is read back
from Nomod with the environment's API key, and only that answer is trusted: its status,
amount, currency and the invoice or link it paid.

Each charge becomes one cash application, mapped to the charge id under a unique key, so a
webhook delivered five times (or five at once) records one payment. When the charge fits the
invoice (same currency, not more than is outstanding, invoice still FINALIZED) the cash
application is approved on the spot, which records the payment and queues its ERP push.
Otherwise it waits, PENDING, for someone to look at it, and nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arsync.db import utcnow
from arsync.errors import InvalidInput, NotFound, Unauthorized
from arsync.ledger.models import CashApplication, Invoice
from arsync.money import decimal_places, exponent
from arsync.nomod import signing
from arsync.nomod.client import API_ERROR, NomodError
from arsync.nomod.service import CASH_APPLICATION, INVOICE, INVOICE_LINK, NomodService, entity_for
from arsync.tenancy.scope import Scope

log = logging.getLogger(__name__)

PAID_EVENTS = frozenset({"charge.paid"})


class Approver(Protocol):
    def approve_cash_application(
        self, session: Session, scope: Scope, application_id: str, *, source: str = ...
    ) -> CashApplication: ...


@dataclass(frozen=True)
class WebhookOutcome:
    status: str  # recorded | needs_review | duplicate | ignored
    reason: str | None = None
    charge_id: str | None = None
    invoice_id: str | None = None
    cash_application_id: str | None = None
    payment_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "chargeId": self.charge_id,
            "invoiceId": self.invoice_id,
            "cashApplicationId": self.cash_application_id,
            "paymentId": self.payment_id,
        }


class PaidWebhooks:
    def __init__(self, nomod: NomodService, approver: Approver) -> None:
        self.nomod = nomod
        self.approver = approver

    def handle(self, scope: Scope, headers: Mapping[str, str], body: bytes) -> WebhookOutcome:
        with self.nomod.session_factory() as session:
            connection = self.nomod.connection(session, scope)
            if connection is None:
                raise NotFound("no Nomod connection in this tenant and environment")
            if connection.webhook_secret_encrypted is None:
                raise Unauthorized("no webhook secret is set on the Nomod connection; save it with webhookSecret")
            secret = self.nomod.vault.decrypt(connection.webhook_secret_encrypted)
            session.expunge(connection)
        try:
            signing.verify(secret, headers, body)
        except signing.InvalidSignature as exc:
            raise Unauthorized(f"webhook signature rejected: {exc}") from None
        charge_id = _paid_charge_id(body)
        if charge_id is None:
            return WebhookOutcome("ignored", "not a charge-paid event")
        charge = self.nomod.call(connection, lambda client: client.get_charge(charge_id))
        if charge.get("status") != "paid":
            return WebhookOutcome("ignored", f"Nomod says charge {charge_id} is {charge.get('status')!r}", charge_id)
        with self.nomod.session_factory() as session:
            invoice_id = _invoice_for(session, scope, charge)
        if invoice_id is None:
            log.warning("Nomod charge %s is not for an arsync invoice in %s", charge_id, scope)
            return WebhookOutcome("ignored", "the charge is not for an invoice or link arsync created", charge_id)
        amount, currency = _charge_amount(charge)
        try:
            return self._record(scope, charge_id, invoice_id, amount, currency, _charge_date(charge))
        except IntegrityError:
            # Another process recorded this charge between our check and our insert.
            return self._already_recorded(scope, charge_id)

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
            )
            session.add(application)
            session.flush()
            session.add(self.nomod.new_mapping(scope, CASH_APPLICATION, application.id, charge_id))
            problem = _why_not_applicable(invoice, amount, currency)
            if problem is None:
                self.approver.approve_cash_application(session, scope, application.id, source="nomod")
                log.info("Nomod charge %s paid %s %s on invoice %s", charge_id, amount, currency, invoice.id)
                return WebhookOutcome("recorded", None, charge_id, invoice.id, application.id, application.payment_id)
            log.warning("Nomod charge %s needs review: %s", charge_id, problem)
            return WebhookOutcome("needs_review", problem, charge_id, invoice.id, application.id)

    def _already_recorded(self, scope: Scope, charge_id: str) -> WebhookOutcome:
        with self.nomod.session_factory() as session:
            known = _recorded(session, scope, charge_id)
            assert known is not None, "the unique key refused the insert, so the charge is recorded"
            return _duplicate(known, charge_id)


def _paid_charge_id(body: bytes) -> str | None:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput("the webhook body is not JSON") from None
    if not isinstance(event, dict):
        raise InvalidInput("the webhook body is not a JSON object")
    if event.get("type") not in PAID_EVENTS:
        return None
    data = event.get("data")
    charge_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(charge_id, str) or not charge_id or len(charge_id) > 200 or "/" in charge_id:
        raise InvalidInput("a charge-paid event needs data.id, the charge id", details={"field": "data.id"})
    return charge_id


def _invoice_for(session: Session, scope: Scope, charge: dict[str, Any]) -> str | None:
    """The arsync invoice a charge paid, through the Nomod invoice or link arsync created."""
    for entity_type, key in ((INVOICE, "invoice"), (INVOICE_LINK, "link")):
        provider_id = charge.get(key)
        if isinstance(provider_id, str) and provider_id:
            found = entity_for(session, scope, entity_type, provider_id)
            if found is not None:
                return found
    return None


def _charge_amount(charge: dict[str, Any]) -> tuple[Decimal, str]:
    raw, currency = charge.get("amount"), charge.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        raise NomodError(API_ERROR, detail=f"charge {charge.get('id')} has no currency")
    if isinstance(raw, float) or not isinstance(raw, str | int):
        raise NomodError(API_ERROR, detail=f"charge {charge.get('id')} amount {raw!r} is not a decimal string")
    try:
        amount = Decimal(str(raw))
    except InvalidOperation:
        raise NomodError(API_ERROR, detail=f"charge {charge.get('id')} amount {raw!r} is not a decimal") from None
    if not amount.is_finite() or amount <= 0 or decimal_places(amount) > exponent(currency):
        raise NomodError(API_ERROR, detail=f"charge {charge.get('id')} amount {raw!r} is not a valid {currency} amount")
    return amount, currency


def _charge_date(charge: dict[str, Any]) -> date:
    created = charge.get("created")
    if isinstance(created, str):
        try:
            return datetime.fromisoformat(created.replace("Z", "+00:00")).date()
        except ValueError:
            pass
    return utcnow().date()


def _why_not_applicable(invoice: Invoice, amount: Decimal, currency: str) -> str | None:
    if currency != invoice.currency:
        return f"the charge is in {currency}, the invoice in {invoice.currency}"
    if invoice.status != "FINALIZED":
        return f"invoice {invoice.id} is {invoice.status}"
    if amount > invoice.amount_outstanding:
        return f"the charge of {amount} exceeds the outstanding {invoice.amount_outstanding} {invoice.currency}"
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
