"""Xero's identity service: consent, token exchange and refresh, revocation, connections."""

from __future__ import annotations

import base64
import html
import uuid
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from arsync.mocks.xero._http import json_response, xero_problem
from arsync.mocks.xero._state import (
    BROAD_SCOPES,
    KNOWN_SCOPES,
    MockXeroConfig,
    MockXeroState,
    OAuthError,
)


def _client_id(request: Request, form: dict[str, str], config: MockXeroConfig) -> str | None:
    """The client, from HTTP Basic auth or the form, if its secret is right."""
    client_id, secret = form.get("client_id"), form.get("client_secret")
    header = request.headers.get("authorization", "")
    if header.startswith("Basic "):
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
    if client_id == config.client_id and secret == config.client_secret:
        return client_id
    return None


def identity_routes(state: MockXeroState) -> APIRouter:
    router = APIRouter()

    @router.get("/identity/connect/authorize")
    async def authorize(request: Request) -> Response:
        params = dict(request.query_params)
        if params.get("response_type") != "code" or params.get("client_id") != state.config.client_id:
            return HTMLResponse("<h1>unauthorized_client</h1>", status_code=400)
        scopes = set(params.get("scope", "").split())
        if "offline_access" not in scopes:
            return HTMLResponse("<h1>invalid_scope: offline_access is needed for a refresh token</h1>", 400)
        unknown = scopes - KNOWN_SCOPES
        if state.config.granular_scopes_only:
            unknown |= scopes & BROAD_SCOPES
        if unknown:
            # Xero answers invalid_scope on its consent page (Xero's scope-change FAQ: apps created on
            # or after 2 March 2026 cannot ask for accounting.transactions).
            return HTMLResponse(f"<h1>invalid_scope: {html.escape(' '.join(sorted(unknown)))}</h1>", 400)
        orgs = "".join(
            f'<li><label><input type="checkbox" name="tenant_id" value="{o.tenant_id}" checked> '
            f"{html.escape(o.name)}</label></li>"
            for o in state.organisations.values()
        )
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
        )
        page = (
            "<!doctype html><title>Mock Xero: allow access</title><h1>arsync wants access to your organisations</h1>"
            f'<form method="post" action="/identity/connect/authorize">{hidden}<ul>{orgs}</ul>'
            '<button type="submit" name="decision" value="allow">Allow access</button> '
            '<button type="submit" name="decision" value="deny">Cancel</button></form>'
        )
        return HTMLResponse(page)

    @router.post("/identity/connect/authorize")
    async def consent(request: Request) -> Response:
        form = await request.form()
        params = {k: str(v) for k, v in form.items() if k not in {"tenant_id", "decision"}}
        redirect_uri = params.get("redirect_uri", "")
        if form.get("decision") == "deny":
            query = urlencode({"error": "access_denied", "state": params.get("state", "")})
            return RedirectResponse(f"{redirect_uri}?{query}", status_code=302)
        tenant_ids = [str(t) for t in form.getlist("tenant_id")] or list(state.organisations)
        code = state.issue_code(params, tenant_ids)
        query = urlencode({"code": code, "state": params.get("state", ""), "scope": params.get("scope", "")})
        return RedirectResponse(f"{redirect_uri}?{query}", status_code=302)

    @router.post("/connect/token")
    async def token(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        client_id = _client_id(request, form, state.config)
        if client_id is None:
            return json_response({"error": "invalid_client"}, 400)
        try:
            if form.get("grant_type") == "authorization_code":
                return json_response(state.exchange_code(form, client_id))
            if form.get("grant_type") == "refresh_token":
                return json_response(state.refresh(form.get("refresh_token", ""), client_id))
        except OAuthError as exc:
            return json_response({"error": exc.error}, 400)
        return json_response({"error": "unsupported_grant_type"}, 400)

    @router.post("/connect/revocation")
    async def revocation(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        if _client_id(request, form, state.config) is None:
            return json_response({"error": "invalid_client"}, 400)
        # A revoked token answers 200 (RFC 7009 §2.2; xero-node's XeroClient.revokeToken posts here).
        # RFC 7009 §2.2.1: on a 503 the client must assume the token still exists. Which
        # statuses Xero itself sends is unknown, so a fault switch answers any of them.
        refused = state.take_fault("POST", "/connect/revocation")
        if refused is not None and refused.status is not None:
            return json_response({"error": "server_error"}, refused.status)
        state.revoke(form.get("token", ""))
        return Response(status_code=200)

    @router.get("/connections")
    async def connections(request: Request) -> Response:
        grant = state.grant_for(request.headers.get("authorization"))
        if grant is None:
            return xero_problem(401, "Unauthorized", "TokenExpired: token expired or invalid")
        return json_response([
            {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, t)), "tenantId": t, "tenantType": "ORGANISATION",
             "tenantName": state.organisations[t].name}
            for t in grant.tenant_ids if t in state.organisations
        ])  # fmt: skip

    return router
