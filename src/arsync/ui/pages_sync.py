"""The sync toolbar (Sync now, live progress, last and next run) and the sync history pages."""

from __future__ import annotations

from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arsync.erp.models import Connection, SyncRun
from arsync.erp.port import ENTITIES
from arsync.erp.runs import run_as_dict
from arsync.erp.sync import SCHEDULED_STATUSES
from arsync.errors import ArsyncError
from arsync.nomod.models import NomodWebhookDelivery
from arsync.schedule import next_slot
from arsync.tenancy.scope import Scope, get_scoped, in_scope
from arsync.ui.base import (
    ActionDep,
    Ui,
    UiDep,
    error_advice,
    fmt_datetime,
    fmt_duration,
    plain_words,
    redirect,
    render,
)
from arsync.ui.charts import Bar, Chart, bar_chart

router = APIRouter(include_in_schema=False)
HISTORY_PAGE = 30


@dataclass
class ConnectionSync:
    """What the toolbar shows for one ERP connection."""

    connection: Connection
    running: dict[str, Any] | None
    last: dict[str, Any] | None
    next_run: datetime | None


def connection_label(connection: Connection) -> str:
    if connection.provider == "xero":
        return f"Xero: {connection.external_tenant_name or connection.external_tenant_id or 'organisation'}"
    return "ERP (REST middleware)"


def sync_states(session: Session, scope: Scope, cron: str) -> list[ConnectionSync]:
    connections = session.scalars(select(Connection).where(in_scope(Connection, scope)).order_by(Connection.id))
    states = []
    for connection in connections:
        runs = session.scalars(
            select(SyncRun)
            .where(SyncRun.connection_id == connection.id)
            .order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
            .limit(2)
        ).all()
        running = next((r for r in runs if r.status == "RUNNING"), None)
        last = next((r for r in runs if r.status != "RUNNING"), None)
        own = connection.schedule(cron)
        next_run = next_slot(own, datetime.now(UTC)) if connection.status in SCHEDULED_STATUSES else None
        states.append(
            ConnectionSync(
                connection,
                run_as_dict(running) if running else None,
                run_as_dict(last) if last else None,
                next_run,
            )
        )
    return states


# Deliveries that changed what an invoice owes, or ask someone to look.
LEDGER_CHANGING_DELIVERIES = ("recorded", "needs_attention")
WATCH_SEPARATOR = "~"


def ledger_watch_token(session: Session, scope: Scope) -> str:
    """What an open page has seen: the newest Nomod delivery that changed the ledger, and the
    newest sync run's start and finish. When one of them moves, the page is behind."""
    delivered = session.scalar(
        select(func.max(NomodWebhookDelivery.received_at)).where(
            in_scope(NomodWebhookDelivery, scope), NomodWebhookDelivery.outcome.in_(LEDGER_CHANGING_DELIVERIES)
        )
    )
    started, finished = session.execute(
        select(func.max(SyncRun.started_at), func.max(SyncRun.finished_at)).where(in_scope(SyncRun, scope))
    ).one()
    return WATCH_SEPARATOR.join(_stamp(moment) for moment in (delivered, started, finished))


def _stamp(moment: datetime | None) -> str:
    return moment.strftime("%Y%m%dT%H%M%S%f") if moment else "0"


def toolbar_context(ui: Ui, watching: str | None = None) -> dict[str, Any]:
    """The toolbar alone, as its own polls and Sync now redraw it."""
    with ui.db() as session:
        return _toolbar(session, ui, watching)


def page_context(ui: Ui) -> dict[str, Any]:
    """What a whole page draws above its content: the toolbar, and what the ledger watch has seen."""
    with ui.db() as session:
        return _toolbar(session, ui, None) | {"ledger_seen": ledger_watch_token(session, ui.scope)}


def _toolbar(session: Session, ui: Ui, watching: str | None) -> dict[str, Any]:
    states = sync_states(session, ui.scope, ui.container.settings.sync_cron)
    finished = None
    if watching and not any(s.running and s.running["id"] == watching for s in states):
        run = session.get(SyncRun, watching)
        if run is not None and (run.tenant_id, run.environment_id) == astuple(ui.scope) and run.status != "RUNNING":
            finished = run_as_dict(run)
    return {
        "sync_states": states,
        "entities": ENTITIES,
        "label": connection_label,
        "just_finished": finished,
        "polling": any(s.running for s in states),
        "watch_id": next((s.running["id"] for s in states if s.running), None),
    }


@router.get("/ui/ledger-watch", response_class=HTMLResponse)
def ledger_watch(request: Request, ui: UiDep, seen: Annotated[str, Query(max_length=100)] = "") -> Response:
    """Polled by every ledger page. Nothing new: 204, and htmx leaves the page alone. A Nomod
    payment arrived or a sync finished: the page's content reads itself again (``ledger-changed``).
    A sync started (on its schedule, or from another tab): the toolbar reads itself again and
    follows it."""
    with ui.db() as session:
        now = ledger_watch_token(session, ui.scope)
    if now == seen:
        return Response(status_code=204)
    then = [*seen.split(WATCH_SEPARATOR), "", "", ""][:3]
    delivered, started, finished = (part != was for part, was in zip(now.split(WATCH_SEPARATOR), then, strict=True))
    events = [name for name, happened in (("ledger-changed", delivered or finished), ("sync-started", started))
              if happened]  # fmt: skip
    response = render(ui, request, "_ledger_watch.html", ledger_seen=now)
    response.headers["HX-Trigger"] = ", ".join(events)
    return response


@router.get("/ui/sync-toolbar", response_class=HTMLResponse)
def sync_toolbar(request: Request, ui: UiDep, watching: Annotated[str | None, Query(max_length=40)] = None) -> Response:
    """The toolbar alone: htmx polls it while a run is going. Once the run has finished, the
    page's content is told to read itself again (``ledger-changed``), so it shows what the sync
    changed while the toolbar says how it went."""
    context = toolbar_context(ui, watching)
    response = render(ui, request, "_toolbar.html", **context)
    if context.get("just_finished"):
        response.headers["HX-Trigger"] = "ledger-changed"
    return response


@router.post("/ui/sync-now", response_class=HTMLResponse)
def sync_now(
    request: Request,
    ui: ActionDep,
    connection_id: Annotated[str, Form(max_length=40)],
    full: Annotated[bool, Form()] = False,
    kind: Annotated[Literal["sync", "reconcile"], Form()] = "sync",
) -> Response:
    """Start a run (or join the running one) and answer with the toolbar showing its progress."""
    try:
        run, _ = ui.container.sync.start(
            connection_id, trigger="manual", full=full, enqueue=True, scope=ui.scope, kind=kind
        )
    except ArsyncError as exc:
        if request.headers.get("hx-request"):
            return render(ui, request, "_toolbar.html", error=plain_words(exc), **toolbar_context(ui))
        return redirect("/", error=plain_words(exc))
    if request.headers.get("hx-request"):
        return render(ui, request, "_toolbar.html", **toolbar_context(ui, watching=run.id))
    return redirect(
        f"/sync-runs/{run.id}", notice="Reconciliation started." if kind == "reconcile" else "Sync started."
    )


# History --------------------------------------------------------------------------------


def chart(runs: list[dict[str, Any]]) -> Chart:
    """Bars of records fetched and a line of duration for up to 30 runs, oldest on the left; a
    failed run is marked over the whole height, whatever it fetched."""
    bars = []
    for run in reversed(runs):
        records = sum(int(c.get("records", 0)) for c in (run["counts"] or {}).values())
        seconds = float(run["durationSeconds"] or 0)
        failed = run["status"] == "FAILED"
        started = fmt_datetime(run["startedAt"])
        bars.append(Bar(
            label=started[5:16], value=records, css="bar-failed" if failed else "bar-ok",
            href=f"/sync-runs/{run['id']}",
            title=f"{started}: {records:,} records in {fmt_duration(seconds)}{', failed' if failed else ''}",
            flagged=failed, line_value=seconds,
        ))  # fmt: skip
    return bar_chart(bars, lambda v: f"{v:,.0f}", fmt_duration)


@router.get("/sync-runs", response_class=HTMLResponse)
def sync_history(
    request: Request,
    ui: UiDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    status: Annotated[str | None, Query(pattern="^(RUNNING|SUCCEEDED|FAILED)$")] = None,
) -> Response:
    with ui.db() as session:
        statement = select(SyncRun).where(in_scope(SyncRun, ui.scope))
        if status:
            statement = statement.where(SyncRun.status == status)
        rows = session.scalars(
            statement.order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
            .offset((page - 1) * HISTORY_PAGE)
            .limit(HISTORY_PAGE + 1)
        ).all()
        runs = [run_as_dict(r) for r in rows[:HISTORY_PAGE]]
        recent = runs if page == 1 and not status else [
            run_as_dict(r) for r in session.scalars(
                select(SyncRun).where(in_scope(SyncRun, ui.scope))
                .order_by(SyncRun.started_at.desc(), SyncRun.id.desc()).limit(HISTORY_PAGE)
            )
        ]  # fmt: skip
    return render(
        ui, request, "sync_runs.html", runs=runs, page=page, has_more=len(rows) > HISTORY_PAGE,
        status=status, chart=chart(recent), **page_context(ui),
    )  # fmt: skip


@router.get("/sync-runs/{run_id}", response_class=HTMLResponse)
def sync_run_page(request: Request, ui: UiDep, run_id: str) -> Response:
    with ui.db() as session:
        run = run_as_dict(get_scoped(session, SyncRun, run_id, ui.scope, "sync run"))
        connection = session.get(Connection, run["connectionId"])
        label = connection_label(connection) if connection else "deleted connection"
    what, hint = error_advice(run["error"])
    return render(
        ui, request, "sync_run.html", run=run, connection_label=label, error_text=what, error_hint=hint,
        entities=ENTITIES, polling=run["status"] == "RUNNING",
    )  # fmt: skip
