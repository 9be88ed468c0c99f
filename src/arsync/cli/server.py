"""``arsync serve`` and ``arsync worker``: the long-running processes."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
import uvicorn

from arsync import health, logs, metrics
from arsync.app import create_app
from arsync.cli.common import container, err_console
from arsync.config import Settings
from arsync.db import make_engine
from arsync.jobs.worker import run_worker

serve_app = typer.Typer(add_completion=False)
worker_app = typer.Typer(add_completion=False)


@serve_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Also run jobs and the schedule in this process.")
    ] = True,
) -> None:
    """Run the HTTP API (with migrations applied), plus a job worker and the schedule.

    On SQLite the worker is always in-process. On PostgreSQL ``--no-worker`` leaves jobs to
    separate ``arsync worker`` processes.
    """
    with container() as c:
        background = worker or not c.settings.is_postgresql
        mode = "with a worker" if background else "without a worker (run arsync worker)"
        err_console.print(f"arsync API on http://{host}:{port} {mode}  (OpenAPI: /openapi.json, docs: /docs)")
        logs.configure(json=c.settings.log_format == "json", level=c.settings.log_level)
        app = create_app(c, background_jobs=background)
        # log_config=None: uvicorn's lines go through arsync's handler too (one format, with ids).
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, log_config=None)


@worker_app.command("worker")
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=64, help="Jobs run at once (default ARSYNC_WORKER_CONCURRENCY).")
    ] = None,
    name: Annotated[str, typer.Option(help="Worker name shown in logs.")] = "arsync-worker",
    healthcheck: Annotated[
        bool, typer.Option("--healthcheck", help="Exit 0 if a worker can reach the job queue, else 1; run nothing.")
    ] = False,
) -> None:
    """Run a job worker: pushes, syncs and the schedule. PostgreSQL only; run as many as you like."""
    if healthcheck:
        _healthcheck()
    with container() as c:
        if not c.settings.is_postgresql:
            err_console.print(
                "[red]error:[/red] arsync worker needs PostgreSQL (ARSYNC_DATABASE_URL=postgresql+psycopg://…). "
                "On SQLite, arsync serve runs the jobs itself."
            )
            raise typer.Exit(2)
        logs.configure(json=c.settings.log_format == "json", level=c.settings.log_level)
        err_console.print(f"{name}: waiting for jobs (concurrency {concurrency or c.settings.worker_concurrency})")
        try:
            asyncio.run(
                run_worker(c.settings, c.tasks, concurrency=concurrency or c.settings.worker_concurrency, name=name)
            )
        finally:
            metrics.worker_exited()


def _healthcheck() -> None:
    """For a container's health probe: touches nothing, migrates nothing, says why on failure."""
    engine = make_engine(Settings().resolved_database_url)
    try:
        problem = health.queue_problem(engine)
    finally:
        engine.dispose()
    if problem:
        err_console.print(f"[red]unhealthy:[/red] {problem}")
        raise typer.Exit(1)
    err_console.print("healthy: the job queue is reachable")
    raise typer.Exit(0)
