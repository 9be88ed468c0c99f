"""Request and response bodies for notification endpoints and their delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, WithJsonSchema

from arsync.notify.events import EVENTS
from arsync.notify.models import NotificationDelivery, NotificationEndpoint
from arsync.notify.targets import WEBHOOK_URL_PATTERN, validate_webhook_url
from arsync.schemas import ApiModel, Email, RequestModel

EventName = Annotated[str, WithJsonSchema({"type": "string", "enum": list(EVENTS)})]  # checked by the service
WebhookUrl = Annotated[
    str,
    Field(min_length=1, max_length=2000),
    AfterValidator(validate_webhook_url),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 2000, "pattern": WEBHOOK_URL_PATTERN}),
]


class _EndpointCreate(RequestModel):
    events: list[EventName] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="Event types to send; default: every one but sync.succeeded",
    )
    description: str | None = Field(default=None, max_length=200)


class WebhookEndpointCreate(_EndpointCreate):
    kind: Literal["webhook"]
    url: WebhookUrl = Field(description="Where to POST; a query string is allowed")


class EmailEndpointCreate(_EndpointCreate):
    kind: Literal["email"]
    email: Email = Field(description="Needs ARSYNC_SMTP_HOST and ARSYNC_SMTP_FROM (409 without them)")


NotificationEndpointCreate = WebhookEndpointCreate | EmailEndpointCreate  # told apart by kind


class NotificationEndpointRead(ApiModel):
    id: str
    kind: str
    target: str
    events: list[str]
    description: str | None
    enabled: bool = Field(description="False after the receiver answered 410 Gone; a test-send enables it again")
    created_at: datetime


class NotificationEndpointCreated(NotificationEndpointRead):
    secret: str | None = Field(
        description="The whsec_ signing secret (webhooks): shown only in this answer, keep it now"
    )


class NotificationDeliveryRead(ApiModel):
    id: str = Field(description="Also the webhook-id header: the same on every attempt")
    endpoint_id: str
    event_type: str
    payload: dict[str, Any]
    status: Literal["PENDING", "DELIVERED", "FAILED"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


def endpoint_read(endpoint: NotificationEndpoint) -> NotificationEndpointRead:
    return NotificationEndpointRead(
        id=endpoint.id,
        kind=endpoint.kind,
        target=endpoint.target,
        events=list(endpoint.events),
        description=endpoint.description,
        enabled=endpoint.enabled,
        created_at=endpoint.created_at,
    )


def delivery_read(delivery: NotificationDelivery) -> NotificationDeliveryRead:
    return NotificationDeliveryRead(
        id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        event_type=delivery.event_type,
        payload=delivery.payload,
        status=delivery.status,
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
    )
