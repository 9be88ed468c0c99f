"""The Nomod connection of an environment, and the links between arsync records and provider ids."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from arsync.db import Base, UTCDateTime, new_id, utcnow
from arsync.ledger.models import JSONType, Money


class NomodConnection(Base):
    """At most one per (tenant, environment). The API key and webhook secret are encrypted."""

    __tablename__ = "nomod_connections"
    __table_args__ = (UniqueConstraint("tenant_id", "environment_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("nmc"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    base_url: Mapped[str] = mapped_column(String(2000))
    api_key_encrypted: Mapped[str] = mapped_column(String(4000))
    api_key_hint: Mapped[str] = mapped_column(String(40))
    webhook_secret_encrypted: Mapped[str | None] = mapped_column(String(4000), default=None)
    invoice_sync_outbound: Mapped[bool] = mapped_column(Boolean, default=False)
    # Nomod adds its service fee to what the payer pays unless told not to (allow_service_fee
    # defaults to true in Nomod's invoices/create and generate-link); arsync sends this setting.
    allow_service_fee: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="ACTIVE")  # ACTIVE | FAILED
    status_reason: Mapped[str | None] = mapped_column(String(2000), default=None)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EntityIntegrationMapping(Base):
    """An arsync record's id at a provider. Written only together with that id, never half.

    Unique on (tenant, environment, entity type, entity, provider): concurrent syncs of one
    customer can store one mapping only.
    """

    __tablename__ = "entity_integration_mappings"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id", "environment_id", "entity_type", "entity_id", "provider", name="uq_integration_mappings_entity"
        ),
        # One arsync record per provider object, too: a Nomod charge is recorded once.
        Index(
            "uq_integration_mappings_provider_id",
            "tenant_id",
            "environment_id",
            "provider",
            "entity_type",
            "provider_id",
            unique=True,
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("map"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    entity_type: Mapped[str] = mapped_column(String(20))  # customer | invoice
    entity_id: Mapped[str] = mapped_column(String(40))
    provider: Mapped[str] = mapped_column(String(20))  # nomod
    provider_id: Mapped[str] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(2000), default=None)
    amount: Mapped[Decimal | None] = mapped_column(Money, default=None)  # what a payment link asks for
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


SYNC_STATUSES = ("PENDING", "SYNCED", "FAILED")


class IntegrationSync(Base):
    """Where an arsync record stands with a provider: queued, synced, or failed and why.

    Invoices get one when they are queued for Nomod; customers get one when their sync is
    tried. ``last_error`` holds the stable code and message shown on the record.
    """

    __tablename__ = "integration_syncs"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id", "environment_id", "entity_type", "entity_id", "provider", name="uq_integration_syncs_entity"
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("isy"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    entity_type: Mapped[str] = mapped_column(String(20))  # customer | invoice
    entity_id: Mapped[str] = mapped_column(String(40))
    provider: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="PENDING")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


DELIVERY_OUTCOMES = ("recorded", "duplicate", "needs_attention", "ignored", "rejected", "failed")


class NomodWebhookDelivery(Base):
    """One webhook as it arrived, and what arsync made of it. Nothing Nomod sends is dropped unseen.

    ``outcome``: recorded (a payment), duplicate (the charge was recorded before), needs_attention
    (paid, but not applied: it could not be routed to an invoice, or does not fit it), ignored
    (not a paid charge), rejected (the signature did not verify), failed (Nomod could not be
    asked about the charge; Nomod is told to deliver again).
    """

    __tablename__ = "nomod_webhook_deliveries"
    __table_args__ = (Index("ix_nomod_webhook_deliveries_scope", "tenant_id", "environment_id", "received_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("whd"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    message_id: Mapped[str | None] = mapped_column(String(200), default=None)
    event_type: Mapped[str | None] = mapped_column(String(100), default=None)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    charge_id: Mapped[str | None] = mapped_column(String(200), default=None)
    outcome: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(2000), default=None)
    invoice_id: Mapped[str | None] = mapped_column(String(40), default=None)
    cash_application_id: Mapped[str | None] = mapped_column(String(40), default=None)
    # The body as received, only once its signature verified (a stranger's bytes are not kept).
    body: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
