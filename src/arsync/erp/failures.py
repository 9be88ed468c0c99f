"""The repeated-failure policy: a connection whose scheduled syncs keep failing is paused.

After ``limit`` scheduled slots in a row ended FAILED (their retries included) with no
successful run of any kind since, the connection is ``PAUSED`` with the reason: the schedule
stops trying it, and the UI and the API say why. It is never dropped: a Sync now that succeeds
makes it ACTIVE again and the schedule takes it back.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from arsync.db import utcnow
from arsync.erp.models import Connection, SyncRun

UNPAUSED_BY = "fix the cause, then press Sync now: a run that succeeds resumes the schedule"


def pause_if_failing(session: Session, connection: Connection, run: SyncRun, limit: int) -> bool:
    """Pause ``connection`` if ``run``, a scheduled run that failed for good (no retry queued),
    makes ``limit`` failed slots in a row; whether it did."""
    if limit <= 0 or run.trigger not in ("schedule", "retry") or connection.status in ("PAUSED", "NEEDS_REAUTH"):
        return False
    slots = session.scalars(
        select(SyncRun)
        .where(SyncRun.connection_id == connection.id, SyncRun.trigger == "schedule", SyncRun.kind == "sync")
        .order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
        .limit(limit)
    ).all()
    if len(slots) < limit:
        return False
    since = slots[-1].started_at
    succeeded = session.scalar(
        select(SyncRun.id)
        .where(SyncRun.connection_id == connection.id, SyncRun.status == "SUCCEEDED", SyncRun.started_at >= since)
        .limit(1)
    )
    if succeeded is not None or any(slot.status != "FAILED" for slot in slots):
        return False
    reason = (run.error or {}).get("message") or "the last run failed"
    connection.status, connection.status_changed_at = "PAUSED", utcnow()
    connection.status_reason = f"paused after {limit} scheduled syncs in a row failed (last: {reason}); {UNPAUSED_BY}"
    return True
