"""``arsync sync``, ``arsync reconcile`` and ``arsync export``: a sync or reconciliation run in
the foreground, and the ledger out."""

from __future__ import annotations

import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from arsync.bootstrap import Container
from arsync.cli.common import EnvOpt, JsonFlag, TenantOpt, console, container, err_console, print_json
from arsync.erp.models import SyncRun
from arsync.erp.port import Entity
from arsync.erp.runs import run_as_dict
from arsync.erp.sync import EntityStats
from arsync.ledger.export import write_ledger
from arsync.tenancy import service as tenancy

sync_app = typer.Typer(add_completion=False)
export_app = typer.Typer(add_completion=False)
reconcile_app = typer.Typer(add_completion=False)


class _ProgressBars:
    """Rich progress rows, one per entity, fed by the sync engine after every page."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, entity: Entity, stats: EntityStats) -> None:
        if entity not in self.tasks:
            self.tasks[entity] = self.progress.add_task(entity, total=None, stats="")
        text = (
            f"{stats.records:>9,} records  {stats.pages:>5,} pages  "
            f"+{stats.created:,} ~{stats.updated:,} ={stats.unchanged:,} skipped {stats.skipped:,}"
        )
        self.progress.update(self.tasks[entity], stats=text)

    def finish(self) -> None:
        for task in self.tasks.values():
            self.progress.update(task, total=1, completed=1)


def run_sync(
    c: Container, connection_id: str, full: bool, trigger: str, show_progress: bool, kind: str = "sync"
) -> SyncRun:
    if not show_progress:
        return c.sync.run(connection_id, trigger=trigger, full=full, kind=kind)
    columns = (
        SpinnerColumn(finished_text="[green]✓[/green]"),
        TextColumn("[bold]{task.description:<9}"),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bars = _ProgressBars(progress)
        run = c.sync.run(connection_id, trigger=trigger, full=full, progress=bars, kind=kind)
        bars.finish()
    return run


def print_run(run: SyncRun) -> None:
    record = run_as_dict(run)
    colour = {"SUCCEEDED": "green", "FAILED": "red"}.get(run.status, "yellow")
    mode = "full" if run.full else f"incremental since {record['modifiedSince']}"
    console.print(
        f"sync run [bold]{run.id}[/bold]: [{colour}]{run.status}[/{colour}] ({mode}, {record['durationSeconds']}s)"
    )
    table = Table("entity", "records", "pages", "created", "updated", "unchanged", "skipped")
    for entity, counts in run.stats.items():
        table.add_row(
            entity,
            *(f"{counts.get(k, 0):,}" for k in ("records", "pages", "created", "updated", "unchanged", "skipped")),
        )
    console.print(table)
    if run.stats.get("debtors", {}).get("inferred"):
        console.print(f"{run.stats['debtors']['inferred']:,} debtors were created from invoice fields.")
    if run.warnings:
        console.print(
            f"[yellow]{len(run.warnings) + run.warnings_omitted:,} warnings[/yellow], e.g. {run.warnings[0]['message']}"
        )
    if run.error:
        console.print(f"[red]error:[/red] {run.error.get('message')}")
        if run.error.get("endpoint"):
            where = [f"at {run.error['endpoint']}"]
            where += [f"page {run.error['page']}"] if run.error.get("page") is not None else []
            where += [f"HTTP {run.error['httpStatus']}"] if run.error.get("httpStatus") is not None else []
            where += [f"code {run.error['code']}"] if run.error.get("code") else []
            if run.error.get("httpStatus") is None:
                where.append("no answer (the middleware could not be reached)")
            console.print("  " + ", ".join(where))
        console.print(f"  hint: {run.error.get('hint')}")


@sync_app.command("sync")
def sync(
    connection_id: Annotated[str, typer.Argument(help="Connection id (conn_…).")],
    full: Annotated[bool, typer.Option("--full", help="Ignore the watermark; fetch everything.")] = False,
    queue: Annotated[
        bool, typer.Option("--queue", help="Hand the run to the workers and return at once (PostgreSQL).")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run one sync in the foreground with progress (or queue it); prints the sync-run record.

    Exits 0 when the run succeeded, 1 when it failed, 3 when another run of the connection was
    already in progress (nothing was run).
    """
    if queue:
        with container() as c:
            if not c.settings.is_postgresql:
                err_console.print("[red]error:[/red] --queue needs PostgreSQL and arsync worker; drop it on SQLite")
                raise typer.Exit(2)
            run, started = c.sync.start(connection_id, trigger="cli", full=full, enqueue=True)
        if as_json:
            print_json(run_as_dict(run))
        else:
            console.print(f"{'queued' if started else 'already running'}: {run.id}")
        return
    with container() as c:
        run = run_sync(c, connection_id, full, "cli", show_progress=not as_json)
    if as_json:
        print_json(run_as_dict(run))
    elif run.status != "RUNNING":
        print_run(run)
    _exit_for(run, connection_id)


def _exit_for(run: SyncRun, connection_id: str) -> NoReturn:
    """0 for a run this command ran and that succeeded, 1 for one that failed, 3 for another
    process's run that was already going (its outcome is not known here)."""
    if run.status == "RUNNING":
        err_console.print(
            f"[yellow]not run:[/yellow] {run.kind} {run.id} is already running for {connection_id} "
            f"(started {run.started_at:%Y-%m-%d %H:%M:%S} UTC); GET /api/v1/sync-runs/{run.id} shows it"
        )
        raise typer.Exit(3)
    raise typer.Exit(0 if run.status == "SUCCEEDED" else 1)


def print_report(report: dict[str, Any]) -> None:
    """A reconciliation's findings: per entity, then per currency, ERP beside the ledger."""
    if report["ledgerEqualsErp"]:
        console.print("[green]ledger equals ERP[/green]")
    else:
        console.print("[red]ledger differs from the ERP[/red] (see the rows below)")
    table = Table("entity", "in the ERP", "ledger before", "ledger after", "gone from the ERP", "back", "fixed")
    for entity, row in report["entities"].items():
        table.add_row(entity, *(f"{row[k]:,}" for k in ("erp", "ledgerBefore", "ledgerAfter", "missingInErp",
                                                        "returned", "differing")))  # fmt: skip
    console.print(table)
    totals = Table("currency", "invoices: ERP", "ledger after", "outstanding: ERP", "ledger after")
    for currency, row in report["invoicesByCurrency"].items():
        erp, after = row["erp"], row["ledgerAfter"]
        totals.add_row(currency, f"{erp['invoices']:,}", f"{after['invoices']:,}", erp["amountOutstanding"],
                       after["amountOutstanding"])  # fmt: skip
    console.print(totals)
    for entity, row in report["entities"].items():
        if row["missingExamples"]:
            console.print(f"{entity} gone from the ERP, e.g. {', '.join(row['missingExamples'])}")


@reconcile_app.command("reconcile")
def reconcile(
    connection_id: Annotated[str, typer.Argument(help="Connection id (conn_…).")],
    as_json: JsonFlag = False,
) -> None:
    """Compare the ledger with everything the ERP lists now; mark what the ERP no longer has.

    Exits 0 when the run succeeded (whatever it found), 1 when it failed, 3 when another run of
    the connection was already in progress.
    """
    with container() as c:
        run = run_sync(c, connection_id, True, "cli", show_progress=not as_json, kind="reconcile")
    if as_json:
        print_json(run_as_dict(run))
    elif run.status != "RUNNING":
        print_run(run)
        if run.report:
            print_report(run.report)
    _exit_for(run, connection_id)


@export_app.command("export")
def export(tenant: TenantOpt, environment: EnvOpt, as_json: JsonFlag = False) -> None:
    """Export the ledger: customers, invoices and payments with their ERP ids."""
    with container() as c, c.session_factory() as session:
        tenant_row, env = tenancy.resolve_scope(session, tenant, environment)
        if as_json:
            write_ledger(session, tenant_row.id, env.id, sys.stdout.buffer)
            sys.stdout.flush()
            return
        with open("/dev/null", "wb") as sink:
            counts = write_ledger(session, tenant_row.id, env.id, sink)
    table = Table("section", "records")
    for section, count in counts.items():
        table.add_row(section, f"{count:,}")
    console.print(table)
    console.print("[dim]Use --json for the full ledger.[/dim]")
