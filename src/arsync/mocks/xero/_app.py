"""The mock Xero app: identity, accounting and the /_mock control surface."""

from __future__ import annotations

from fastapi import FastAPI, Response

from arsync.mocks.xero._accounting import accounting_routes
from arsync.mocks.xero._http import json_response
from arsync.mocks.xero._identity import identity_routes
from arsync.mocks.xero._state import (
    MockXeroConfig,
    MockXeroFault,
    MockXeroState,
)


def create_mock_xero_app(state: MockXeroState) -> FastAPI:
    app = FastAPI(title="mock Xero", openapi_url=None)
    app.include_router(identity_routes(state))
    app.include_router(accounting_routes(state))

    @app.get("/_mock/state")
    async def mock_state() -> Response:
        return json_response(state.summary())

    @app.put("/_mock/config")
    async def mock_config(config: MockXeroConfig) -> Response:
        state.config = config
        return json_response(config.model_dump())

    @app.post("/_mock/expire-access-tokens")
    async def mock_expire() -> Response:
        return json_response({"expired": state.expire_access_tokens()})

    @app.post("/_mock/refuse-refresh")
    async def mock_refuse() -> Response:
        state.refuse_refresh = True
        return json_response({"refuseRefresh": True})

    @app.put("/_mock/faults")
    async def mock_faults(faults: list[MockXeroFault]) -> Response:
        state.faults = list(faults)
        return json_response({"faults": len(faults)})

    return app


def mock_xero_settings(base_url: str, config: MockXeroConfig) -> dict[str, str]:
    """The ARSYNC_XERO_* settings that point arsync at a mock on ``base_url``."""
    return {
        "ARSYNC_XERO_CLIENT_ID": config.client_id,
        "ARSYNC_XERO_CLIENT_SECRET": config.client_secret,
        "ARSYNC_XERO_AUTHORIZE_URL": f"{base_url}/identity/connect/authorize",
        "ARSYNC_XERO_TOKEN_URL": f"{base_url}/connect/token",
        "ARSYNC_XERO_REVOKE_URL": f"{base_url}/connect/revocation",
        "ARSYNC_XERO_API_URL": base_url,
    }
