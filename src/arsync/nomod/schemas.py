"""Request and response bodies for the Nomod connection, payment links and sync state."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, WithJsonSchema

from arsync.nomod.models import EntityIntegrationMapping, IntegrationSync, NomodConnection, NomodWebhookDelivery
from arsync.schemas import ApiModel, BaseUrl, RequestModel

# sk_ and at least five more printable ASCII characters, as the service checks it.
API_KEY_PATTERN = r"^sk_[!-~]{5,}$"
# whsec_ and a non-empty base64 key, as nomod.signing reads it.
WEBHOOK_SECRET_PATTERN = r"^whsec_(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"
OPTIONAL_WEBHOOK_SECRET = {
    "anyOf": [{"type": "string", "pattern": WEBHOOK_SECRET_PATTERN, "maxLength": 500}, {"type": "null"}]
}


class InvoiceSyncSettings(RequestModel):
    outbound: StrictBool = Field(description="Send invoices to Nomod when they are finalized")


class NomodConnectionSave(RequestModel):
    # The patterns are checked by the service, with its own messages (nomod.service.save_connection).
    api_key: Annotated[str, WithJsonSchema({"type": "string", "pattern": API_KEY_PATTERN, "maxLength": 500})] = Field(
        max_length=500, description="Nomod secret key, sk_test_… or sk_live_…"
    )
    invoice_sync: InvoiceSyncSettings
    base_url: BaseUrl | None = Field(default=None, description="Default: the current one, or ARSYNC_NOMOD_BASE_URL")
    webhook_secret: Annotated[str | None, WithJsonSchema(OPTIONAL_WEBHOOK_SECRET)] = Field(
        default=None,
        max_length=500,
        description="The whsec_… secret Nomod signs webhooks with (base64 after the prefix); kept if omitted",
    )
    allow_service_fee: StrictBool | None = Field(
        default=None,
        description="Let Nomod add its service fee on top of the invoice (Nomod's own default is true). "
        "Off unless chosen, so a payer is never charged more than the invoice; kept if omitted",
    )


class NomodConnectionRead(ApiModel):
    id: str
    api_key_hint: str = Field(description="Masked; the key itself is never shown")
    invoice_sync: InvoiceSyncSettings
    base_url: str
    status: Literal["ACTIVE", "FAILED"]
    status_reason: str | None
    last_error: dict[str, Any] | None
    webhook_secret_set: bool
    allow_service_fee: bool
    webhook_path: str = Field(description="Where Nomod should send paid webhooks, on this server")
    created_at: datetime
    updated_at: datetime


def nomod_connection_read(connection: NomodConnection) -> NomodConnectionRead:
    return NomodConnectionRead(
        id=connection.id,
        api_key_hint=connection.api_key_hint,
        invoice_sync=InvoiceSyncSettings(outbound=connection.invoice_sync_outbound),
        base_url=connection.base_url,
        status=connection.status,
        status_reason=connection.status_reason,
        last_error=connection.last_error,
        webhook_secret_set=connection.webhook_secret_encrypted is not None,
        allow_service_fee=connection.allow_service_fee,
        webhook_path=f"/api/v1/webhooks/nomod/{connection.tenant_id}/{connection.environment_id}",
        created_at=connection.created_at,
        updated_at=connection.updated_at,
    )


class PaymentLinkRead(ApiModel):
    invoice_id: str
    kind: Literal["invoice", "link"] = Field(
        description="invoice: the Nomod invoice's page; link: a Nomod payment link"
    )
    nomod_id: str
    url: str | None
    nomod_customer_id: str


class InvoiceNomodRead(ApiModel):
    """Where an invoice stands with Nomod."""

    status: Literal["PENDING", "SYNCED", "FAILED"] | None = Field(
        description="The invoice sync's status; null when the invoice was never queued for it"
    )
    attempts: int
    error: dict[str, Any] | None = Field(description="code, message (one of the stable ones) and detail")
    next_attempt_at: datetime | None
    nomod_invoice_id: str | None
    nomod_link_id: str | None
    payment_url: str | None = Field(description="The Nomod invoice's URL, else the payment link's")


def invoice_nomod_read(
    state: IntegrationSync | None,
    invoice: EntityIntegrationMapping | None,
    link: EntityIntegrationMapping | None,
) -> InvoiceNomodRead:
    return InvoiceNomodRead(
        status=state.status if state else ("SYNCED" if invoice else None),
        attempts=state.attempts if state else 0,
        error=state.last_error if state else None,
        next_attempt_at=state.next_attempt_at if state else None,
        nomod_invoice_id=invoice.provider_id if invoice else None,
        nomod_link_id=link.provider_id if link else None,
        payment_url=(invoice.url if invoice else None) or (link.url if link else None),
    )


class WebhookResult(ApiModel):
    status: Literal["recorded", "needs_attention", "duplicate", "ignored"]
    reason: str | None
    charge_id: str | None
    invoice_id: str | None
    cash_application_id: str | None
    payment_id: str | None
    delivery_id: str | None = Field(description="The delivery's entry in the delivery log")


class WebhookDeliveryRead(ApiModel):
    """One webhook as it arrived, and what arsync made of it."""

    id: str
    received_at: datetime
    message_id: str | None = Field(description="Nomod's svix-id")
    event_type: str | None = Field(description="The body's type, when it has one; never relied on")
    verified: bool = Field(description="The signature checked out")
    charge_id: str | None
    outcome: Literal["recorded", "duplicate", "needs_attention", "ignored", "rejected", "failed"]
    reason: str | None = Field(description="Why it was not recorded, or what to look at")
    invoice_id: str | None
    cash_application_id: str | None


def webhook_delivery_read(row: NomodWebhookDelivery) -> WebhookDeliveryRead:
    return WebhookDeliveryRead(
        id=row.id,
        received_at=row.received_at,
        message_id=row.message_id,
        event_type=row.event_type,
        verified=row.verified,
        charge_id=row.charge_id,
        outcome=row.outcome,
        reason=row.reason,
        invoice_id=row.invoice_id,
        cash_application_id=row.cash_application_id,
    )
