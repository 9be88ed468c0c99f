"""ERP connections and the record every sync run leaves behind."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from arsync.db import Base, UTCDateTime, new_id, utcnow
from arsync.ledger.models import JSONType, Money

CONNECTION_STATUSES = ("PENDING", "ACTIVE", "FAILED", "NEEDS_REAUTH", "PAUSED")
RUN_STATUSES = ("RUNNING", "SUCCEEDED", "FAILED")


class Connection(Base):
    """One ERP connection of a (tenant, environment): at most one per transport."""

    __tablename__ = "erp_connections"
    __table_args__ = (UniqueConstraint("tenant_id", "environment_id", "transport"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("conn"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    transport: Mapped[str] = mapped_column(String(20))  # "rest" | "native"
    provider: Mapped[str] = mapped_column(String(40))  # "nudge-rest" | "xero"
    base_url: Mapped[str] = mapped_column(String(2000))
    secret_encrypted: Mapped[str] = mapped_column(String(4000))
    secret_hint: Mapped[str] = mapped_column(String(40))
    bank_account_code: Mapped[str | None] = mapped_column(String(50), default=None)
    # Native connections: the revenue account invoice lines are posted to (None: the ERP's default).
    sales_account_code: Mapped[str | None] = mapped_column(String(50), default=None)
    status: Mapped[str] = mapped_column(String(20), default="PENDING")
    status_reason: Mapped[str | None] = mapped_column(String(2000), default=None)
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    sync_watermark: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Its own schedule (cron, UTC); None: the server's ARSYNC_SYNC_CRON. With its own, the last
    # slot it was started for, so each slot starts it once (arsync.schedule).
    sync_cron: Mapped[str | None] = mapped_column(String(100), default=None)
    schedule_slot_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Native connections: the ERP's own id and name of the organisation connected.
    external_tenant_id: Mapped[str | None] = mapped_column(String(100), default=None)
    external_tenant_name: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def schedule(self, server_cron: str) -> str:
        """The cron it syncs by: its own, or the server's ``server_cron`` when it has none."""
        return self.sync_cron or server_cron


class SyncRun(Base):
    """One inbound sync. At most one per connection is RUNNING (a partial unique index)."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        Index(
            "uq_sync_runs_one_running",
            "connection_id",
            unique=True,
            sqlite_where=text("status = 'RUNNING'"),
            postgresql_where=text("status = 'RUNNING'"),
        ),
        Index("ix_sync_runs_connection_started", "connection_id", "started_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("run"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("erp_connections.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(20))  # manual | schedule | connect | cli
    status: Mapped[str] = mapped_column(String(20), default="RUNNING")
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    modified_since: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    warnings_omitted: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    # 1 for a run the schedule or a person started; 2, 3, … for the schedule's retries after a
    # transient failure.
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # "host:pid" of the process executing the run, so a dead one on this host is seen at once.
    runner: Mapped[str | None] = mapped_column(String(200), default=None)
    # "sync", or "reconcile": a full walk that also finds what the ERP no longer has (erp.reconcile).
    kind: Mapped[str] = mapped_column(String(20), default="sync", server_default="sync")
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)  # a reconciliation's


class ReconcileSeen(Base):
    """The ERP ids a reconciliation run has read so far, one row per record and page: kept in
    the database, not in memory, and removed when the run ends."""

    __tablename__ = "reconcile_seen"
    __table_args__ = (Index("ix_reconcile_seen_run_entity_erp_id", "run_id", "entity", "erp_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(20))
    erp_id: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str | None] = mapped_column(String(3), default=None)  # invoices
    amount_total: Mapped[Decimal | None] = mapped_column(Money, default=None)  # invoices; a payment's amount
    amount_outstanding: Mapped[Decimal | None] = mapped_column(Money, default=None)  # invoices
    erp_invoice_id: Mapped[str | None] = mapped_column(String(200), default=None)  # payments: for their currency


PUSH_STATUSES = ("PENDING", "SUCCEEDED", "FAILED")
PUSH_KINDS = ("invoice", "payment")


class Push(Base):
    """One outbound push of an invoice or a payment to the ERP.

    Written in the same transaction as the dispatch or approval that caused it, so it is never
    lost. There is at most one push per invoice and one per payment (partial unique indexes).
    """

    __tablename__ = "pushes"
    __table_args__ = (
        Index(
            "uq_pushes_invoice",
            "invoice_id",
            unique=True,
            sqlite_where=text("kind = 'invoice'"),
            postgresql_where=text("kind = 'invoice'"),
        ),
        Index("uq_pushes_payment", "payment_id", unique=True),
        Index("ix_pushes_scope_status", "tenant_id", "environment_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("push"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))  # invoice | payment
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"), default=None)
    connection_id: Mapped[str | None] = mapped_column(String(40), default=None)  # the last one used
    status: Mapped[str] = mapped_column(String(20), default="PENDING")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    manual_retries: Mapped[int] = mapped_column(Integer, default=0)
    # Sent as Idempotency-Key; None means f"arsync-{id}". A manual retry after the ERP refused the
    # push gets a new one: Xero replays its first answer to a key it has seen (or refuses a changed
    # body), so the corrected push would never get through under the old key.
    idempotency_key: Mapped[str | None] = mapped_column(String(128), default=None)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    erp_id: Mapped[str | None] = mapped_column(String(200), default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Set, and committed, before a request goes to the ERP; cleared with the attempt's outcome.
    # Still set when the next attempt starts means the last one died mid-send: its outcome is
    # unknown and must be looked up at the ERP before anything is sent again.
    sending_since: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # When the first attempt went out: the look-up asks the ERP for records changed since then.
    first_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class OAuthState(Base):
    """One OAuth authorization in progress: the ``state`` Xero sends back, tied to a scope.

    Only a hash of the state is stored. The PKCE verifier and, while the user picks one of
    several organisations, the tokens are encrypted.
    """

    __tablename__ = "oauth_states"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(40))
    code_verifier_encrypted: Mapped[str] = mapped_column(String(4000))
    bank_account_code: Mapped[str | None] = mapped_column(String(50), default=None)
    sales_account_code: Mapped[str | None] = mapped_column(String(50), default=None)
    # The UI session that started it (SHA-256 of its token), when started from the UI: the
    # browser that comes back from Xero must be that session (RFC 6749, section 10.12).
    session_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    tokens_encrypted: Mapped[str | None] = mapped_column(String(8000), default=None)
    organisations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
