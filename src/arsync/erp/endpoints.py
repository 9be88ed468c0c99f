"""``/api/v1`` routes for ERP connections, syncs, sync runs and pushes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from arsync.erp import flows, service
from arsync.erp import push as pushes
from arsync.erp.models import Connection, SyncRun
from arsync.erp.schemas import (
    ConnectionRead,
    ConnectionUpdate,
    ConnectionWithKey,
    PushRead,
    RestConnectionSave,
    SyncRunRead,
    connection_read,
    push_read,
    sync_run_read,
)
from arsync.errors import RevokeFailed
from arsync.schemas import Page
from arsync.tenancy.scope import get_scoped, in_scope, paginate
from arsync.web.deps import ContainerDep, PagingDep, ScopeDep, SessionDep
from arsync.web.errors import ERROR_RESPONSES
from arsync.web.responses import json_response

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)


@router.get("/connections", response_model=list[ConnectionRead], tags=["connections"])
def list_connections(scope: ScopeDep, session: SessionDep) -> list[ConnectionRead]:
    """This environment's ERP connections, with status and masked key."""
    rows = session.scalars(select(Connection).where(in_scope(Connection, scope)).order_by(Connection.id))
    return [connection_read(c) for c in rows]


@router.put("/connections/erp-rest", response_model=ConnectionWithKey, tags=["connections"])
def save_rest_connection(body: RestConnectionSave, scope: ScopeDep, container: ContainerDep) -> ConnectionWithKey:
    """Create or update the REST-middleware connection and run its health check.

    On creation the response carries the generated middleware key (``apiKey``) once.
    """
    connection, key = container.connections.save_rest(
        scope.tenant_id, scope.environment_id, body.base_url, body.bank_account_code
    )
    connection = container.connections.check_health(connection.id, scope=scope)
    return ConnectionWithKey(**connection_read(connection).model_dump(), api_key=key)


@router.get("/connections/{connection_id}", response_model=ConnectionRead, tags=["connections"])
def get_connection(connection_id: str, scope: ScopeDep, session: SessionDep) -> Response:
    """One connection: status, last error and masked key."""
    return json_response(connection_read(service.get_connection(session, connection_id, scope)))


@router.patch("/connections/{connection_id}", response_model=ConnectionRead, tags=["connections"])
def update_connection(
    connection_id: str, body: ConnectionUpdate, scope: ScopeDep, session: SessionDep, container: ContainerDep
) -> ConnectionRead:
    """Change the bank account code (payments), for Xero the sales account code (invoice lines),
    and the connection's own sync schedule (``syncSchedule``, cron in UTC).

    Fields left out stay as they are; ``null`` removes a code (Xero then uses 200 for sales) or
    returns to the server's schedule (ARSYNC_SYNC_CRON). Codes take effect on the next push, a
    schedule from its next slot; no reconnect needed.
    """
    connection = service.get_connection(session, connection_id, scope)
    service.update_settings(session, connection, body.model_dump(exclude_unset=True))
    return connection_read(connection)


@router.post("/connections/{connection_id}/rotate-key", response_model=ConnectionWithKey, tags=["connections"])
def rotate_key(connection_id: str, scope: ScopeDep, container: ContainerDep) -> ConnectionWithKey:
    """Issue a new middleware key (in the response once); the old one stops at once."""
    connection, key = container.connections.rotate_key(connection_id, scope=scope)
    return ConnectionWithKey(**connection_read(connection).model_dump(), api_key=key)


@router.post("/connections/{connection_id}/health", response_model=ConnectionRead, tags=["connections"])
def check_health(connection_id: str, scope: ScopeDep, container: ContainerDep) -> ConnectionRead:
    """Call the middleware's POST /health and record ACTIVE or FAILED."""
    return connection_read(container.connections.check_health(connection_id, scope=scope))


@router.delete("/connections/{connection_id}", status_code=204, tags=["connections"])
def delete_connection(
    connection_id: str,
    scope: ScopeDep,
    session: SessionDep,
    container: ContainerDep,
    force: Annotated[bool, Query(description="Native: delete even if the ERP did not confirm the revocation")] = False,
) -> Response:
    """Delete a connection and its sync history; synced ledger records stay.

    A native (Xero) connection's tokens are revoked at the ERP first.
    """
    try:
        flows.remove_connection(session, scope, connection_id, xero=container.xero, force=force)
    except RevokeFailed as exc:
        raise RevokeFailed(f"{exc.message} (add ?force=true)") from None
    return Response(status_code=204)


@router.post("/connections/{connection_id}/sync", status_code=202, response_model=SyncRunRead, tags=["sync"])
def sync_now(
    connection_id: str,
    scope: ScopeDep,
    container: ContainerDep,
    full: Annotated[bool, Query(description="Ignore the watermark and fetch everything")] = False,
) -> SyncRunRead:
    """Start a sync ("Sync now"); if one is already running, that run is returned."""
    run, _ = container.sync.start(connection_id, trigger="manual", full=full, enqueue=True, scope=scope)
    return sync_run_read(run)


@router.post("/connections/{connection_id}/reconcile", status_code=202, response_model=SyncRunRead, tags=["sync"])
def reconcile_now(connection_id: str, scope: ScopeDep, container: ContainerDep) -> SyncRunRead:
    """Start a reconciliation: read every list whole, fix what differs, mark what the ERP no
    longer has (``erpDeletedAt``; not owed any more) and report counts and totals, ERP against
    ledger. If a run of this connection is already going, that run is returned."""
    run, _ = container.sync.start(connection_id, trigger="manual", enqueue=True, scope=scope, kind="reconcile")
    return sync_run_read(run)


@router.get("/sync-runs", response_model=Page[SyncRunRead], tags=["sync"])
def list_sync_runs(
    scope: ScopeDep,
    session: SessionDep,
    paging: PagingDep,
    connection_id: Annotated[str | None, Query(alias="connectionId", max_length=40)] = None,
) -> Response:
    """Sync runs, newest first, optionally of one connection."""
    statement = select(SyncRun).where(in_scope(SyncRun, scope))
    if connection_id:
        statement = statement.where(SyncRun.connection_id == connection_id)
    rows, more = paginate(session, statement.order_by(SyncRun.started_at.desc(), SyncRun.id.desc()), paging)
    page: Page[SyncRunRead] = Page(
        items=[sync_run_read(r) for r in rows], page=paging.page, limit=paging.limit, has_more=more
    )
    return json_response(page)


@router.get("/sync-runs/{run_id}", response_model=SyncRunRead, tags=["sync"])
def get_sync_run(run_id: str, scope: ScopeDep, session: SessionDep) -> Response:
    """One sync run: counts, pages, warnings, error and the modifiedSince it used."""
    return json_response(sync_run_read(get_scoped(session, SyncRun, run_id, scope, "sync run")))


@router.get("/pushes", response_model=Page[PushRead], tags=["pushes"])
def list_pushes(
    scope: ScopeDep,
    session: SessionDep,
    paging: PagingDep,
    status: Literal["PENDING", "SUCCEEDED", "FAILED"] | None = None,
    kind: Literal["invoice", "payment"] | None = None,
    invoice_id: Annotated[str | None, Query(alias="invoiceId", max_length=40)] = None,
) -> Response:
    """Pushes to the ERP, oldest first, filtered by status, kind or invoice."""
    rows, more = pushes.list_pushes(session, scope, paging, status=status, kind=kind, invoice_id=invoice_id)
    page: Page[PushRead] = Page(items=[push_read(p) for p in rows], page=paging.page, limit=paging.limit, has_more=more)
    return json_response(page)


@router.get("/pushes/{push_id}", response_model=PushRead, tags=["pushes"])
def get_push(push_id: str, scope: ScopeDep, session: SessionDep) -> Response:
    """One push: status, attempts, last error and the id the ERP returned."""
    return json_response(push_read(pushes.get_push(session, scope, push_id)))


@router.post("/pushes/{push_id}/retry", status_code=202, response_model=PushRead, tags=["pushes"])
def retry_push(push_id: str, scope: ScopeDep, session: SessionDep, container: ContainerDep) -> PushRead:
    """Send a FAILED push again (after fixing its cause); it starts a new round of attempts."""
    return push_read(container.pushes.retry(session, scope, push_id))
