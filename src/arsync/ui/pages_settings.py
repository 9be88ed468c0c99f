"""Settings: the ERP connection (REST middleware or Xero) and the Nomod connection."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from arsync.db import utcnow
from arsync.erp import flows as erp_flows
from arsync.erp import schemas
from arsync.erp import service as erp_service
from arsync.erp.models import Connection
from arsync.errors import ArsyncError, RevokeFailed
from arsync.nomod import service as nomod_service
from arsync.nomod.models import NomodConnection
from arsync.nomod.webhooks import list_deliveries
from arsync.schedule import next_slot
from arsync.tenancy.scope import in_scope
from arsync.ui.base import ActionDep, Ui, UiDep, act, error_advice, fmt_datetime, plain_words, redirect, render
from arsync.ui.pages_sync import connection_label
from arsync.xero.api import DEFAULT_SALES_ACCOUNT_CODE
from arsync.xero.flows import Caller

router = APIRouter(include_in_schema=False)

STATUS_ADVICE = {
    "PENDING": "Saved but not checked yet. Run the health check.",
    "ACTIVE": "Connected. Data syncs nightly and whenever you press Sync now.",
    "FAILED": "arsync cannot use this connection until the problem below is fixed.",
    "NEEDS_REAUTH": "Xero needs you to sign in again before arsync can sync. Press Reconnect.",
    "PAUSED": "Scheduled syncs are paused: they failed too many times in a row. Fix the cause, then press "
    "Sync now; once a run succeeds the schedule takes it back.",
}


def _connections(ui: Ui) -> list[dict[str, Any]]:
    with ui.db() as session:
        rows = session.scalars(select(Connection).where(in_scope(Connection, ui.scope)).order_by(Connection.id)).all()
    views = []
    for connection in rows:
        what, hint = error_advice(connection.last_error)
        views.append({
            "c": connection, "label": connection_label(connection), "advice": STATUS_ADVICE.get(connection.status, ""),
            "problem": what or connection.status_reason, "hint": hint,
        })  # fmt: skip
    return views


def _erp_page(request: Request, ui: Ui, *, status_code: int = 200, **context: Any) -> Response:
    connections = _connections(ui)
    rest = next((v for v in connections if v["c"].transport == "rest"), None)
    native = next((v for v in connections if v["c"].transport == "native"), None)
    server_cron = ui.container.settings.sync_cron
    crons = [(v["c"], v["c"].schedule(server_cron)) for v in connections]
    schedules = [{"c": c, "cron": cron, "next": next_slot(cron, utcnow())} for c, cron in crons]
    return render(
        ui, request, "settings_erp.html", rest=rest, native=native, schedules=schedules, server_cron=server_cron,
        xero_configured=ui.container.xero.configured, default_sales_account=DEFAULT_SALES_ACCOUNT_CODE,
        status_code=status_code, **context,
    )  # fmt: skip


@router.get("/settings/erp", response_class=HTMLResponse)
def erp_settings(request: Request, ui: UiDep) -> Response:
    return _erp_page(request, ui)


@router.post("/settings/erp/rest", response_class=HTMLResponse)
def save_rest(
    request: Request,
    ui: ActionDep,
    base_url: Annotated[str, Form(max_length=2000)] = "",
    bank_account_code: Annotated[str, Form(max_length=50)] = "",
) -> Response:
    """Save, then check health; a new key is shown in this response only."""
    try:
        connection, key = ui.container.connections.save_rest(
            ui.tenant.id, ui.environment.id, base_url, bank_account_code or None
        )
        connection = ui.container.connections.check_health(connection.id, scope=ui.scope)
    except ArsyncError as exc:
        return _erp_page(request, ui, status_code=400, form_error=plain_words(exc), base_url=base_url)
    return _erp_page(request, ui, new_key=key, saved=connection.status)


@router.post("/settings/erp/{connection_id}/rotate-key", response_class=HTMLResponse)
def rotate_key(request: Request, ui: ActionDep, connection_id: str) -> Response:
    try:
        connection, key = ui.container.connections.rotate_key(connection_id, scope=ui.scope)
        connection = ui.container.connections.check_health(connection_id, scope=ui.scope)
    except ArsyncError as exc:
        return redirect("/settings/erp", error=plain_words(exc))
    return _erp_page(request, ui, new_key=key, rotated=True, saved=connection.status)


@router.post("/settings/erp/{connection_id}/health")
def check_health(request: Request, ui: ActionDep, connection_id: str) -> Response:
    def run() -> str:
        status = ui.container.connections.check_health(connection_id, scope=ui.scope).status
        return "Health check passed: the ERP answered." if status == "ACTIVE" else f"Health check: {status}."

    return act(request, "/settings/erp", run, lambda message: message)


@router.post("/settings/erp/{connection_id}/delete")
def delete_connection(
    request: Request, ui: ActionDep, connection_id: str, force: Annotated[bool, Form()] = False
) -> Response:
    def run() -> str:
        try:
            with ui.write() as session:
                removed = erp_flows.remove_connection(
                    session, ui.scope, connection_id, xero=ui.container.xero, force=force
                )
                native = removed.transport == "native"
        except RevokeFailed:
            raise RevokeFailed(
                "Xero did not confirm that it removed arsync's access. Try again, or tick "
                "'disconnect anyway' to remove the connection from arsync only."
            ) from None
        return "Xero disconnected." if native else "ERP connection removed. Synced records stay in the ledger."

    return act(request, "/settings/erp", run, lambda message: message)


@router.post("/settings/erp/{connection_id}/account-codes")
def save_account_codes(
    request: Request,
    ui: ActionDep,
    connection_id: str,
    bank_account_code: Annotated[str, Form(max_length=50)] = "",
    sales_account_code: Annotated[str, Form(max_length=50)] = "",
) -> Response:
    """An emptied field removes its code (sales then falls back to the standard Sales account)."""

    def run() -> str:
        with ui.write() as session:
            connection = erp_service.get_connection(session, connection_id, ui.scope)
            erp_service.update_settings(session, connection, {
                "bank_account_code": bank_account_code.strip() or None,
                "sales_account_code": sales_account_code.strip() or None,
            })  # fmt: skip
        return "Account codes saved; the next push uses them."

    return act(request, "/settings/erp", run, lambda message: message)


@router.post("/settings/erp/{connection_id}/schedule")
def save_schedule(
    request: Request, ui: ActionDep, connection_id: str, sync_schedule: Annotated[str, Form(max_length=100)] = ""
) -> Response:
    """An emptied field returns the connection to the server's schedule."""

    def run() -> str:
        schedule = schemas.ConnectionUpdate.model_validate({"syncSchedule": sync_schedule.strip() or None})
        with ui.write() as session:
            connection = erp_service.get_connection(session, connection_id, ui.scope)
            erp_service.update_settings(session, connection, schedule.model_dump(include={"sync_schedule"}))
            cron = connection.schedule(ui.container.settings.sync_cron)
        whose = "its own" if schedule.sync_schedule else "the server's"
        upcoming = fmt_datetime(next_slot(cron, utcnow()))
        return f"Schedule saved: {whose} ({cron}); the next sync by itself is at {upcoming}."

    return act(request, "/settings/erp", run, lambda message: message)


@router.post("/settings/erp/xero/connect")
def connect_xero(
    request: Request,
    ui: ActionDep,
    bank_account_code: Annotated[str, Form(max_length=50)] = "",
    sales_account_code: Annotated[str, Form(max_length=50)] = "",
) -> Response:
    """Send the browser to Xero's consent page; Xero brings it back to the callback."""
    try:
        url = ui.container.xero.begin(
            ui.scope, bank_account_code or None, sales_account_code or None, session_hash=ui.ui_session.token_hash
        )
    except ArsyncError as exc:
        return redirect("/settings/erp", error=plain_words(exc))
    return RedirectResponse(url, status_code=303)


@router.get("/settings/erp/xero/choose", response_class=HTMLResponse)
def choose_organisation(request: Request, ui: UiDep, state: Annotated[str, Query(max_length=200)]) -> Response:
    try:
        organisations = ui.container.xero.offered(state, _caller(ui))
    except ArsyncError as exc:
        return redirect("/settings/erp", error=plain_words(exc))
    return render(ui, request, "xero_choose.html", organisations=organisations, state=state)


@router.post("/settings/erp/xero/choose")
def chose_organisation(
    request: Request,
    ui: ActionDep,
    state: Annotated[str, Form(max_length=200)],
    xero_tenant_id: Annotated[str, Form(max_length=100)],
) -> Response:
    try:
        result = ui.container.xero.choose(state, xero_tenant_id, _caller(ui))
    except ArsyncError as exc:
        return redirect("/settings/erp", error=plain_words(exc))
    assert result.connection is not None
    return xero_connected(result.connection)


def _caller(ui: Ui) -> Caller:
    return Caller(ui.tenant.id, ui.environment.id, ui.ui_session.token_hash)


def xero_connected(connection: Connection) -> Response:
    """Back to the settings page once Xero is connected (from the callback or the organisation choice)."""
    name = connection.external_tenant_name or "your organisation"
    return redirect("/settings/erp", notice=f"Xero connected: {name}. The first import has started.")


# Nomod ----------------------------------------------------------------------------------


def _nomod(ui: Ui) -> NomodConnection | None:
    with ui.db() as session:
        connection = nomod_service.connection(session, ui.scope)
        if connection is not None:
            session.expunge(connection)
        return connection


WEBHOOK_LOG_ROWS = 25


@router.get("/settings/nomod", response_class=HTMLResponse)
def nomod_settings(request: Request, ui: UiDep) -> Response:
    connection = _nomod(ui)
    problem = error_advice(connection.last_error) if connection and connection.last_error else None
    with ui.db() as session:
        deliveries = list_deliveries(session, ui.scope, outcome=None, offset=0, limit=WEBHOOK_LOG_ROWS)
        session.expunge_all()
    return render(
        ui, request, "settings_nomod.html", nomod=connection, nomod_problem=problem,
        deliveries=deliveries[:WEBHOOK_LOG_ROWS], webhook_url=_webhook_url(request, ui),
    )  # fmt: skip


def _webhook_url(request: Request, ui: Ui) -> str:
    """Where Nomod is to send this environment's webhooks (registered in Nomod's dashboard)."""
    base = str(request.base_url).rstrip("/")
    return f"{base}/api/v1/webhooks/nomod/{ui.scope.tenant_id}/{ui.scope.environment_id}"


@router.post("/settings/nomod", response_class=HTMLResponse)
def save_nomod(
    request: Request,
    ui: ActionDep,
    api_key: Annotated[str, Form(max_length=500)] = "",
    base_url: Annotated[str, Form(max_length=2000)] = "",
    invoice_sync_outbound: Annotated[bool, Form()] = False,
    allow_service_fee: Annotated[bool, Form()] = False,
    webhook_secret: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Save the Nomod settings; an empty key or secret field keeps the stored one."""
    current = _nomod(ui)
    key = api_key.strip()
    if not key and current is not None:
        key = ui.container.vault.decrypt(current.api_key_encrypted)
    try:
        ui.container.nomod.save_connection(
            ui.scope, api_key=key, invoice_sync_outbound=invoice_sync_outbound, base_url=base_url.strip() or None,
            allow_service_fee=allow_service_fee, webhook_secret=webhook_secret.strip() or None,
        )  # fmt: skip
    except ArsyncError as exc:
        return render(
            ui, request, "settings_nomod.html", nomod=current, nomod_problem=None, form_error=plain_words(exc),
            deliveries=[], status_code=400, webhook_url=_webhook_url(request, ui),
        )  # fmt: skip
    state = "on" if invoice_sync_outbound else "off"
    return redirect("/settings/nomod", notice=f"Nomod settings saved. Invoice sync to Nomod is {state}.")


@router.post("/settings/nomod/test")
def test_nomod_key(request: Request, ui: ActionDep) -> Response:
    """Check the saved key against Nomod now, rather than at the first invoice or payment link."""
    try:
        customers = ui.container.nomod.test_key(ui.scope)
    except ArsyncError as exc:
        return redirect("/settings/nomod", error=f"The key did not work. {nomod_words(exc)}")
    return redirect("/settings/nomod", notice=f"The key works: Nomod answered, with {customers:,} customers.")


def nomod_words(exc: ArsyncError) -> str:
    """What Nomod said, in plain words, with its own detail where it gave one."""
    detail = getattr(exc, "detail", None)
    return plain_words(exc) + (f" Nomod said: {detail}." if detail else "")
