"""``/api/v1/connections/xero``: connect Xero over OAuth 2.

The authorize route needs the API key like every other. The callback is reached by the user's
browser coming back from Xero, so it carries no key: the one-time ``state`` names the tenant and
environment that started the authorization, and the browser must be signed in to arsync there
(the same UI session, when the UI started it), so that a link sent to someone else cannot
connect their organisation into another tenant. The organisation choice takes that session or
the tenant's API key.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from arsync.accounts import service as accounts
from arsync.erp.schemas import ConnectionRead, SyncRunRead, connection_read, sync_run_read
from arsync.errors import ArsyncError
from arsync.schemas import ApiModel, RequestModel
from arsync.tenancy.scope import Scope
from arsync.ui.base import SESSION_COOKIE, plain_words, redirect
from arsync.ui.pages_settings import xero_connected
from arsync.web.deps import ContainerDep, ScopeDep
from arsync.web.errors import ERROR_RESPONSES
from arsync.xero.api import DEFAULT_SALES_ACCOUNT_CODE
from arsync.xero.flows import Caller, ConnectResult

router = APIRouter(prefix="/api/v1/connections/xero", tags=["connections"], responses=ERROR_RESPONSES)


class AuthorizeRead(ApiModel):
    authorize_url: str = Field(description="Send the user here; the link works once, for 10 minutes")
    expires_in_seconds: int


class OrganisationChoice(ApiModel):
    tenant_id: str
    tenant_name: str | None


class ConnectRead(ApiModel):
    status: str = Field(description="CONNECTED, or CHOOSE_ORGANISATION when the user gave access to several")
    connection: ConnectionRead | None = None
    sync_run: SyncRunRead | None = Field(default=None, description="The full import, started at once")
    organisations: list[OrganisationChoice] = Field(default_factory=list)
    choose_path: str | None = Field(default=None, description="POST {state, xeroTenantId} here to pick one")


class ChooseOrganisation(RequestModel):
    state: str = Field(min_length=1, max_length=200)
    xero_tenant_id: str = Field(min_length=1, max_length=100)


def _read(result: ConnectResult) -> ConnectRead:
    if result.status == "CONNECTED":
        assert result.connection is not None and result.sync_run is not None
        return ConnectRead(status=result.status, connection=connection_read(result.connection),
                           sync_run=sync_run_read(result.sync_run))  # fmt: skip
    choices: list[dict[str, Any]] = result.organisations
    return ConnectRead(
        status=result.status,
        organisations=[OrganisationChoice(tenant_id=o["tenantId"], tenant_name=o.get("tenantName")) for o in choices],
        choose_path="/api/v1/connections/xero/choose",
    )


@router.get("/authorize", response_model=AuthorizeRead)
def authorize(
    scope: ScopeDep,
    container: ContainerDep,
    bank_account_code: Annotated[
        str | None, Query(alias="bankAccountCode", max_length=50, description="Xero bank account for payments")
    ] = None,
    sales_account_code: Annotated[
        str | None,
        Query(
            alias="salesAccountCode",
            max_length=50,
            description=f"Xero revenue account for invoice lines (default {DEFAULT_SALES_ACCOUNT_CODE})",
        ),
    ] = None,
) -> AuthorizeRead:
    """The URL of Xero's consent page ("Connect Xero") for this tenant and environment."""
    url = container.xero.begin(Scope(scope.tenant_id, scope.environment_id), bank_account_code, sales_account_code)
    return AuthorizeRead(authorize_url=url, expires_in_seconds=600)


def signed_in_caller(request: Request) -> Caller | None:
    """The arsync UI session this browser carries, if it is signed in."""
    container = request.app.state.container
    with container.session_factory() as session:
        signed_in = accounts.load_session(session, request.cookies.get(SESSION_COOKIE))
        if signed_in is None:
            return None
        return Caller(signed_in.user.tenant_id, signed_in.session.environment_id, signed_in.session.token_hash)


@router.get("/callback", response_model=ConnectRead)
async def callback(
    request: Request,
    container: ContainerDep,
    state: Annotated[str, Query(min_length=1, max_length=200)],
    code: Annotated[str | None, Query(max_length=2000)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> ConnectRead | Response:
    """Where Xero sends the user back: saves the connection and starts the full import.

    The browser must be signed in to arsync in the tenant and environment that asked (see the
    module's note). A browser (``Accept: text/html``) that is not is sent to sign in first,
    and then back here; after that it goes on to the UI's settings page instead of JSON.
    """
    caller = signed_in_caller(request)
    if "text/html" not in request.headers.get("accept", ""):
        return _read(await run_in_threadpool(container.xero.complete, state, code, error, caller))
    if caller is None:
        back = request.url.path + "?" + request.url.query
        return redirect(f"/login?next={quote(back)}")
    try:
        result = await run_in_threadpool(container.xero.complete, state, code, error, caller)
    except ArsyncError as exc:
        return redirect("/settings/erp", error=plain_words(exc))
    if result.status == "CHOOSE_ORGANISATION":
        return redirect(f"/settings/erp/xero/choose?state={quote(state)}")
    assert result.connection is not None
    return xero_connected(result.connection)


@router.post("/choose", response_model=ConnectRead)
async def choose(body: ChooseOrganisation, scope: ScopeDep, container: ContainerDep) -> ConnectRead:
    """Pick the organisation when the user gave access to several (with the tenant's API key)."""
    caller = Caller(scope.tenant_id, scope.environment_id, session_hash=None)
    return _read(await run_in_threadpool(container.xero.choose, body.state, body.xero_tenant_id, caller))
