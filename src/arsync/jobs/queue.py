"""Queueing jobs inside the caller's transaction.

A job queued during a transaction runs only if that transaction commits. Two queues do this:

- :class:`ProcrastinateQueue` (PostgreSQL). The job row is inserted by Procrastinate's own SQL
  function on the caller's connection, so it commits or rolls back with the change that caused
  it. Workers (``arsync worker``, or the one inside ``arsync serve``) are woken by NOTIFY when
  the transaction commits.
- :class:`InProcessQueue` (SQLite, embedded mode). Jobs wait in the session until it commits,
  then go to a thread pool; a rollback drops them. Durable state (pending pushes) is queued
  again when the process starts, so a crash loses nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
from sqlalchemy import event, text
from sqlalchemy.orm import Session, sessionmaker

from arsync.db import utcnow
from arsync.jobs.runner import InProcessRunner

log = logging.getLogger(__name__)

QUEUE_NAME = "arsync"

Handler = Callable[..., Any]
MAX_RETRY_DELAY = timedelta(hours=1)


def next_attempt_at(attempts: int, first_delay_seconds: float) -> datetime:
    """When a job that failed ``attempts`` times runs again: the delay doubles, capped at an hour."""
    delay = min(timedelta(seconds=first_delay_seconds * 2 ** (attempts - 1)), MAX_RETRY_DELAY)
    return utcnow() + delay


def runs_early(scheduled_for: datetime | None) -> bool:
    """True for a job running well before its retry time: a stray duplicate; the scheduled one will run."""
    return scheduled_for is not None and scheduled_for > utcnow() + timedelta(seconds=1)


@dataclass(frozen=True)
class QueuedJob:
    task: str
    args: dict[str, Any]
    run_at: datetime | None


class JobQueue(Protocol):
    def enqueue(
        self,
        session: Session,
        task: str,
        args: dict[str, Any],
        *,
        lock: str | None = None,
        run_at: datetime | None = None,
    ) -> None:
        """Queue ``task(**args)`` to run after ``session`` commits (not before ``run_at``)."""
        ...


DEFER_JOB = text(
    """
    SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(
        CAST(:queue AS varchar), CAST(:task AS varchar), 0, CAST(:lock AS text), CAST(NULL AS text),
        CAST(:args AS jsonb), CAST(:run_at AS timestamptz)
    )]::procrastinate_job_to_defer_v1[])
    """
)


class ProcrastinateQueue:
    """Inserts Procrastinate jobs in the caller's transaction (the job table is in the same database)."""

    def enqueue(
        self,
        session: Session,
        task: str,
        args: dict[str, Any],
        *,
        lock: str | None = None,
        run_at: datetime | None = None,
    ) -> None:
        session.execute(
            DEFER_JOB,
            {"queue": QUEUE_NAME, "task": task, "lock": lock, "args": orjson.dumps(args).decode(), "run_at": run_at},
        )


class InProcessQueue:
    """Runs jobs on this process's thread pool once the queuing session has committed."""

    def __init__(self, runner: InProcessRunner, session_factory: sessionmaker[Session]) -> None:
        self.runner = runner
        self._session_factory = session_factory
        self.handlers: dict[str, Handler] = {}
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._pending_key = f"arsync.pending_jobs.{id(self)}"
        event.listen(session_factory, "after_commit", self._after_commit)
        event.listen(session_factory, "after_soft_rollback", self._after_rollback)

    def register(self, task: str, handler: Handler) -> None:
        self.handlers[task] = handler

    def enqueue(
        self,
        session: Session,
        task: str,
        args: dict[str, Any],
        *,
        lock: str | None = None,
        run_at: datetime | None = None,
    ) -> None:
        if task not in self.handlers:
            raise LookupError(f"no handler registered for job {task!r}")
        session.info.setdefault(self._pending_key, []).append(QueuedJob(task, args, run_at))

    def submit(self, job: QueuedJob) -> None:
        """Run ``job`` now, or when its time comes."""
        delay = (job.run_at - utcnow()).total_seconds() if job.run_at else 0.0
        if delay <= 0:
            self.runner.submit(self.handlers[job.task], **job.args)
            return
        with self._lock:
            if self._closed:
                return
            timer = threading.Timer(delay, self._fire, args=(job,))
            timer.daemon = True
            self._timers.add(timer)
            timer.start()

    def _fire(self, job: QueuedJob) -> None:
        with self._lock:
            self._timers.discard(threading.current_thread())  # a Timer is the thread it fires on
            if self._closed:
                return
        self.runner.submit(self.handlers[job.task], **job.args)

    def _after_commit(self, session: Session) -> None:
        for job in session.info.pop(self._pending_key, []):
            self.submit(job)

    def _after_rollback(self, session: Session, previous_transaction: Any) -> None:
        if previous_transaction.parent is None:  # the outermost transaction rolled back
            session.info.pop(self._pending_key, None)

    def close(self) -> None:
        for name, listener in (("after_commit", self._after_commit), ("after_soft_rollback", self._after_rollback)):
            if event.contains(self._session_factory, name, listener):
                event.remove(self._session_factory, name, listener)
        with self._lock:
            self._closed = True
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
