"""Running jobs: Procrastinate workers on PostgreSQL, an in-process scheduler in embedded mode.

On PostgreSQL every ``arsync worker`` (and the worker inside ``arsync serve``) is a
Procrastinate worker. Procrastinate gives us, on the database alone:

- job distribution with ``SKIP LOCKED`` and NOTIFY wake-ups;
- per-connection mutual exclusion (a job ``lock`` per connection);
- the nightly schedule, deferred once per cron slot however many workers run;
- worker heartbeats. A worker that stops beating (killed, machine lost) has its running jobs
  put back in the queue by the others; :func:`_recover_stalled_jobs` does that;
- a daily clean-up of jobs that ended badly, once they are older than the retention.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import procrastinate
from croniter import croniter
from procrastinate import exceptions as procrastinate_errors
from sqlalchemy.engine import make_url

from arsync.jobs.queue import (
    QUEUE_NAME,
    TASK_NOMOD_INVOICE,
    TASK_PUSH,
    TASK_REMOVE_FINISHED_JOBS,
    TASK_SCHEDULED_SYNC,
    TASK_SYNC,
    TASK_SYNC_RETRY,
)

if TYPE_CHECKING:
    from arsync.bootstrap import Container

log = logging.getLogger(__name__)

STALLED_AFTER_BEATS = 3
REMOVE_FINISHED_JOBS_CRON = "37 3 * * *"  # daily, away from the nightly sync


def libpq_url(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg://…`` as a plain libpq URL."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


def build_app(container: Container) -> procrastinate.App:
    """The Procrastinate app with arsync's tasks, bound to ``container``'s services."""
    settings = container.settings
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=libpq_url(settings.resolved_database_url)),
        worker_defaults={"delete_jobs": "successful"},
    )

    @app.task(name=TASK_PUSH, queue=QUEUE_NAME)
    def push(push_id: str) -> None:
        container.pushes.execute(push_id)

    @app.task(name=TASK_SYNC, queue=QUEUE_NAME)
    def sync(run_id: str) -> None:
        container.sync.execute(run_id)

    @app.task(name=TASK_SYNC_RETRY, queue=QUEUE_NAME)
    def sync_retry(connection_id: str, attempt: int) -> None:
        container.sync.retry(connection_id, attempt)

    @app.task(name=TASK_NOMOD_INVOICE, queue=QUEUE_NAME)
    def nomod_invoice(sync_id: str) -> None:
        container.nomod.run_invoice_sync(sync_id)

    @app.periodic(cron=settings.sync_cron, periodic_id="active-connections")
    @app.task(name=TASK_SCHEDULED_SYNC, queue=QUEUE_NAME, queueing_lock=TASK_SCHEDULED_SYNC)
    def scheduled_sync(timestamp: int) -> None:
        slot = datetime.fromtimestamp(timestamp, UTC).isoformat()
        log.info("scheduled sync for the %s slot", slot)
        container.sync.start_scheduled(trigger="schedule")

    @app.periodic(cron=REMOVE_FINISHED_JOBS_CRON, periodic_id="remove-finished-jobs")
    @app.task(name=TASK_REMOVE_FINISHED_JOBS, queue=QUEUE_NAME, queueing_lock=TASK_REMOVE_FINISHED_JOBS,
              pass_context=True)  # fmt: skip
    async def remove_finished_jobs_task(context: procrastinate.JobContext, timestamp: int) -> None:
        await remove_finished_jobs(context.app, settings.job_retention_days)

    return app


async def remove_finished_jobs(app: procrastinate.App, retention_days: int) -> None:
    """Delete arsync's jobs that failed, were cancelled or aborted more than ``retention_days`` ago.

    Succeeded jobs are deleted as they finish. The others are kept a while for diagnosis; the
    outcome that matters (a push's or a sync run's status and error) lives on arsync's own records.
    """
    await app.job_manager.delete_old_jobs(
        nb_hours=retention_days * 24, queue=QUEUE_NAME, include_failed=True, include_cancelled=True,
        include_aborted=True,
    )  # fmt: skip
    log.info("removed jobs that ended more than %d days ago", retention_days)


async def run_worker(
    container: Container, *, concurrency: int, name: str = "arsync-worker", install_signal_handlers: bool = True
) -> None:
    """Run one Procrastinate worker until it is stopped (SIGINT/SIGTERM, or cancelled)."""
    heartbeat = container.settings.worker_heartbeat_seconds
    stalled_after = heartbeat * STALLED_AFTER_BEATS
    app = build_app(container)
    async with app.open_async():
        recovery = asyncio.create_task(_recover_stalled_jobs(app, heartbeat, stalled_after))
        try:
            await app.run_worker_async(
                queues=[QUEUE_NAME],
                concurrency=concurrency,
                name=name,
                update_heartbeat_interval=heartbeat,
                stalled_worker_timeout=stalled_after,
                install_signal_handlers=install_signal_handlers,
            )
        finally:
            recovery.cancel()


async def _recover_stalled_jobs(app: procrastinate.App, every: float, stalled_after: float) -> None:
    """Put the running jobs of workers that stopped beating back in the queue."""
    while True:
        try:
            for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after):
                try:
                    await app.job_manager.retry_job(job)
                    log.warning("re-queued job %s (%s) of a worker that stopped", job.id, job.task_name)
                except procrastinate_errors.ConnectorException:
                    pass  # another worker re-queued it first
        except procrastinate_errors.ConnectorException:
            log.exception("could not look for stalled jobs; trying again")
        await asyncio.sleep(every)


class EmbeddedScheduler:
    """The nightly schedule in embedded mode: one thread that fires at each cron slot."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="arsync-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        slots: Any = croniter(self.container.settings.sync_cron, datetime.now(UTC))
        while not self._stop.is_set():
            slot: datetime = slots.get_next(datetime)
            if self._stop.wait(max((slot - datetime.now(UTC)).total_seconds(), 0)):
                return
            try:
                self.container.sync.start_scheduled(trigger="schedule")
            except Exception:
                log.exception("the scheduled sync of %s failed to start", slot.isoformat())
