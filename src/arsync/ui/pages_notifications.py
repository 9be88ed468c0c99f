"""Settings → Notifications: webhook and email endpoints, a test-send, and the delivery log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from arsync.db import transaction
from arsync.errors import ArsyncError
from arsync.notify.events import DEFAULT_EVENTS, EVENTS
from arsync.notify.flows import Notifier, list_deliveries, list_endpoints
from arsync.schemas import PageParams
from arsync.ui.base import ActionDep, Ui, UiDep, act, plain_words, render

router = APIRouter(include_in_schema=False)
DELIVERY_ROWS = 25


def _page(request: Request, ui: Ui, *, status_code: int = 200, **context: Any) -> Response:
    with ui.db() as session:
        endpoints = list_endpoints(session, ui.scope)
        deliveries, _ = list_deliveries(session, ui.scope, PageParams(limit=DELIVERY_ROWS))
        session.expunge_all()
    return render(
        ui, request, "settings_notifications.html", endpoints=endpoints, deliveries=deliveries,
        events=EVENTS, default_events=DEFAULT_EVENTS, email_ready=ui.container.notifier.smtp is not None,
        status_code=status_code, **context,
    )  # fmt: skip


@router.get("/settings/notifications", response_class=HTMLResponse)
def notification_settings(request: Request, ui: UiDep) -> Response:
    return _page(request, ui)


@router.post("/settings/notifications", response_class=HTMLResponse)
def add_endpoint(
    request: Request,
    ui: ActionDep,
    kind: Annotated[str, Form(max_length=10)] = "webhook",
    target: Annotated[str, Form(max_length=2000)] = "",
    events: Annotated[list[str] | None, Form()] = None,
    description: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Save an endpoint; a webhook's signing secret is shown on this response only."""
    try:
        with transaction(ui.container.session_factory) as session:
            endpoint, secret = ui.container.notifier.add_endpoint(
                session, ui.scope, kind, target, events or [], description.strip() or None
            )
            saved = endpoint.target
    except ArsyncError as exc:
        return _page(request, ui, status_code=400, form_error=plain_words(exc), form_target=target)
    return _page(request, ui, created_secret=secret, created_target=saved)


@router.post("/settings/notifications/{endpoint_id}/test")
def test_endpoint(request: Request, endpoint_id: str, ui: ActionDep) -> Response:
    def send() -> None:
        with transaction(ui.container.session_factory) as session:
            ui.container.notifier.send_test(session, ui.scope, endpoint_id)

    return act(request, "/settings/notifications", send,
               lambda _: "Test notification queued: its outcome shows in the delivery log below.")  # fmt: skip


@router.post("/settings/notifications/{endpoint_id}/delete")
def delete_endpoint(request: Request, endpoint_id: str, ui: ActionDep) -> Response:
    def remove() -> None:
        with transaction(ui.container.session_factory) as session:
            Notifier.remove_endpoint(session, ui.scope, endpoint_id)

    return act(request, "/settings/notifications", remove, lambda _: "Endpoint removed, with its delivery log.")
