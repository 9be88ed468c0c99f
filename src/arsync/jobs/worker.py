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
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import procrastinate
from croniter import croniter
from procrastinate import exceptions as procrastinate_errors
from sqlalchemy.engine import make_url

from arsync import logs
from arsync.config import Settings
from arsync.jobs.queue import QUEUE_NAME
from arsync.jobs.registry import Task

log = logging.getLogger(__name__)

STALLED_AFTER_BEATS = 3
REMOVE_FINISHED_JOBS_CRON = "37 3 * * *"  # daily, away from the nightly sync
TASK_REMOVE_FINISHED_JOBS = "arsync.remove_finished_jobs"


def libpq_url(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg://…`` as a plain libpq URL."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


def build_app(settings: Settings, tasks: Sequence[Task]) -> procrastinate.App:
    """The Procrastinate app running ``tasks`` (the container's), plus its own job clean-up."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=libpq_url(settings.resolved_database_url)),
        worker_defaults={"delete_jobs": "successful"},
    )
    for task in tasks:
        if task.schedule is None:
            app.task(name=task.name, queue=QUEUE_NAME, pass_context=True)(_with_job_id(task))
            continue
        periodic = app.task(name=task.name, queue=QUEUE_NAME, queueing_lock=task.name, pass_context=True)(
            _at_slot(task)
        )
        app.periodic(cron=task.schedule.cron, periodic_id=task.schedule.periodic_id)(periodic)

    @app.periodic(cron=REMOVE_FINISHED_JOBS_CRON, periodic_id="remove-finished-jobs")
    @app.task(name=TASK_REMOVE_FINISHED_JOBS, queue=QUEUE_NAME, queueing_lock=TASK_REMOVE_FINISHED_JOBS,
              pass_context=True)  # fmt: skip
    async def remove_finished_jobs_task(context: procrastinate.JobContext, timestamp: int) -> None:
        await remove_finished_jobs(context.app, settings.job_retention_days)

    return app


def _with_job_id(task: Task) -> Any:
    """The task, with the job's id on every line it logs."""

    def run(context: procrastinate.JobContext, **args: Any) -> Any:
        with logs.bound(job_id=str(context.job.id), job=task.name):
            return task.run(**args)

    return run


def _at_slot(task: Task) -> Any:
    """A periodic task as Procrastinate calls it: with its slot's timestamp."""

    def run(context: procrastinate.JobContext, timestamp: int) -> None:
        with logs.bound(job_id=str(context.job.id), job=task.name):
            log.info("%s for the %s slot", task.name, datetime.fromtimestamp(timestamp, UTC).isoformat())
            task.run()

    return run


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
    settings: Settings,
    tasks: Sequence[Task],
    *,
    concurrency: int,
    name: str = "arsync-worker",
    install_signal_handlers: bool = True,
) -> None:
    """Run one Procrastinate worker until it is stopped (SIGINT/SIGTERM, or cancelled)."""
    heartbeat = settings.worker_heartbeat_seconds
    stalled_after = heartbeat * STALLED_AFTER_BEATS
    app = build_app(settings, tasks)
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
    """The periodic tasks in embedded mode: a thread per task that runs it at each cron slot."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(task,), name=f"arsync-scheduler-{task.name}", daemon=True)
            for task in tasks
            if task.schedule is not None
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _loop(self, task: Task) -> None:
        assert task.schedule is not None
        slots: Any = croniter(task.schedule.cron, datetime.now(UTC))
        while not self._stop.is_set():
            slot: datetime = slots.get_next(datetime)
            if self._stop.wait(max((slot - datetime.now(UTC)).total_seconds(), 0)):
                return
            try:
                task.run()
            except Exception:
                log.exception("%s at the %s slot failed to start", task.name, slot.isoformat())
