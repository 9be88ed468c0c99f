"""How a sync run is described to people: the record the CLI, the API and the UI show, and
what it says about an error of arsync's own."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from arsync.erp import contract
from arsync.erp.models import SyncRun


def internal_error_message(error: BaseException) -> str:
    """What the run record says about an error of arsync's own: never the SQL or its parameters,
    which a database error's text carries (the server log has the whole error)."""
    if isinstance(error, SQLAlchemyError):
        cause = getattr(error, "orig", None) or error
        first_line = (str(cause).strip().splitlines() or [""])[0][:300]
        return f"{type(error).__name__}: the database refused the write ({type(cause).__name__}: {first_line})"
    return f"{type(error).__name__}: {str(error)[:500]}"


def run_as_dict(run: SyncRun) -> dict[str, Any]:
    """The sync-run record as shown by the CLI and the API."""
    duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    return {
        "id": run.id,
        "connectionId": run.connection_id,
        "kind": run.kind,
        "trigger": run.trigger,
        "attempt": run.attempt,
        "status": run.status,
        "full": run.full,
        "modifiedSince": contract.format_datetime(run.modified_since) if run.modified_since else None,
        "startedAt": run.started_at.isoformat(),
        "finishedAt": run.finished_at.isoformat() if run.finished_at else None,
        "durationSeconds": round(duration, 3) if duration is not None else None,
        "counts": run.stats,
        "warnings": run.warnings,
        "warningsOmitted": run.warnings_omitted,
        "error": run.error,
        "report": run.report,
    }
