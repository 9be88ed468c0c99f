"""The FastAPI application: ``create_app(container)``."""

from __future__ import annotations

from fastapi import FastAPI

from arsync import __version__
from arsync.bootstrap import Container
from arsync.erp.endpoints import router as erp_router
from arsync.ledger.endpoints import router as ledger_router
from arsync.schemas import ApiModel
from arsync.tenancy.endpoints import router as api_keys_router
from arsync.web import errors


class Health(ApiModel):
    status: str
    version: str


def create_app(container: Container) -> FastAPI:
    """The platform API bound to ``container``."""
    app = FastAPI(
        title="arsync",
        version=__version__,
        description=(
            "Accounts-receivable ledger synced with ERPs. Every route except /api/v1/health needs "
            "`Authorization: Bearer <key>`, `X-Tenant-ID` and `X-Environment-ID`."
        ),
    )
    app.state.container = container
    errors.install(app)

    @app.get("/api/v1/health", response_model=Health, tags=["health"])
    def health() -> Health:
        """Liveness; needs no authentication."""
        return Health(status="ok", version=__version__)

    app.include_router(api_keys_router)
    app.include_router(ledger_router)
    app.include_router(erp_router)
    return app
