"""The FastAPI application: ``create_app(container)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from arsync import __version__
from arsync.bootstrap import Container
from arsync.erp.endpoints import router as erp_router
from arsync.jobs.queue import InProcessQueue
from arsync.jobs.worker import EmbeddedScheduler, run_worker
from arsync.ledger.endpoints import router as ledger_router
from arsync.nomod.endpoints import router as nomod_router
from arsync.schemas import ApiModel
from arsync.tenancy.endpoints import router as api_keys_router
from arsync.ui.app import install_ui
from arsync.web import errors
from arsync.web.limits import RequestLimits
from arsync.web.pg_reads import PgReads
from arsync.web.security_headers import SecurityHeaders, origin_of
from arsync.xero.endpoints import router as xero_router

log = logging.getLogger(__name__)


class Health(ApiModel):
    status: str
    version: str


@asynccontextmanager
async def _background_jobs(container: Container) -> AsyncIterator[None]:
    """The jobs ``arsync serve`` runs beside the API: the schedule, pushes and syncs.

    Embedded mode (SQLite): the in-process scheduler, and pending pushes queued again (the
    in-process queue does not outlive the process). PostgreSQL: one Procrastinate worker on
    this event loop, the same as ``arsync worker``.
    """
    if isinstance(container.queue, InProcessQueue):
        scheduler = EmbeddedScheduler(container.tasks)
        scheduler.start()
        requeued = container.pushes.requeue_pending()
        if requeued:
            log.info("queued %d pending pushes again", requeued)
        requeued = container.nomod.requeue_pending()
        if requeued:
            log.info("queued %d pending Nomod invoice syncs again", requeued)
        try:
            yield
        finally:
            scheduler.stop()
        return
    worker = asyncio.create_task(
        run_worker(
            container.settings,
            container.tasks,
            concurrency=container.settings.worker_concurrency,
            name="arsync-serve",
            install_signal_handlers=False,
        )
    )
    try:
        yield
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


def create_app(container: Container, *, background_jobs: bool = False) -> FastAPI:
    """The platform API bound to ``container``; ``background_jobs`` also runs the worker and schedule."""

    settings = container.settings
    pg_reads = (
        PgReads(settings.resolved_database_url, settings.api_read_connections) if settings.is_postgresql else None
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            if not background_jobs:
                yield
                return
            async with _background_jobs(container):
                yield
        finally:
            if pg_reads is not None:
                await pg_reads.close()

    # Swagger UI and ReDoc from this server's own copies of their assets, not a CDN.
    app = FastAPIOffline(
        lifespan=lifespan,
        title="arsync",
        version=__version__,
        description=(
            "Accounts-receivable ledger synced with ERPs. Every route except /api/v1/health needs "
            "`Authorization: Bearer <key>`, `X-Tenant-ID` and `X-Environment-ID`."
        ),
    )
    app.state.container = container
    app.state.pg_reads = pg_reads
    errors.install(app)
    app.add_middleware(SecurityHeaders, redirect_origins=(origin_of(settings.xero_authorize_url),))
    app.add_middleware(
        RequestLimits, default=settings.max_body_bytes, limits=(("/api/v1/webhooks/", settings.max_webhook_body_bytes),)
    )

    @app.get("/api/v1/health", response_model=Health, tags=["health"])
    def health() -> Health:
        """Liveness; needs no authentication."""
        return Health(status="ok", version=__version__)

    app.include_router(api_keys_router)
    app.include_router(ledger_router)
    app.include_router(xero_router)  # before the ERP routes too: /connections/xero is not a connection id
    app.include_router(nomod_router)  # before the ERP routes: /connections/nomod is not a connection id
    app.include_router(erp_router)
    install_ui(app)
    return app
