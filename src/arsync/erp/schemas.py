"""Request and response bodies for ERP connections and sync runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from arsync.erp.models import Connection, SyncRun
from arsync.erp.sync import run_as_dict
from arsync.schemas import ApiModel


class RestConnectionSave(ApiModel):
    base_url: str = Field(min_length=1, max_length=2000, examples=["https://erp-middleware.example.com/nudge"])
    bank_account_code: str | None = Field(default=None, max_length=50, examples=["090"])


class ConnectionRead(ApiModel):
    id: str
    transport: Literal["rest", "native"]
    provider: str
    base_url: str
    bank_account_code: str | None
    status: Literal["PENDING", "ACTIVE", "FAILED", "NEEDS_REAUTH"]
    status_reason: str | None
    status_changed_at: datetime
    last_error: dict[str, Any] | None
    key_hint: str = Field(description="The middleware key, masked")
    last_successful_sync_started_at: datetime | None


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


class SyncRunRead(ApiModel):
    id: str
    connection_id: str
    trigger: str
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
    )


def sync_run_read(run: SyncRun) -> SyncRunRead:
    return SyncRunRead.model_validate(run_as_dict(run))
