"""The notifications a finished sync run causes, decided in one place.

Connection events fire on a change of status between the run's start and its end, so a
connection that keeps failing is announced once, not once per run; ``connection.recovered``
is the way back to ACTIVE from FAILED, NEEDS_REAUTH or PAUSED.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from arsync.erp.models import Connection, SyncRun
from arsync.notify.events import CONNECTION_STATUS_EVENTS
from arsync.notify.flows import Notifier
from arsync.tenancy.scope import Scope

DIFFERENCES = ("missingInErp", "returned", "differing")


def announce_run(
    notifier: Notifier, session: Session, connection: Connection, run: SyncRun, status_at_start: str
) -> None:
    """In the run's final transaction: queue what its outcome means to subscribers."""
    scope = Scope(run.tenant_id, run.environment_id)
    about: dict[str, Any] = {
        "connectionId": connection.id,
        "provider": connection.provider,
        "runId": run.id,
        "runKind": run.kind,
        "trigger": run.trigger,
    }
    if run.status == "FAILED":
        notifier.emit(session, scope, "sync.failed", about | {"error": error_summary(run.error)})
    else:
        notifier.emit(session, scope, "sync.succeeded", about | {"counts": run.stats})
    event = connection_event(status_at_start, connection.status)
    if event is not None:
        notifier.emit(session, scope, event, about | {
            "status": connection.status,
            "previousStatus": status_at_start,
            "reason": connection.status_reason,
            "error": error_summary(run.error) if run.status == "FAILED" else None,
        })  # fmt: skip
    differences = drift(run.report)
    if differences:
        notifier.emit(session, scope, "reconcile.drift", about | {
            "ledgerEqualsErp": bool(run.report and run.report.get("ledgerEqualsErp")),
            "differences": differences,
        })  # fmt: skip


def connection_event(before: str, after: str) -> str | None:
    if before == after:
        return None
    if after == "ACTIVE":
        return "connection.recovered" if before in CONNECTION_STATUS_EVENTS else None
    return CONNECTION_STATUS_EVENTS.get(after)


def drift(report: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    """Per entity, what a reconciliation found and fixed; empty when nothing differed."""
    found: dict[str, dict[str, int]] = {}
    for entity, row in ((report or {}).get("entities") or {}).items():
        counts = {name: int(row.get(name) or 0) for name in DIFFERENCES}
        if any(counts.values()):
            found[entity] = counts
    return found


def error_summary(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """The parts of a run's or push's error a person acts on (never request or response bodies)."""
    if not error:
        return None
    return {key: error[key] for key in ("kind", "code", "message", "hint") if error.get(key) is not None}
