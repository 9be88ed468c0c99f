"""Settings. This module is the only reader of environment variables."""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from cryptography.fernet import Fernet
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from arsync.schedule import valid_cron


class Settings(BaseSettings):
    """arsync configuration, read from ``ARSYNC_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="ARSYNC_", extra="ignore")

    data_dir: Path = Field(default=Path(".arsync"), description="Local state: SQLite file, secret key.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default is SQLite under data_dir.")
    secret_key: str | None = Field(
        default=None, repr=False, description="Fernet key for secrets at rest; generated into data_dir if unset."
    )
    sync_cron: str = Field(default="0 2 * * *", description="When every ACTIVE connection syncs (cron, UTC).")
    sync_pause_after_failures: int = Field(
        default=5, ge=0, description="Pause a connection after this many scheduled syncs in a row failed (0: never)."
    )
    reconcile_cron: str = Field(
        default="0 3 * * 0",
        description="When every ACTIVE or FAILED connection is reconciled with its ERP (cron, UTC; Sundays 03:00).",
    )
    metrics_token: str | None = Field(
        default=None,
        repr=False,
        description="Bearer token GET /metrics asks for; unset, /metrics answers loopback clients only.",
    )
    nomod_base_url: str = "https://api.nomod.com"
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per line, with the request, run, push or notification id."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Notifications (signed webhooks; email when an SMTP server is set).
    notify_max_attempts: int = Field(default=24, ge=1, le=100, description="Attempts before a delivery FAILS.")
    notify_backoff_seconds: float = Field(default=5.0, ge=0, description="First retry delay; doubles, capped at 1 h.")
    notify_timeout_seconds: float = Field(default=15.0, gt=0, description="How long a receiver has to answer.")
    smtp_host: str | None = Field(default=None, description="SMTP server for email notifications; unset: no email.")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_from: str | None = Field(default=None, description="The From address of notification email.")
    smtp_username: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    smtp_starttls: bool = Field(default=True, description="Upgrade the SMTP connection with STARTTLS.")

    # Xero (native OAuth connector). Every URL is configurable so the mock can stand in.
    xero_client_id: str | None = Field(default=None, description="The Xero app's client id.")
    xero_client_secret: str | None = Field(default=None, repr=False, description="The Xero app's client secret.")
    xero_redirect_uri: str = Field(
        default="http://127.0.0.1:8000/api/v1/connections/xero/callback",
        description="Where Xero sends the user back; must match the Xero app's setting.",
    )
    xero_scopes: str = Field(
        default="offline_access accounting.contacts accounting.invoices accounting.payments",
        description="OAuth scopes asked for. Xero apps created on or after 2 March 2026 get only granular scopes "
        "(the default); older apps may use 'offline_access accounting.transactions accounting.contacts' "
        "until September 2027.",
    )
    xero_authorize_url: str = "https://login.xero.com/identity/connect/authorize"
    xero_token_url: str = "https://identity.xero.com/connect/token"
    xero_revoke_url: str = "https://identity.xero.com/connect/revocation"
    xero_api_url: str = Field(default="https://api.xero.com", description="Serves /connections and /api.xro/2.0.")
    xero_calls_per_minute: int = Field(default=60, ge=1, description="Per-organisation budget, below Xero's limit.")
    xero_minute_seconds: float = Field(default=60.0, gt=0, description="The window of that budget.")
    xero_max_in_flight: int = Field(default=5, ge=1, le=5, description="Calls in flight per organisation.")

    # ERP sync tuning.
    sync_page_size: int = Field(default=1000, ge=1, le=10_000)
    sync_max_pages: int = Field(default=100_000, ge=1, description="Paging guard per entity.")
    sync_max_page_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    http_timeout_seconds: float = Field(default=30.0, gt=0)
    outbound_allow_private: bool = Field(
        default=False,
        description="Let tenants point arsync at loopback and private addresses (link-local never); for "
        "single-tenant installs whose middleware is on a private network.",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest request body the server reads; larger gets 413."
    )
    max_webhook_body_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Largest webhook body (checked before its signature)."
    )
    http_max_attempts: int = Field(default=4, ge=1, le=10)
    http_backoff_seconds: float = Field(default=0.5, ge=0)
    http_max_retry_after_seconds: float = Field(default=60.0, ge=0)
    sync_stale_after_seconds: int = Field(
        default=30, ge=1, description="A RUNNING run with no heartbeat for this long is taken over."
    )
    sync_heartbeat_seconds: float = Field(
        default=5.0, gt=0, description="A running sync records that it is alive this often, between pages too."
    )
    sync_lookback_seconds: int = Field(
        default=300,
        ge=0,
        description="Incremental syncs (and push look-ups) ask for changes since this long before the last start.",
    )
    sync_retry_attempts: int = Field(
        default=3, ge=0, le=10, description="Scheduled runs that fail in a transient way are run again this often."
    )
    sync_retry_backoff_seconds: float = Field(
        default=60.0, ge=0, description="First delay before a failed scheduled run is retried; doubles."
    )

    # Outbound pushes and the job engine.
    push_max_attempts: int = Field(default=8, ge=1, le=50, description="Automatic attempts before a push FAILS.")
    push_backoff_seconds: float = Field(default=5.0, ge=0, description="First retry delay; doubles, capped at 1 h.")
    api_read_connections: int = Field(
        default=4, ge=1, le=100, description="PostgreSQL connections per API process for the customer read routes."
    )
    worker_concurrency: int = Field(default=8, ge=1, le=64, description="Jobs one worker runs at once.")
    worker_heartbeat_seconds: float = Field(
        default=10.0, gt=0, description="Workers beat this often; one silent for 3 beats has its jobs re-run."
    )
    job_retention_days: int = Field(
        default=30, ge=1, description="Failed, cancelled and aborted jobs are deleted this long after they end."
    )
    failpoints: str = Field(
        default="", description="Testing only: comma-separated places where a push stops dead (crash tests)."
    )

    @property
    def failpoint_names(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.failpoints.split(",") if name.strip())

    @field_validator("sync_cron", "reconcile_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return valid_cron(value)

    @property
    def is_postgresql(self) -> bool:
        return self.resolved_database_url.startswith("postgresql")

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'arsync.db').resolve()}"

    @cached_property
    def resolved_secret_key(self) -> str:
        """The configured key, or one generated once into the data directory with mode 0600."""
        if self.secret_key:
            return self.secret_key
        key_file = self.data_dir / "secret.key"
        if key_file.exists():
            return key_file.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key().decode()
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key


def new_token(prefix: str, nbytes: int = 24) -> str:
    """A random, URL-safe secret with a readable prefix, e.g. ``ask_…``."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"
