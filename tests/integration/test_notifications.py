"""Notifications on SQLite and PostgreSQL, to receivers on loopback: a failing connection is
announced once per change of status, signed so that the Standard Webhooks reference library
verifies it, sent again after the receiver was down, and followed by connection.recovered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.errors import Conflict, InvalidInput
from arsync.mocks.erp import Fault
from arsync.notify.email import SmtpSettings
from arsync.notify.flows import Notifier
from arsync.notify.models import NotificationDelivery, NotificationEndpoint
from arsync.tenancy import service as tenancy
from arsync.tenancy.scope import Scope
from tests.conftest import MockErp, clean_container, free_port, make_settings
from tests.fakes import RecordingQueue
from tests.webhook_receiver import Receiver

ERP_KEY = "notify-test-erp-key-7f3a9c"


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Container]:
    settings = make_settings(database_url, tmp_path, outbound_allow_private=True, notify_backoff_seconds=0)
    with clean_container(settings) as container:
        container.notifier.queue = RecordingQueue()  # each attempt is run by the test, one at a time
        yield container


def _tenant(app: Container) -> Scope:
    with transaction(app.session_factory) as session:
        created = tenancy.create_tenant(session, "notified", "prod")
    return Scope(created.tenant_id, created.environment_id)


def _deliveries(app: Container, event: str | None = None) -> list[NotificationDelivery]:
    with app.session_factory() as session:
        query = select(NotificationDelivery).order_by(NotificationDelivery.created_at, NotificationDelivery.id)
        if event:
            query = query.where(NotificationDelivery.event_type == event)
        return list(session.scalars(query))


def test_a_failing_connection_is_announced_once_signed_retried_and_recovered(app: Container, mock_erp: MockErp) -> None:
    scope = _tenant(app)
    receiver = Receiver(free_port())
    with transaction(app.session_factory) as session:
        _, secret = app.notifier.add_endpoint(session, scope, "webhook", receiver.url, None, "on-call")
    assert secret is not None and secret.startswith("whsec_")
    saved, _ = app.connections.save_rest(scope.tenant_id, scope.environment_id, mock_erp.url, ERP_KEY)
    app.connections.check_health(saved.id, scope=None)

    mock_erp.state.set_faults([Fault(endpoint="/debtors/list", status=500)] * 2)
    assert app.sync.run(saved.id).status == "FAILED"
    assert app.sync.run(saved.id).status == "FAILED"  # still failing: no second connection.failed
    [failed] = _deliveries(app, "connection.failed")
    assert len(_deliveries(app, "sync.failed")) == 2
    assert failed.payload["data"]["connectionId"] == saved.id
    assert failed.payload["data"]["previousStatus"] == "ACTIVE" and failed.payload["data"]["status"] == "FAILED"

    # The receiver is down: the attempt fails and is queued again.
    assert app.notifier.deliver(failed.id) == "PENDING"
    [again] = [d for d in _deliveries(app, "connection.failed")]
    assert again.attempts == 1 and again.last_error and "Connect" in again.last_error
    assert ("arsync.notify_deliver", {"delivery_id": failed.id}) in [(t, a) for t, a, _ in app.notifier.queue.jobs]  # type: ignore[attr-defined]

    with receiver.running():
        assert app.notifier.deliver(failed.id) == "DELIVERED"
        assert app.notifier.deliver(failed.id) == "DELIVERED"  # a stray second job sends nothing
        mock_erp.state.set_faults([])
        assert app.sync.run(saved.id).status == "SUCCEEDED"
        [recovered] = _deliveries(app, "connection.recovered")
        assert app.notifier.deliver(recovered.id) == "DELIVERED"

    assert len(receiver.received) == 2
    verifier = Webhook(secret)
    first, second = (verifier.verify(r.body, r.headers) for r in receiver.received)
    assert first["type"] == "connection.failed" and first["data"]["connectionId"] == saved.id
    assert second["type"] == "connection.recovered" and second["data"]["previousStatus"] == "FAILED"
    assert receiver.received[0].headers["webhook-id"] == failed.id
    for request in receiver.received:
        assert secret.encode() not in request.body and ERP_KEY.encode() not in request.body
        with pytest.raises(WebhookVerificationError):  # signed with this endpoint's secret, not any other
            Webhook("whsec_" + "QUJD" * 8).verify(request.body, request.headers)


def test_attempts_run_out_and_410_disables_the_endpoint(app: Container) -> None:
    scope = _tenant(app)
    receiver = Receiver(free_port(), status=500)
    app.notifier.options = type(app.notifier.options)(max_attempts=2, backoff_seconds=0, timeout_seconds=2)
    with transaction(app.session_factory) as session:
        endpoint, _ = app.notifier.add_endpoint(session, scope, "webhook", receiver.url, ["push.failed"], None)
        delivery = app.notifier.send_test(session, scope, endpoint.id)
        assert app.notifier.emit(session, scope, "sync.failed", {}) == 0  # not subscribed
    with receiver.running():
        assert app.notifier.deliver(delivery.id) == "PENDING"
        assert app.notifier.deliver(delivery.id) == "FAILED"
        receiver.status = 410
        with transaction(app.session_factory) as session:
            gone = app.notifier.send_test(session, scope, endpoint.id)
        assert app.notifier.deliver(gone.id) == "FAILED"
    [stored] = [d for d in _deliveries(app) if d.id == delivery.id]
    assert stored.attempts == 2 and stored.last_status_code == 500
    with app.session_factory() as session:
        assert session.get(NotificationEndpoint, endpoint.id).enabled is False  # type: ignore[union-attr]
        with transaction(app.session_factory) as writing:
            assert app.notifier.emit(writing, scope, "push.failed", {"pushId": "p"}) == 0  # disabled


def test_email_notifications_reach_the_smtp_server(app: Container) -> None:
    class Inbox:
        def __init__(self) -> None:
            self.messages: list[Any] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages.append(envelope)
            return "250 OK"

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        smtp = SmtpSettings(host="127.0.0.1", port=controller.port, sender="arsync@example.com", starttls=False)
        notifier = Notifier(app.session_factory, app.vault, RecordingQueue(), app.outbound, smtp=smtp)
        scope = _tenant(app)
        with transaction(app.session_factory) as session:
            endpoint, secret = notifier.add_endpoint(session, scope, "email", "ops@example.com", None, None)
            assert secret is None
            assert notifier.emit(session, scope, "push.failed", {"pushId": "push_1"}) == 1
        [delivery] = _deliveries(app, "push.failed")
        assert notifier.deliver(delivery.id) == "DELIVERED"
    finally:
        controller.stop()
    [envelope] = inbox.messages
    assert envelope.rcpt_tos == ["ops@example.com"]
    text = envelope.content.decode()
    assert "Subject: [arsync] push.failed" in text and "push_1" in text and delivery.id in text
    assert endpoint.kind == "email"


def test_bad_endpoints_are_refused_with_the_reason(app: Container) -> None:
    scope = _tenant(app)
    with transaction(app.session_factory) as session:
        for kind, target, events, expected in [
            ("webhook", "ftp://example.com/x", None, "http"),
            ("webhook", "https://user:pw@example.com/x", None, "credentials"),
            ("webhook", "https://example.com/x", ["sync.exploded"], "unknown event"),
            ("webhook", "https://example.com/x", [], "at least one"),
            ("pager", "x", None, "kind"),
        ]:
            with pytest.raises(InvalidInput, match=expected):
                app.notifier.add_endpoint(session, scope, kind, target, events, None)
        with pytest.raises(Conflict, match="SMTP"):
            app.notifier.add_endpoint(session, scope, "email", "ops@example.com", None, None)
        endpoint, _ = app.notifier.add_endpoint(session, scope, "webhook", "http://127.0.0.1:9/x", None, None)
        delivery = app.notifier.send_test(session, scope, endpoint.id)
    with app.outbound.private_addresses(allowed=False):  # the address rule is applied to each send
        assert app.notifier.deliver(delivery.id) == "PENDING"
    [refused] = _deliveries(app)
    assert refused.last_error is not None and "loopback" in refused.last_error


def test_a_reconciliation_that_finds_differences_announces_them(app: Container, mock_erp: MockErp) -> None:
    scope = _tenant(app)
    with transaction(app.session_factory) as session:
        app.notifier.add_endpoint(session, scope, "webhook", "https://ops.example.com/h", ["reconcile.drift"], None)
    saved, _ = app.connections.save_rest(scope.tenant_id, scope.environment_id, mock_erp.url, ERP_KEY)
    app.connections.check_health(saved.id, scope=None)
    assert app.sync.run(saved.id).status == "SUCCEEDED"
    mock_erp.data.delete("invoices", [4, 5])
    assert app.sync.run(saved.id, kind="reconcile").status == "SUCCEEDED"
    assert app.sync.run(saved.id, kind="reconcile").status == "SUCCEEDED"  # nothing new differs
    [drift] = _deliveries(app, "reconcile.drift")
    assert drift.payload["data"]["differences"] == {"invoices": {"missingInErp": 2, "returned": 0, "differing": 0}}
