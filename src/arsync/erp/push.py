"""Outbound pushes: dispatched invoices and approved payments, sent to the ERP once.

Recording and sending are separate steps:

- *Recording* happens inside the transaction of the dispatch or the approval. It writes a
  PENDING :class:`Push` and queues its job in that same transaction, so the push is never lost
  and never runs for a change that rolled back.
- *Sending* is the job. Holding the push's key (so no other process sends it meanwhile), it
  first commits the attempt (``attempts`` + 1, ``sending_since``), then sends the request once
  with the push's ``Idempotency-Key``, then stores the outcome. A push that SUCCEEDED is never
  sent again.

An attempt's outcome is *uncertain* when it timed out, the connection dropped, the ERP answered
5xx, or its process died mid-send (``sending_since`` still set when the next attempt starts).
Before anything is sent after that, the ERP's list of invoices or payments is searched for the
record the earlier attempt may have made; a match is adopted as the push's result. Only when
there is none does the request go again, under the same key, which a middleware that honours
``Idempotency-Key`` answers with the id it already gave.

Transient failures (timeouts, resets, 429, 502/503/504) are retried with doubling delays up
to ``max_attempts``, each retry counted. Missing prerequisites and contract errors fail at once,
with a reason; ``retry`` puts a FAILED push back in the queue after the cause is fixed.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.orm import Session, sessionmaker

from arsync import logs, metrics
from arsync.db import exclusive_transaction, transaction, update_if, utcnow
from arsync.erp import contract
from arsync.erp.alerts import error_summary
from arsync.erp.models import Connection, Push
from arsync.erp.port import ErpConnector, Page, PushAttempt
from arsync.errors import ConnectorError, InvalidState, PrerequisiteMissing, RateLimitExhausted, TransientError
from arsync.jobs.queue import JobQueue, next_attempt_at, runs_early
from arsync.ledger import service as ledger
from arsync.ledger.models import CashApplication, Customer, Invoice, Payment
from arsync.notify.flows import Notifier
from arsync.schemas import PageParams
from arsync.tenancy.scope import Scope, get_scoped, in_scope, paginate

log = logging.getLogger(__name__)

TASK_PUSH = "arsync.push"  # job names are stored with queued jobs: never rename one
ConnectorFactory = Callable[[Connection], ErpConnector]


LOOKUP_PAGE_SIZE = 1000


def is_uncertain(error: dict[str, Any] | None) -> bool:
    """Whether the push's last failure leaves open that the ERP stored the record."""
    if not error:
        return False
    return error.get("kind") == "TransientError" or bool(error.get("uncertain"))


@dataclass(frozen=True)
class _Attempt:
    uncertain: bool
    first_sent_at: datetime


@dataclass(frozen=True)
class PushOptions:
    max_attempts: int = 8
    backoff_seconds: float = 5.0
    # How far before the first attempt the look-up after an uncertain failure reaches back: the
    # ERP's clock may be behind ours (the sync's lookback, one setting).
    lookback_seconds: float = 300.0
    lookup_max_pages: int = 50
    # Names of places where a push stops dead, for crash tests (ARSYNC_FAILPOINTS).
    failpoints: frozenset[str] = frozenset()


def _failpoint(options: PushOptions, name: str) -> None:
    """Stop here for good when a crash test asks for it: the test then kills the process."""
    if name in options.failpoints:
        sys.stderr.write(f"failpoint {name} reached\n")
        sys.stderr.flush()
        while True:
            time.sleep(3600)


class PushFlows:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        connector_factory: ConnectorFactory,
        queue: JobQueue,
        options: PushOptions | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.connector_factory = connector_factory
        self.queue = queue
        self.options = options or PushOptions()
        self.notifier = notifier

    # Recording (inside the caller's transaction) --------------------------------------------

    def dispatch_invoice(self, session: Session, scope: Scope, invoice_id: str) -> Invoice:
        """Dispatch an invoice and record its push; dispatching again changes nothing."""
        invoice, first = ledger.mark_dispatched(session, scope, invoice_id)
        if first and invoice.erp_invoice_id is None and invoice.id not in pushes_by_invoice(session, [invoice.id]):
            self._record(session, Push(tenant_id=scope.tenant_id, environment_id=scope.environment_id,
                                       kind="invoice", invoice_id=invoice.id))  # fmt: skip
        return invoice

    def approve_cash_application(
        self,
        session: Session,
        scope: Scope,
        application_id: str,
        *,
        keep_rest_as_credit: bool = False,
    ) -> CashApplication:
        """Approve a cash application and record the push of the payment it creates (none when
        all of it was kept as credit)."""
        application = ledger.approve_cash_application(
            session, scope, application_id, keep_rest_as_credit=keep_rest_as_credit
        )
        if application.payment_id and application.payment_id not in pushes_by_payment(
            session, [application.payment_id]
        ):
            self._record(session, Push(tenant_id=scope.tenant_id, environment_id=scope.environment_id,
                                       kind="payment", invoice_id=application.invoice_id,
                                       payment_id=application.payment_id))  # fmt: skip
        return application

    def retry(self, session: Session, scope: Scope, push_id: str) -> Push:
        """Queue a FAILED push again, with a fresh budget of attempts."""
        push = get_push(session, scope, push_id)
        # Conditional on FAILED in the database, so of two concurrent retries one queues the push.
        if not update_if(
            session, push, Push.status == "FAILED", status="PENDING", manual_retries=Push.manual_retries + 1
        ):
            raise InvalidState(f"push {push.id} is {push.status}; only a FAILED push can be retried")
        if not is_uncertain(push.last_error):
            # The ERP answered (it refused, or a prerequisite was missing): what goes now is a new
            # request. After an uncertain failure the old key stays, so a record the ERP kept is
            # answered again rather than made twice.
            push.idempotency_key = f"arsync-{push.id}-{push.manual_retries}"
        self._queue_again(session, push)
        return push

    def release_invoices_of(self, session: Session, scope: Scope, customer_id: str) -> int:
        """Queue again the customer's invoice pushes that failed only because it was not linked to an
        ERP debtor (or another prerequisite, now perhaps met); those the ERP refused stay FAILED."""
        waiting = session.scalars(
            select(Push)
            .join(Invoice, Invoice.id == Push.invoice_id)
            .where(
                in_scope(Push, scope), Push.kind == "invoice", Push.status == "FAILED",
                Invoice.customer_id == customer_id,
            )
        ).all()  # fmt: skip
        released = [push for push in waiting if (push.last_error or {}).get("kind") == "PrerequisiteMissing"]
        for push in released:
            self._queue_again(session, push)
        return len(released)

    def _queue_again(self, session: Session, push: Push) -> None:
        """A FAILED push back to PENDING with a fresh budget of attempts, and queued."""
        push.status = "PENDING"
        push.attempts = 0
        push.next_attempt_at = None
        push.updated_at = utcnow()
        self.queue.enqueue(session, TASK_PUSH, {"push_id": push.id})

    def _record(self, session: Session, push: Push) -> None:
        session.add(push)
        session.flush()
        self.queue.enqueue(session, TASK_PUSH, {"push_id": push.id})

    def requeue_pending(self) -> int:
        """Queue every PENDING push again (embedded mode, at start: the queue lives in memory)."""
        with transaction(self.session_factory) as session:
            pushes = session.scalars(select(Push).where(Push.status == "PENDING")).all()
            for push in pushes:
                self.queue.enqueue(session, TASK_PUSH, {"push_id": push.id}, run_at=push.next_attempt_at)
            return len(pushes)

    # Sending (the job) ----------------------------------------------------------------------

    def execute(self, push_id: str) -> str | None:
        """Send one push if it is still PENDING; returns its status afterwards (None if gone)."""
        with logs.bound(push_id=push_id):
            return self._execute_logged(push_id)

    def _execute_logged(self, push_id: str) -> str | None:
        try:
            return self._execute(push_id)
        except Exception as exc:
            # A bug or an unavailable transport, not the ERP's answer: fail visibly rather than
            # leave the push PENDING with nothing queued.
            log.exception("push %s failed unexpectedly", push_id)
            with transaction(self.session_factory) as session:
                push = session.get(Push, push_id)
                if push is None or push.status != "PENDING":
                    return push.status if push else None
                self._fail(session, push, {
                    "kind": "InternalError",
                    "message": f"{type(exc).__name__}: {str(exc)[:500]}",
                    "hint": "this is an arsync error, not the middleware's; see the worker log, then retry",
                })  # fmt: skip
            metrics.record_push(push.kind, push.status, push.created_at, push.succeeded_at)  # once committed
            return push.status

    def _execute(self, push_id: str) -> str | None:
        # The key is held for the whole attempt: a concurrent run of the same push (a job run
        # again while a slow first run is still going) waits, then sees SUCCEEDED and stops. A
        # process that dies releases it (on PostgreSQL, with its connection).
        with exclusive_transaction(self.session_factory, f"push:{push_id}") as session:
            started = self._begin_attempt(push_id)
            if not isinstance(started, _Attempt):
                return started
            push = session.get(Push, push_id, populate_existing=True)
            assert push is not None
            try:
                connection = self._connection(session, push)
                push.connection_id = connection.id
                erp_id = self._send(session, push, connection, started)
            except PrerequisiteMissing as exc:
                self._fail(session, push, {"kind": "PrerequisiteMissing", "message": exc.message, "hint": exc.hint})
            except TransientError as exc:
                self._retry_later(session, push, exc.as_dict())
            except RateLimitExhausted as exc:
                self._wait_for_quota(session, push, exc)
            except ConnectorError as exc:
                # An answer that settles nothing about an earlier uncertain send keeps the push
                # uncertain: its manual retry must look up before sending, under the same key.
                self._fail(session, push, exc.as_dict() | ({"uncertain": True} if started.uncertain else {}))
            else:
                self._succeed(session, push, erp_id)
            push.sending_since = None
            push.updated_at = utcnow()
            log.info("push %s (%s) is %s after attempt %d", push.id, push.kind, push.status, push.attempts)
        metrics.record_push(push.kind, push.status, push.created_at, push.succeeded_at)  # once committed
        return push.status

    def _begin_attempt(self, push_id: str) -> _Attempt | str | None:
        """Count the attempt and mark it as sending, committed before anything is sent.

        Returns the push's status instead when there is nothing to send.
        """
        with transaction(self.session_factory) as session:
            push = session.scalars(select(Push).where(Push.id == push_id).with_for_update()).one_or_none()
            if push is None or push.status != "PENDING":
                return push.status if push else None
            if runs_early(push.next_attempt_at):
                return push.status
            interrupted = push.sending_since is not None
            if interrupted:
                log.warning("push %s: the attempt started at %s never finished", push.id, push.sending_since)
            now = utcnow()
            push.attempts += 1
            push.sending_since = now
            push.first_sent_at = push.first_sent_at or now
            push.updated_at = now
            return _Attempt(uncertain=interrupted or is_uncertain(push.last_error), first_sent_at=push.first_sent_at)

    def _send(self, session: Session, push: Push, connection: Connection, started: _Attempt) -> str:
        request: contract.InvoicePushRequest | contract.PaymentPushRequest
        if push.kind == "invoice":
            request = self._invoice_request(session, push)
        else:
            request = self._payment_request(session, push, connection)
        _failpoint(self.options, "push.before_send")
        attempt = PushAttempt(idempotency_key=push.idempotency_key or f"arsync-{push.id}")
        connector = self.connector_factory(connection)
        try:
            if started.uncertain:
                found = self._look_up(session, push, connector, request, started.first_sent_at)
                if found is not None:
                    log.info("push %s: an earlier attempt reached the ERP as %s; adopted", push.id, found)
                    return found
            erp_id = (
                connector.push_invoice(request, attempt)
                if isinstance(request, contract.InvoicePushRequest)
                else connector.push_payment(request, attempt)
            )
        finally:
            connector.close()
        _failpoint(self.options, "push.after_response")
        return erp_id

    def _look_up(
        self,
        session: Session,
        push: Push,
        connector: ErpConnector,
        request: contract.InvoicePushRequest | contract.PaymentPushRequest,
        first_sent_at: datetime,
    ) -> str | None:
        """The ERP id of a record an earlier attempt of this push created, if the ERP lists one.

        Asks for records changed since just before the first attempt (less the lookback, for an
        ERP clock behind ours). Invoices match on number and debtor; payments on invoice, amount
        and date. An id that already belongs to another record of the ledger is never taken: a
        genuine second payment of the same amount on the same day is a record of its own.
        """
        since = first_sent_at - timedelta(seconds=self.options.lookback_seconds)
        scope = Scope(push.tenant_id, push.environment_id)
        for number in range(1, self.options.lookup_max_pages + 1):
            page: Page[Any]
            if isinstance(request, contract.InvoicePushRequest):
                page = connector.list_invoices(number, LOOKUP_PAGE_SIZE, since)
                candidates = [
                    item.erp_invoice_id
                    for item in page.items
                    if item.invoice_number == request.invoice_number and item.erp_debtor_id == request.erp_debtor_id
                ]
                taken = Invoice.erp_invoice_id
            else:
                page = connector.list_payments(number, LOOKUP_PAGE_SIZE, since)
                candidates = [
                    item.erp_payment_id
                    for item in page.items
                    if item.erp_invoice_id == request.erp_invoice_id
                    and item.amount == request.amount
                    and item.payment_date == request.payment_date
                ]
                taken = Payment.erp_payment_id
            if candidates:
                owned = set(
                    session.scalars(select(taken).where(in_scope(taken.class_, scope), taken.in_(candidates))).all()
                )
                free = [candidate for candidate in candidates if candidate not in owned]
                if free:
                    return free[0]
            if not page.has_more:
                return None
        log.warning("push %s: no match in %d pages of the ERP's list; sending again", push.id, number)
        return None

    @staticmethod
    def _connection(session: Session, push: Push) -> Connection:
        """The environment's active ERP connection, a native one before REST middleware; with none
        active, the native one (its error then says what to do)."""
        connection = session.scalars(
            select(Connection)
            .where(in_scope(Connection, Scope(push.tenant_id, push.environment_id)))
            .order_by(
                case((Connection.status == "ACTIVE", 0), else_=1), case((Connection.transport == "native", 0), else_=1)
            )
            .limit(1)
        ).first()
        if connection is None:
            raise PrerequisiteMissing(
                "no ERP connection in this environment",
                "save a connection (PUT /api/v1/connections/erp-rest), then retry",
            )
        return connection

    @staticmethod
    def _invoice_request(session: Session, push: Push) -> contract.InvoicePushRequest:
        invoice = session.get(Invoice, push.invoice_id)
        assert invoice is not None
        customer = session.get(Customer, invoice.customer_id)
        assert customer is not None
        if not customer.erp_debtor_id:
            raise PrerequisiteMissing(
                f"debtor not linked: customer {customer.id} ({customer.name}) has no ERP debtor id",
                "link the customer to its ERP debtor (the customer's page: Link to an ERP debtor; or POST "
                "/api/v1/customers/{id}/merge), then retry the push",
            )
        lines = ledger.invoice_lines(session, [invoice.id])[invoice.id]
        return contract.InvoicePushRequest(
            invoice_number=invoice.invoice_number,
            erp_debtor_id=customer.erp_debtor_id,
            issue_date=invoice.issue_date,
            due_date=invoice.due_date,
            currency=invoice.currency,
            lines=[
                contract.Line(
                    description=line.description, quantity=line.quantity, unit_price=line.unit_price, amount=line.amount
                )
                for line in lines
            ],
        )

    @staticmethod
    def _payment_request(session: Session, push: Push, connection: Connection) -> contract.PaymentPushRequest:
        payment = session.get(Payment, push.payment_id)
        invoice = session.get(Invoice, push.invoice_id)
        assert payment is not None and invoice is not None
        if not invoice.erp_invoice_id:
            raise PrerequisiteMissing(
                f"invoice {invoice.id} ({invoice.invoice_number}) is not in the ERP yet",
                "dispatch the invoice: the payment is sent again by itself once the invoice's push succeeds",
            )
        return contract.PaymentPushRequest(
            erp_invoice_id=invoice.erp_invoice_id,
            amount=payment.amount,
            payment_date=payment.payment_date,
            bank_account_code=connection.bank_account_code,
        )

    def _succeed(self, session: Session, push: Push, erp_id: str) -> None:
        scope = Scope(push.tenant_id, push.environment_id)
        record: Invoice | Payment | None
        if push.kind == "invoice":
            record = session.get(Invoice, push.invoice_id)
            owner = session.scalar(select(Invoice.id).where(in_scope(Invoice, scope), Invoice.erp_invoice_id == erp_id))
        else:
            record = session.get(Payment, push.payment_id)
            owner = session.scalar(select(Payment.id).where(in_scope(Payment, scope), Payment.erp_payment_id == erp_id))
        assert record is not None
        if owner is not None and owner != record.id:
            self._fail(session, push, {
                "kind": "ContractViolation",
                "message": f"the ERP answered with id {erp_id!r}, which already belongs to {owner}",
                "hint": "the middleware must return a new id per record and the same id on a retry",
            })  # fmt: skip
            return
        if isinstance(record, Invoice):
            record.erp_invoice_id = erp_id
            self._release_payments_waiting_for(session, record)
        else:
            record.erp_payment_id = erp_id
        now = utcnow()
        push.status = "SUCCEEDED"
        push.erp_id = erp_id
        push.succeeded_at = now
        push.last_error = None
        push.next_attempt_at = None

    def _release_payments_waiting_for(self, session: Session, invoice: Invoice) -> None:
        """Queue again the payment pushes that failed only because this invoice was not in the ERP yet.

        A payment can be recorded before its invoice is dispatched (a Nomod payment, say). Its push
        then fails with a missing prerequisite; once the invoice's own push succeeds it can go.
        """
        waiting = session.scalars(
            select(Push).where(
                Push.kind == "payment",
                Push.invoice_id == invoice.id,
                Push.status == "FAILED",
                in_scope(Push, Scope(invoice.tenant_id, invoice.environment_id)),
            )
        ).all()
        for push in waiting:
            if (push.last_error or {}).get("kind") != "PrerequisiteMissing":
                continue  # the ERP refused it, or it gave up: someone should look before it goes again
            self._queue_again(session, push)
            log.info("payment push %s queued again: invoice %s is now in the ERP", push.id, invoice.id)

    def _fail(self, session: Session, push: Push, error: dict[str, Any]) -> None:
        push.status = "FAILED"
        push.last_error = error | {"at": utcnow().isoformat()}
        push.next_attempt_at = None
        if self.notifier is not None:
            self.notifier.emit(session, Scope(push.tenant_id, push.environment_id), "push.failed", {
                "pushId": push.id,
                "kind": push.kind,
                "invoiceId": push.invoice_id,
                "paymentId": push.payment_id,
                "connectionId": push.connection_id,
                "attempts": push.attempts,
                "error": error_summary(push.last_error),
            })  # fmt: skip

    def _wait_for_quota(self, session: Session, push: Push, error: RateLimitExhausted) -> None:
        """The ERP's daily call limit is spent: the push waits for it, without using up an attempt."""
        push.attempts -= 1
        push.next_attempt_at = utcnow() + timedelta(seconds=max(error.retry_after or 0, 1))
        push.last_error = error.as_dict() | {
            "hint": f"the push is sent by itself at {push.next_attempt_at:%Y-%m-%d %H:%M} UTC, when the limit resets",
            "at": utcnow().isoformat(),
        }
        self.queue.enqueue(session, TASK_PUSH, {"push_id": push.id}, run_at=push.next_attempt_at)

    def _retry_later(self, session: Session, push: Push, error: dict[str, Any]) -> None:
        if push.attempts >= self.options.max_attempts:
            gave_up = f"{error['message']}; gave up after {push.attempts} attempts"
            self._fail(session, push, error | {"message": gave_up})
            return
        push.next_attempt_at = next_attempt_at(push.attempts, self.options.backoff_seconds)
        push.last_error = error | {"at": utcnow().isoformat()}
        self.queue.enqueue(session, TASK_PUSH, {"push_id": push.id}, run_at=push.next_attempt_at)


# Reading ------------------------------------------------------------------------------------


def get_push(session: Session, scope: Scope, push_id: str) -> Push:
    return get_scoped(session, Push, push_id, scope, "push")


def list_pushes(
    session: Session,
    scope: Scope,
    params: PageParams,
    *,
    status: str | None,
    kind: str | None,
    invoice_id: str | None,
) -> tuple[list[Push], bool]:
    statement = select(Push).where(in_scope(Push, scope))
    if status:
        statement = statement.where(Push.status == status)
    if kind:
        statement = statement.where(Push.kind == kind)
    if invoice_id:
        statement = statement.where(Push.invoice_id == invoice_id)
    return paginate(session, statement.order_by(Push.id), params)


def pushes_by_invoice(session: Session, invoice_ids: list[str]) -> dict[str, Push]:
    if not invoice_ids:
        return {}
    pushes = session.scalars(select(Push).where(Push.kind == "invoice", Push.invoice_id.in_(invoice_ids)))
    return {push.invoice_id: push for push in pushes}


def pushes_by_payment(session: Session, payment_ids: list[str]) -> dict[str, Push]:
    if not payment_ids:
        return {}
    pushes = session.scalars(select(Push).where(Push.payment_id.in_(payment_ids)))
    return {push.payment_id: push for push in pushes if push.payment_id}
