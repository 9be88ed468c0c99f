"""``/api/v1`` routes for notification endpoints, test-sends and the delivery log."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from arsync.notify import flows, schemas
from arsync.schemas import Page
from arsync.web.deps import ContainerDep, PagingDep, ScopeDep, SessionDep
from arsync.web.errors import ERROR_RESPONSES

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES, tags=["notifications"])


@router.get("/notification-endpoints", response_model=list[schemas.NotificationEndpointRead])
def list_notification_endpoints(scope: ScopeDep, session: SessionDep) -> list[schemas.NotificationEndpointRead]:
    """This environment's webhook and email endpoints (secrets are never shown again)."""
    return [schemas.endpoint_read(endpoint) for endpoint in flows.list_endpoints(session, scope)]


@router.post("/notification-endpoints", status_code=201, response_model=schemas.NotificationEndpointCreated)
def add_notification_endpoint(
    body: schemas.NotificationEndpointCreate, scope: ScopeDep, session: SessionDep, container: ContainerDep
) -> schemas.NotificationEndpointCreated:
    """Add a webhook (signed with a new ``whsec_`` secret, returned once) or an email address."""
    target = body.url if isinstance(body, schemas.WebhookEndpointCreate) else body.email
    endpoint, secret = container.notifier.add_endpoint(session, scope, body.kind, target, body.events, body.description)
    return schemas.NotificationEndpointCreated(**schemas.endpoint_read(endpoint).model_dump(), secret=secret)


@router.delete("/notification-endpoints/{endpoint_id}", status_code=204)
def remove_notification_endpoint(endpoint_id: str, scope: ScopeDep, session: SessionDep) -> Response:
    flows.Notifier.remove_endpoint(session, scope, endpoint_id)
    return Response(status_code=204)


@router.post(
    "/notification-endpoints/{endpoint_id}/test", status_code=202, response_model=schemas.NotificationDeliveryRead
)
def test_notification_endpoint(
    endpoint_id: str, scope: ScopeDep, session: SessionDep, container: ContainerDep
) -> schemas.NotificationDeliveryRead:
    """Queue a ``notification.test`` event to this endpoint; its outcome shows in the delivery log."""
    return schemas.delivery_read(container.notifier.send_test(session, scope, endpoint_id))


@router.get("/notification-deliveries", response_model=Page[schemas.NotificationDeliveryRead])
def notification_deliveries(
    scope: ScopeDep,
    session: SessionDep,
    paging: PagingDep,
    status: Annotated[Literal["PENDING", "DELIVERED", "FAILED"] | None, Query()] = None,
    endpoint_id: Annotated[str | None, Query(alias="endpointId", max_length=40)] = None,
) -> Page[schemas.NotificationDeliveryRead]:
    """Every notification sent or being sent, newest first, with its attempts and last answer."""
    rows, has_more = flows.list_deliveries(session, scope, paging, status=status, endpoint_id=endpoint_id)
    return Page(
        items=[schemas.delivery_read(row) for row in rows], page=paging.page, limit=paging.limit, has_more=has_more
    )
