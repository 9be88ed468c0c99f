"""The FastAPI application: ``create_app(container)``."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from arsync import __version__, metrics
from arsync.bootstrap import Container
from arsync.erp.endpoints import router as erp_router
from arsync.health import readiness
from arsync.jobs.queue import InProcessQueue
from arsync.jobs.worker import EmbeddedScheduler, run_worker
from arsync.ledger.endpoints import router as ledger_router
from arsync.logs import RequestIds
from arsync.nomod.endpoints import router as nomod_router
from arsync.notify.endpoints import router as notify_router
from arsync.schemas import ApiModel
from arsync.tenancy.endpoints import router as api_keys_router
from arsync.ui.app import install_ui
from arsync.web import errors
from arsync.web.limits import RequestLimits
from arsync.web.pg_reads import PgReads
from arsync.web.security_headers import SecurityHeaders, origin_of
from arsync.xero.endpoints import router as xero_router

log = logging.getLogger(__name__)


def metrics_allowed(request: Request, token: str | None) -> bool:
    if token:
        presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(presented.encode(), token.encode())
    client = request.client.host if request.client else ""
    return client in {"127.0.0.1", "::1"}


class Health(ApiModel):
    status: str
    version: str


class Readiness(Health):
    checks: dict[str, str]  # database, migrations: "ok" or what is wrong


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
        requeued = container.notifier.requeue_pending()
        if requeued:
            log.info("queued %d pending notifications again", requeued)
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
    app.add_middleware(RequestIds)
    app.add_middleware(SecurityHeaders, redirect_origins=(origin_of(settings.xero_authorize_url),))
    app.add_middleware(
        RequestLimits, default=settings.max_body_bytes, limits=(("/api/v1/webhooks/", settings.max_webhook_body_bytes),)
    )

    @app.get("/api/v1/health", response_model=Health, tags=["health"])
    def health() -> Health:
        """Liveness: the process answers. Needs no authentication."""
        return Health(status="ok", version=__version__)

    @app.get(
        "/api/v1/health/ready",
        response_model=Readiness,
        tags=["health"],
        responses={503: {"model": Readiness, "description": "Not ready: the checks say which part."}},
    )
    def ready() -> JSONResponse:
        """Readiness: the database answers and its schema is at this version. Needs no authentication."""
        found = readiness(container.engine)
        body = Readiness(status="ready" if found.ready else "unavailable", version=__version__, checks=found.checks)
        return JSONResponse(body.model_dump(mode="json"), status_code=200 if found.ready else 503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        """Prometheus's text format; ``ARSYNC_METRICS_TOKEN`` as a bearer token, or a loopback client."""
        if not metrics_allowed(request, settings.metrics_token):
            return JSONResponse(
                {"code": "METRICS_FORBIDDEN", "message": "GET /metrics needs the metrics token (ARSYNC_METRICS_TOKEN), "
                 "or a client on this machine when no token is set"}, status_code=403)  # fmt: skip
        body, content_type = metrics.render(container.engine)
        return Response(body, media_type=content_type)

    app.include_router(api_keys_router)
    app.include_router(ledger_router)
    app.include_router(xero_router)  # before the ERP routes too: /connections/xero is not a connection id
    app.include_router(nomod_router)  # before the ERP routes: /connections/nomod is not a connection id
    app.include_router(erp_router)
    app.include_router(notify_router)
    install_ui(app)
    return app
