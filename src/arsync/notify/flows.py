"""Telling people when something breaks: signed webhooks and email, as durable jobs.

An event is recorded by :meth:`Notifier.emit` inside the transaction of the change that caused
it: one ``notification_deliveries`` row per subscribed endpoint, and a job to send it. So an
event is sent only if its change committed, and exactly once per change.

A webhook is a POST of ``{"type", "timestamp", "data"}`` signed the Standard Webhooks way
(spec/standard-webhooks.md in github.com/standard-webhooks/standard-webhooks): the headers
``webhook-id`` (the delivery id, the same on every attempt, for receivers to deduplicate on),
``webhook-timestamp`` and ``webhook-signature`` (``v1,`` and the base64 HMAC-SHA256 of
``{id}.{timestamp}.{body}`` under the endpoint's own ``whsec_`` secret). Following that spec's
"Delivery success and failure": only 2xx is success; a redirect is not followed; ``410 Gone``
disables the endpoint; ``Retry-After`` is honoured; anything else is tried again with doubling
delays (capped at an hour) until the attempts run out, then the delivery is FAILED in the log.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from arsync import logs, metrics
from arsync.db import transaction, utcnow
from arsync.errors import Conflict, InvalidInput, OutboundRefused
from arsync.http_retry import parse_retry_after
from arsync.jobs.queue import JobQueue, next_attempt_at, runs_early
from arsync.nomod import signing
from arsync.notify import email
from arsync.notify.events import DEFAULT_EVENTS, EVENTS, TEST_EVENT
from arsync.notify.models import NotificationDelivery, NotificationEndpoint
from arsync.notify.targets import validate_webhook_url
from arsync.outbound import OutboundPolicy
from arsync.schemas import PageParams, is_email
from arsync.tenancy.scope import Scope, get_scoped, in_scope, paginate
from arsync.vault import Vault

log = logging.getLogger(__name__)

TASK_NOTIFY = "arsync.notify_deliver"  # stored with queued jobs: never rename
KINDS = ("webhook", "email")


@dataclass(frozen=True)
class NotifyOptions:
    max_attempts: int = 24
    backoff_seconds: float = 5.0
    timeout_seconds: float = 15.0  # the spec recommends 15 to 30 s ("Request timeouts")


@dataclass(frozen=True)
class _Message:
    """What one attempt sends: read in one transaction, sent outside any."""

    delivery_id: str
    kind: str
    target: str
    secret: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class _Outcome:
    delivered: bool
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    gone: bool = False  # 410: the receiver wants no more


class Notifier:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        vault: Vault,
        queue: JobQueue,
        outbound: OutboundPolicy,
        options: NotifyOptions | None = None,
        smtp: email.SmtpSettings | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.vault = vault
        self.queue = queue
        self.outbound = outbound
        self.options = options or NotifyOptions()
        self.smtp = smtp

    # Endpoints ------------------------------------------------------------------------------

    def add_endpoint(
        self, session: Session, scope: Scope, kind: str, target: str, events: list[str] | None, description: str | None
    ) -> tuple[NotificationEndpoint, str | None]:
        """Save an endpoint; returns it with its new signing secret (webhooks), shown this once."""
        chosen = list(dict.fromkeys(DEFAULT_EVENTS if events is None else events))
        unknown = [name for name in chosen if name not in EVENTS]
        if unknown:
            raise InvalidInput(
                f"unknown event {unknown[0]!r}; the events are {', '.join(EVENTS)}", details={"field": "events"}
            )
        if not chosen:
            raise InvalidInput("choose at least one event", details={"field": "events"})
        secret: str | None = None
        if kind == "webhook":
            # The address rule (outbound.py) is applied to every send, where a refusal is logged
            # on the delivery, rather than here: a name may resolve differently by then.
            target = validate_webhook_url(target)
            secret = signing.new_secret()
        elif kind == "email":
            if self.smtp is None:
                raise Conflict("email notifications need an SMTP server: set ARSYNC_SMTP_HOST and ARSYNC_SMTP_FROM")
            target = target.strip()
            if not is_email(target):
                raise InvalidInput(f"{target!r} is not an email address", details={"field": "email"})
        else:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", details={"field": "kind"})
        endpoint = NotificationEndpoint(
            tenant_id=scope.tenant_id,
            environment_id=scope.environment_id,
            kind=kind,
            target=target,
            secret_encrypted=self.vault.encrypt(secret) if secret else None,
            events=chosen,
            description=description,
            enabled=True,
        )
        session.add(endpoint)
        session.flush()
        return endpoint, secret

    @staticmethod
    def remove_endpoint(session: Session, scope: Scope, endpoint_id: str) -> None:
        """Delete an endpoint and its delivery log (a pending delivery finds it gone and stops)."""
        session.delete(get_scoped(session, NotificationEndpoint, endpoint_id, scope, "notification endpoint"))
        session.flush()

    def send_test(self, session: Session, scope: Scope, endpoint_id: str) -> NotificationDelivery:
        """Queue a ``notification.test`` event to one endpoint, whatever it subscribes to; enables it."""
        endpoint = get_scoped(session, NotificationEndpoint, endpoint_id, scope, "notification endpoint")
        endpoint.enabled = True
        data = {"message": "arsync can reach this endpoint", "endpointId": endpoint.id}
        return self._record(session, endpoint, TEST_EVENT, self._payload(scope, TEST_EVENT, data))

    # Events ---------------------------------------------------------------------------------

    def emit(self, session: Session, scope: Scope, event: str, data: dict[str, Any]) -> int:
        """In the caller's transaction: queue ``event`` to every enabled endpoint of ``scope``
        that subscribes to it; returns how many. ``data`` must hold nothing secret."""
        assert event in EVENTS, f"unknown event {event}"
        endpoints = session.scalars(
            select(NotificationEndpoint)
            .where(in_scope(NotificationEndpoint, scope), NotificationEndpoint.enabled.is_(True))
            .order_by(NotificationEndpoint.created_at, NotificationEndpoint.id)
        ).all()
        subscribed = [endpoint for endpoint in endpoints if event in endpoint.events]
        payload = self._payload(scope, event, data)
        for endpoint in subscribed:
            self._record(session, endpoint, event, payload)
        if subscribed:
            log.info("event %s queued to %d endpoints", event, len(subscribed))
        return len(subscribed)

    @staticmethod
    def _payload(scope: Scope, event: str, data: dict[str, Any]) -> dict[str, Any]:
        timestamp = utcnow().isoformat().replace("+00:00", "Z")
        return {
            "type": event,
            "timestamp": timestamp,
            "data": {"tenantId": scope.tenant_id, "environmentId": scope.environment_id} | data,
        }

    def _record(
        self, session: Session, endpoint: NotificationEndpoint, event: str, payload: dict[str, Any]
    ) -> NotificationDelivery:
        delivery = NotificationDelivery(
            tenant_id=endpoint.tenant_id,
            environment_id=endpoint.environment_id,
            endpoint_id=endpoint.id,
            event_type=event,
            payload=payload,
            status="PENDING",
            attempts=0,
        )
        session.add(delivery)
        session.flush()
        self._queue(session, delivery)
        return delivery

    def _queue(self, session: Session, delivery: NotificationDelivery) -> None:
        self.queue.enqueue(
            session,
            TASK_NOTIFY,
            {"delivery_id": delivery.id},
            lock=f"notify:{delivery.id}",
            run_at=delivery.next_attempt_at,
        )

    def requeue_pending(self) -> int:
        """Queue every PENDING delivery again (embedded mode, at start: its queue is in memory)."""
        with transaction(self.session_factory) as session:
            pending = session.scalars(select(NotificationDelivery).where(NotificationDelivery.status == "PENDING"))
            count = 0
            for delivery in pending:
                self._queue(session, delivery)
                count += 1
            return count

    # Delivering (the job) -------------------------------------------------------------------

    def deliver(self, delivery_id: str) -> str | None:
        """One attempt at a PENDING delivery; returns its status afterwards (None if gone)."""
        with logs.bound(notification_id=delivery_id):
            return self._deliver(delivery_id)

    def _deliver(self, delivery_id: str) -> str | None:
        message = self._begin(delivery_id)
        if not isinstance(message, _Message):
            return message
        outcome = self._send(message)
        with transaction(self.session_factory) as session:
            delivery = session.scalars(
                select(NotificationDelivery).where(NotificationDelivery.id == delivery_id).with_for_update()
            ).one_or_none()
            if delivery is None or delivery.status != "PENDING":
                return delivery.status if delivery else None
            self._conclude(session, delivery, outcome)
            status = delivery.status
        metrics.WEBHOOKS_OUT.labels(message.kind, "delivered" if outcome.delivered else "failed").inc()
        return status

    def _begin(self, delivery_id: str) -> _Message | str | None:
        with transaction(self.session_factory) as session:
            delivery = session.get(NotificationDelivery, delivery_id)
            if delivery is None or delivery.status != "PENDING" or runs_early(delivery.next_attempt_at):
                return delivery.status if delivery else None
            endpoint = session.get(NotificationEndpoint, delivery.endpoint_id)
            assert endpoint is not None, "deliveries go with their endpoint"
            if not endpoint.enabled:
                delivery.status, delivery.last_error = "FAILED", "the endpoint was disabled before this was sent"
                return delivery.status
            secret = self.vault.decrypt(endpoint.secret_encrypted) if endpoint.secret_encrypted else None
            return _Message(delivery.id, endpoint.kind, endpoint.target, secret, dict(delivery.payload))

    def _send(self, message: _Message) -> _Outcome:
        if message.kind == "email":
            return self._send_email(message)
        body = orjson.dumps(message.payload)
        assert message.secret is not None
        headers = signing.standard_headers(message.secret, message.delivery_id, body) | {
            "content-type": "application/json",
            "user-agent": "arsync-notifications",
        }
        try:
            with httpx.Client(
                timeout=self.options.timeout_seconds, follow_redirects=False, event_hooks=self.outbound.event_hooks
            ) as client:
                response = client.post(message.target, content=body, headers=headers)
        except OutboundRefused as exc:
            return _Outcome(False, error=exc.message)
        except httpx.HTTPError as exc:
            return _Outcome(False, error=f"{type(exc).__name__}: {str(exc)[:300] or 'no answer'}")
        if response.is_success:
            return _Outcome(True, response.status_code)
        return _Outcome(
            False,
            response.status_code,
            error=f"HTTP {response.status_code}: {response.text[:300]}",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            gone=response.status_code == 410,
        )

    def _send_email(self, message: _Message) -> _Outcome:
        if self.smtp is None:
            return _Outcome(False, error="no SMTP server is set (ARSYNC_SMTP_HOST)")
        try:
            email.send(self.smtp, email.compose(self.smtp.sender, message.target, message.delivery_id, message.payload))
        except (smtplib.SMTPException, OSError) as exc:
            return _Outcome(False, error=f"{type(exc).__name__}: {str(exc)[:300]}")
        return _Outcome(True)

    def _conclude(self, session: Session, delivery: NotificationDelivery, outcome: _Outcome) -> None:
        now = utcnow()
        delivery.attempts += 1
        delivery.last_status_code = outcome.status_code
        delivery.last_error = outcome.error
        delivery.next_attempt_at = None
        if outcome.delivered:
            delivery.status, delivery.delivered_at = "DELIVERED", now
        elif outcome.gone:
            delivery.status = "FAILED"
            endpoint = session.get(NotificationEndpoint, delivery.endpoint_id)
            if endpoint is not None:
                endpoint.enabled = False  # the receiver said 410 Gone: a test-send turns it back on
        elif delivery.attempts < self.options.max_attempts:
            delivery.next_attempt_at = next_attempt_at(delivery.attempts, self.options.backoff_seconds)
            if outcome.retry_after:
                delivery.next_attempt_at = max(delivery.next_attempt_at, now + timedelta(seconds=outcome.retry_after))
            self._queue(session, delivery)
        else:
            delivery.status = "FAILED"
        log.info(
            "notification %s (%s) is %s after attempt %d%s",
            delivery.id, delivery.event_type, delivery.status, delivery.attempts,
            f": {outcome.error}" if outcome.error else "",
        )  # fmt: skip


def list_endpoints(session: Session, scope: Scope) -> list[NotificationEndpoint]:
    statement = select(NotificationEndpoint).where(in_scope(NotificationEndpoint, scope))
    return list(session.scalars(statement.order_by(NotificationEndpoint.created_at, NotificationEndpoint.id)))


def list_deliveries(
    session: Session, scope: Scope, params: PageParams, *, status: str | None = None, endpoint_id: str | None = None
) -> tuple[list[NotificationDelivery], bool]:
    """One page of the delivery log, newest first, and whether more follow."""
    statement = select(NotificationDelivery).where(in_scope(NotificationDelivery, scope))
    if status is not None:
        statement = statement.where(NotificationDelivery.status == status)
    if endpoint_id is not None:
        statement = statement.where(NotificationDelivery.endpoint_id == endpoint_id)
    statement = statement.order_by(NotificationDelivery.created_at.desc(), NotificationDelivery.id.desc())
    return paginate(session, statement, params)
