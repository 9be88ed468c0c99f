"""Request and response bodies for ERP connections and sync runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from arsync.erp.models import Connection, Push, SyncRun
from arsync.erp.runs import run_as_dict
from arsync.schedule import valid_cron
from arsync.schemas import ApiModel, BaseUrl, RequestModel


class RestConnectionSave(RequestModel):
    base_url: BaseUrl = Field(examples=["https://erp-middleware.example.com/nudge"])
    bank_account_code: str | None = Field(default=None, max_length=50, examples=["090"])


class ConnectionUpdate(RequestModel):
    """Omitted fields stay as they are."""

    bank_account_code: str | None = Field(default=None, max_length=50, examples=["090"])
    sales_account_code: str | None = Field(
        default=None, max_length=50, examples=["200"], description="Native connections only"
    )
    sync_schedule: str | None = Field(
        default=None, max_length=100, examples=["0 */6 * * *"],
        description="When this connection syncs by itself: cron, five fields, UTC. null: the server's schedule",
    )  # fmt: skip

    @field_validator("sync_schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return valid_cron(value) if value is not None else None


class ConnectionRead(ApiModel):
    id: str
    transport: Literal["rest", "native"]
    provider: str
    base_url: str
    bank_account_code: str | None
    status: Literal["PENDING", "ACTIVE", "FAILED", "NEEDS_REAUTH", "PAUSED"]
    status_reason: str | None
    status_changed_at: datetime
    last_error: dict[str, Any] | None
    key_hint: str = Field(description="The middleware key, masked")
    last_successful_sync_started_at: datetime | None
    erp_organisation_id: str | None = Field(default=None, description="Native connections: the ERP's organisation")
    erp_organisation_name: str | None = None
    sales_account_code: str | None = Field(
        default=None, description="Native connections: the revenue account invoice lines go to (None: the default)"
    )
    sync_schedule: str | None = Field(default=None, description="Its own schedule (cron, UTC); null: the server's")


class ConnectionWithKey(ConnectionRead):
    api_key: str | None = Field(description="The generated middleware key (ask_…); present only when just created")


class EntityCounts(ApiModel):
    created: int
    updated: int
    unchanged: int
    skipped: int
    pages: int
    records: int
    inferred: int = 0
    applied_late: int = 0


class SyncRunRead(ApiModel):
    id: str
    connection_id: str
    kind: Literal["sync", "reconcile"] = Field(
        description="reconcile: a full read that also finds what the ERP dropped"
    )
    trigger: str
    attempt: int = Field(description="1, or 2, 3, … for the schedule's retries after a transient failure")
    status: Literal["RUNNING", "SUCCEEDED", "FAILED"]
    full: bool
    modified_since: str | None
    started_at: str
    finished_at: str | None
    duration_seconds: float | None
    counts: dict[str, EntityCounts]
    warnings: list[dict[str, Any]]
    warnings_omitted: int
    error: dict[str, Any] | None
    report: dict[str, Any] | None = Field(
        description="A finished reconciliation's: ledgerEqualsErp, per entity (erp, ledgerBefore, ledgerAfter, "
        "missingInErp, returned, differing), invoicesByCurrency and payments totals"
    )


def connection_read(connection: Connection) -> ConnectionRead:
    return ConnectionRead(
        id=connection.id,
        transport=connection.transport,
        provider=connection.provider,
        base_url=connection.base_url,
        bank_account_code=connection.bank_account_code,
        status=connection.status,
        status_reason=connection.status_reason,
        status_changed_at=connection.status_changed_at,
        last_error=connection.last_error,
        key_hint=connection.secret_hint,
        last_successful_sync_started_at=connection.sync_watermark,
        erp_organisation_id=connection.external_tenant_id,
        erp_organisation_name=connection.external_tenant_name,
        sales_account_code=connection.sales_account_code,
        sync_schedule=connection.sync_cron,
    )


def sync_run_read(run: SyncRun) -> SyncRunRead:
    return SyncRunRead.model_validate(run_as_dict(run))


class PushRead(ApiModel):
    id: str
    kind: Literal["invoice", "payment"]
    invoice_id: str
    payment_id: str | None
    status: Literal["PENDING", "SUCCEEDED", "FAILED"]
    attempts: int = Field(description="Attempts in the current round; a manual retry starts a new round")
    manual_retries: int
    last_error: dict[str, Any] | None
    erp_id: str | None = Field(description="erpInvoiceId or erpPaymentId returned by the ERP")
    connection_id: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    succeeded_at: datetime | None


def push_read(push: Push) -> PushRead:
    return PushRead(
        id=push.id,
        kind=push.kind,
        invoice_id=push.invoice_id,
        payment_id=push.payment_id,
        status=push.status,
        attempts=push.attempts,
        manual_retries=push.manual_retries,
        last_error=push.last_error,
        erp_id=push.erp_id,
        connection_id=push.connection_id,
        next_attempt_at=push.next_attempt_at,
        created_at=push.created_at,
        updated_at=push.updated_at,
        succeeded_at=push.succeeded_at,
    )
