"""What an orchestrator asks before sending work: is the database reachable and migrated, and
can a worker reach its job queue. Answers name the failing part, never a URL or a password."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

from arsync import migrate

QUEUE_TABLE = "procrastinate_jobs"  # made by the migrations; every worker reads and writes it


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str]  # part: "ok" or what is wrong with it


def _unreachable(error: SQLAlchemyError) -> str:
    # The driver's message can hold the host and user; its class says enough (OperationalError).
    return f"unreachable ({type(getattr(error, 'orig', None) or error).__name__})"


def readiness(engine: Engine) -> Readiness:
    """Ready when the database answers and its schema is at this version's newest migration."""
    try:
        revision = migrate.current_revision(engine)
    except SQLAlchemyError as error:
        return Readiness(False, {"database": _unreachable(error)})
    head = migrate.head_revision()
    if revision != head:
        return Readiness(False, {"database": "ok", "migrations": f"at {revision or 'none'}, this version needs {head}"})
    return Readiness(True, {"database": "ok", "migrations": "ok"})


def queue_problem(engine: Engine) -> str | None:
    """None when a worker can reach its job queue (PostgreSQL's Procrastinate tables), else why not."""
    if engine.dialect.name != "postgresql":
        return "the job queue needs PostgreSQL (ARSYNC_DATABASE_URL=postgresql+psycopg://…)"
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(QUEUE_TABLE):
                return f"the database has no job queue ({QUEUE_TABLE}): run arsync db upgrade"
    except SQLAlchemyError as error:
        return f"the database is {_unreachable(error)}"
    return None
