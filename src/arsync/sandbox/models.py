"""Developer Sandbox runs started from the web page, kept per tenant in the database.

So a run survives a restart and can be followed from any server behind a load balancer. Each
check's result is a row of its own, written as the check ends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from arsync.db import Base, UTCDateTime, new_id, utcnow
from arsync.ledger.models import JSONType

SANDBOX_RUN_STATUSES = ("RUNNING", "FINISHED", "ERROR")


class SandboxRun(Base):
    __tablename__ = "sandbox_runs"
    __table_args__ = (Index("ix_sandbox_runs_tenant_started", "tenant_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("sbx"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    base_url: Mapped[str] = mapped_column(Text)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    allow_writes: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="RUNNING")
    total: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    runner: Mapped[str | None] = mapped_column(String(200), default=None)  # "host:pid" running it
    warnings: Mapped[list[str]] = mapped_column(JSONType, default=list)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # The suite's own run id (the SBX-<id> prefix of what it wrote) and per-endpoint latency.
    suite_run_id: Mapped[str | None] = mapped_column(String(20), default=None)
    latency: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    must_failed: Mapped[int] = mapped_column(Integer, default=0)
    should_warnings: Mapped[int] = mapped_column(Integer, default=0)
    # Set when the tenant shares a passing run: the public summary and badge are found by it.
    share_token: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)


class SandboxCheckResult(Base):
    __tablename__ = "sandbox_check_results"

    run_id: Mapped[str] = mapped_column(ForeignKey("sandbox_runs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    verdict: Mapped[str] = mapped_column(String(10))
    tier: Mapped[str] = mapped_column(String(10))
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)  # CheckResult.as_dict()
