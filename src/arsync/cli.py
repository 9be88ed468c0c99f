"""``arsync``: the command-line entry point."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from arsync import migrate, outbound
from arsync.bootstrap import Container, bootstrap
from arsync.config import Settings
from arsync.db import transaction
from arsync.demo import Walkthrough, WalkthroughFailed
from arsync.erp import contract
from arsync.erp.models import Connection, SyncRun
from arsync.erp.port import Entity
from arsync.erp.sync import EntityStats, run_as_dict
from arsync.errors import ArsyncError, InvalidInput
from arsync.jobs.worker import run_worker
from arsync.ledger.export import write_ledger
from arsync.mocks.erp import BREAKAGES, MockErpState, create_mock_erp_app
from arsync.mocks.erp_data import MockErpData
from arsync.mocks.nomod import MockNomodState, create_mock_nomod_app
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.mocks.xero import MockXeroState, create_mock_xero_app, mock_xero_settings
from arsync.nomod import signing
from arsync.nomod.schemas import nomod_connection_read
from arsync.sandbox import report as sandbox_report
from arsync.sandbox.checks import CheckResult, SuiteCannotRun, run_checks
from arsync.tenancy import service as tenancy
from arsync.tenancy.models import ApiKey, Tenant
from arsync.tenancy.scope import Scope
from arsync.ui import accounts
from arsync.ui.models import User
from arsync.web.app import create_app

app = typer.Typer(
    help="arsync: keeps an AR ledger in sync with ERPs and payment providers.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants, environments and API keys.", no_args_is_help=True)
connection_app = typer.Typer(help="ERP and Nomod connections.", no_args_is_help=True)
contract_app = typer.Typer(help="The Nudge REST contract.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tenant_app, name="tenant")
environment_app = typer.Typer(help="A tenant's environments (prod, test, …).", no_args_is_help=True)
app.add_typer(environment_app, name="environment")
app.add_typer(connection_app, name="connection")
app.add_typer(contract_app, name="contract")
sandbox_app = typer.Typer(help="The Developer Sandbox: check a middleware against the contract.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
user_app = typer.Typer(help="People who sign in to the web UI.", no_args_is_help=True)
app.add_typer(user_app, name="user")

console = Console()
err_console = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]
TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant id or name.")]
EnvOpt = Annotated[str, typer.Option("--environment", help="Environment id or name.")]


def _print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")


@contextmanager
def _container() -> Iterator[Container]:
    """The wired application; arsync errors become a one-line message and exit code 1."""
    container: Container | None = None
    try:
        container = bootstrap()
        yield container
    except ArsyncError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    finally:
        if container is not None:
            container.close()


# db ----------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all database migrations."""
    settings = Settings()
    container = bootstrap(settings, upgrade_schema=False)
    try:
        migrate.upgrade(container.engine)
    finally:
        container.close()
    console.print(f"database at head: {container.engine.url.render_as_string(hide_password=True)}")


# serve -------------------------------------------------------------------------------


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Also run jobs and the schedule in this process.")
    ] = True,
) -> None:
    """Run the HTTP API (with migrations applied), plus a job worker and the schedule.

    On SQLite the worker is always in-process. On PostgreSQL ``--no-worker`` leaves jobs to
    separate ``arsync worker`` processes.
    """
    with _container() as c:
        background = worker or not c.settings.is_postgresql
        mode = "with a worker" if background else "without a worker (run arsync worker)"
        err_console.print(f"arsync API on http://{host}:{port} {mode}  (OpenAPI: /openapi.json, docs: /docs)")
        uvicorn.run(create_app(c, background_jobs=background), host=host, port=port, log_level="info", access_log=False)


@app.command("worker")
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=64, help="Jobs run at once (default ARSYNC_WORKER_CONCURRENCY).")
    ] = None,
    name: Annotated[str, typer.Option(help="Worker name shown in logs.")] = "arsync-worker",
) -> None:
    """Run a job worker: pushes, syncs and the schedule. PostgreSQL only; run as many as you like."""
    with _container() as c:
        if not c.settings.is_postgresql:
            err_console.print(
                "[red]error:[/red] arsync worker needs PostgreSQL (ARSYNC_DATABASE_URL=postgresql+psycopg://…). "
                "On SQLite, arsync serve runs the jobs itself."
            )
            raise typer.Exit(2)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        err_console.print(f"{name}: waiting for jobs (concurrency {concurrency or c.settings.worker_concurrency})")
        asyncio.run(run_worker(c, concurrency=concurrency or c.settings.worker_concurrency, name=name))


# tenant ------------------------------------------------------------------------------


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Tenant name, unique.")],
    environment: Annotated[str, typer.Option(help="First environment's name.")] = "prod",
    as_json: JsonFlag = False,
) -> None:
    """Create a tenant with one environment and print its ids and a new API key (shown once)."""
    with _container() as c, transaction(c.session_factory) as session:
        created = tenancy.create_tenant(session, name, environment)
    payload = {"tenantId": created.tenant_id, "environmentId": created.environment_id, "apiKey": created.api_key}
    _print_new_key(payload, as_json)


def _print_new_key(payload: dict[str, str], as_json: bool) -> None:
    """Ids and an API key that is shown this once."""
    if as_json:
        _print_json(payload)
        return
    for key, value in payload.items():
        console.print(f"{key}: [bold]{value}[/bold]")
    console.print("[dim]The API key is shown only this once.[/dim]")


@environment_app.command("create")
def environment_create(
    tenant: Annotated[str, typer.Argument(help="Tenant id or name.")],
    name: Annotated[str, typer.Argument(help="The new environment's name, e.g. test.")],
    as_json: JsonFlag = False,
) -> None:
    """Add an environment to a tenant and print its id and a new API key for it (shown once)."""
    with _container() as c, transaction(c.session_factory) as session:
        tenant_row = tenancy.resolve_tenant(session, tenant)
        environment = tenancy.create_environment(session, tenant_row.id, name)
        _, api_key = tenancy.issue_api_key(session, tenant_row.id, environment.id)
        payload = {"tenantId": tenant_row.id, "environmentId": environment.id, "name": environment.name,
                   "apiKey": api_key}  # fmt: skip
    _print_new_key(payload, as_json)


# user --------------------------------------------------------------------------------


def _new_password(password_env: str | None) -> str:
    if password_env:
        return _secret_from_env(password_env, "the password")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Argument(help="The email the user signs in with; unique.")],
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id or name.")],
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Read the password from this environment variable.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a UI user in a tenant. The password is asked for, or read from --password-env."""
    password = _new_password(password_env)
    with _container() as c, transaction(c.session_factory) as session:
        tenant_row = tenancy.resolve_tenant(session, tenant)
        user = accounts.create_user(session, tenant_row.id, email, password)
        payload = {"userId": user.id, "email": user.email, "tenantId": tenant_row.id}
    if as_json:
        _print_json(payload)
        return
    console.print(f"user {payload['email']} ({payload['userId']}) can now sign in to tenant {tenant_row.name}")


@user_app.command("set-password")
def user_set_password(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Read the password from this environment variable.")
    ] = None,
) -> None:
    """Give a UI user a new password; their open sessions are signed out."""
    password = _new_password(password_env)
    with _container() as c, transaction(c.session_factory) as session:
        user = accounts.set_password(session, email, password)
        console.print(f"new password set for {user.email}; their sessions were signed out")


# connection --------------------------------------------------------------------------


def _connection_json(connection: Connection, api_key: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "connectionId": connection.id,
        "transport": connection.transport,
        "baseUrl": connection.base_url,
        "bankAccountCode": connection.bank_account_code,
        "status": connection.status,
        "statusReason": connection.status_reason,
        "keyHint": connection.secret_hint,
        "lastSuccessfulSyncStartedAt": connection.sync_watermark.isoformat() if connection.sync_watermark else None,
    }
    if api_key is not None:
        payload["apiKey"] = api_key
    return payload


@connection_app.command("add-rest")
def connection_add_rest(
    tenant: TenantOpt,
    environment: EnvOpt,
    base_url: Annotated[str, typer.Option("--base-url", help="Middleware base URL, no trailing slash.")],
    bank_account_code: Annotated[str | None, typer.Option(help="Sent on payment pushes.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Save a REST-middleware connection, generate its key (shown once) and run the health check."""
    with _container() as c:
        with c.session_factory() as session:
            tenant_row, env = tenancy.resolve_scope(session, tenant, environment)
        connection, key = c.connections.save_rest(tenant_row.id, env.id, base_url, bank_account_code)
        connection = c.connections.check_health(connection.id)
    payload = {"connectionId": connection.id, "apiKey": key, "status": connection.status}
    if as_json:
        _print_json(payload | {"statusReason": connection.status_reason})
        return
    console.print(f"connection: [bold]{connection.id}[/bold]")
    if key:
        console.print(f"middleware key: [bold]{key}[/bold]  [dim](shown once; configure it in your middleware)[/dim]")
    else:
        console.print(f"middleware key unchanged ({connection.secret_hint})")
    _print_status(connection)


def _print_status(connection: Connection) -> None:
    colour = {"ACTIVE": "green", "FAILED": "red"}.get(connection.status, "yellow")
    console.print(f"status: [{colour}]{connection.status}[/{colour}]")
    if connection.status_reason:
        console.print(f"reason: {connection.status_reason}")


def _secret_from_env(variable: str, what: str) -> str:
    """A secret passed by environment variable name, so it never shows in ps or shell history."""
    value = os.environ.get(variable)
    if not value:
        err_console.print(f"error: environment variable {variable} is not set (it holds {what})")
        raise typer.Exit(2)
    return value


@connection_app.command("set-nomod")
def connection_set_nomod(
    tenant: TenantOpt,
    environment: EnvOpt,
    api_key_env: Annotated[
        str, typer.Option("--api-key-env", help="Environment variable holding the Nomod key (never printed).")
    ] = "NOMOD_API_KEY",
    outbound: Annotated[
        bool, typer.Option("--outbound/--no-outbound", help="Send invoices to Nomod when they are finalized.")
    ] = False,
    base_url: Annotated[str | None, typer.Option("--base-url", help="Default: ARSYNC_NOMOD_BASE_URL.")] = None,
    webhook_secret_env: Annotated[
        str | None, typer.Option("--webhook-secret-env", help="Environment variable holding the whsec_ secret.")
    ] = None,
    allow_service_fee: Annotated[
        bool | None,
        typer.Option(
            "--allow-service-fee/--no-service-fee",
            help="Let Nomod add its service fee on top of invoices (off unless chosen; kept if not given).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Save the environment's Nomod connection (the same as PUT /api/v1/connections/nomod)."""
    api_key = _secret_from_env(api_key_env, "the Nomod API key")
    webhook_secret = _secret_from_env(webhook_secret_env, "the webhook secret") if webhook_secret_env else None
    with _container() as c:
        with c.session_factory() as session:
            tenant_row, env = tenancy.resolve_scope(session, tenant, environment)
        saved = c.nomod.save_connection(
            Scope(tenant_row.id, env.id),
            api_key=api_key,
            invoice_sync_outbound=outbound,
            base_url=base_url,
            webhook_secret=webhook_secret,
            allow_service_fee=allow_service_fee,
        )
    read = nomod_connection_read(saved)
    if as_json:
        _print_json(read.model_dump(mode="json", by_alias=True))
        return
    console.print(f"Nomod connection: [bold]{read.id}[/bold] ({read.base_url})")
    console.print(f"API key: {read.api_key_hint}   outbound invoice sync: {'on' if outbound else 'off'}   "
                  f"service fee: {'allowed' if read.allow_service_fee else 'off'}")  # fmt: skip
    console.print(
        f"webhook: {read.webhook_path}  [dim](secret {'set' if read.webhook_secret_set else 'not set'})[/dim]"
    )


@connection_app.command("xero-authorize")
def connection_xero_authorize(
    tenant: TenantOpt,
    environment: EnvOpt,
    bank_account_code: Annotated[
        str | None, typer.Option("--bank-account-code", help="Xero bank account for payment pushes, e.g. 090.")
    ] = None,
    sales_account_code: Annotated[
        str | None,
        typer.Option("--sales-account-code", help="Xero revenue account for invoice lines (default 200, Sales)."),
    ] = None,
) -> None:
    """Print the "Connect Xero" link (the same as GET /api/v1/connections/xero/authorize).

    Open it in a browser signed in to arsync as a user of that tenant and environment, allow
    access, and Xero sends the browser back to arsync's callback, which saves the connection and
    starts the full import. The link works once, for 10 minutes.
    """
    with _container() as c:
        with c.session_factory() as session:
            tenant_row, env = tenancy.resolve_scope(session, tenant, environment)
        url = c.xero.begin(Scope(tenant_row.id, env.id), bank_account_code, sales_account_code)
    console.print(url, soft_wrap=True)


@connection_app.command("list")
def connection_list(tenant: TenantOpt, environment: EnvOpt, as_json: JsonFlag = False) -> None:
    """List the ERP connections of an environment."""
    with _container() as c, c.session_factory() as session:
        tenant_row, env = tenancy.resolve_scope(session, tenant, environment)
        rows = session.scalars(
            select(Connection).where(Connection.tenant_id == tenant_row.id, Connection.environment_id == env.id)
        ).all()
    items = [_connection_json(row) for row in rows]
    if as_json:
        _print_json({"connections": items})
        return
    table = Table("id", "transport", "base URL", "status", "key")
    for item in items:
        table.add_row(item["connectionId"], item["transport"], item["baseUrl"], item["status"], item["keyHint"])
    console.print(table)


@connection_app.command("health")
def connection_health(connection_id: str, as_json: JsonFlag = False) -> None:
    """Run the health check (POST /health) and update the connection status."""
    with _container() as c:
        connection = c.connections.check_health(connection_id)
    if as_json:
        _print_json(_connection_json(connection))
    else:
        _print_status(connection)
    raise typer.Exit(0 if connection.status == "ACTIVE" else 1)


@connection_app.command("rotate-key")
def connection_rotate_key(connection_id: str, as_json: JsonFlag = False) -> None:
    """Generate a new middleware key; the old one stops being sent at once."""
    with _container() as c:
        connection, key = c.connections.rotate_key(connection_id)
    if as_json:
        _print_json({"connectionId": connection.id, "apiKey": key, "status": connection.status})
        return
    console.print(f"new middleware key: [bold]{key}[/bold]  [dim](shown once)[/dim]")


# sync --------------------------------------------------------------------------------


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


def _run_sync(c: Container, connection_id: str, full: bool, trigger: str, show_progress: bool) -> SyncRun:
    if not show_progress:
        return c.sync.run(connection_id, trigger=trigger, full=full)
    columns = (
        SpinnerColumn(finished_text="[green]✓[/green]"),
        TextColumn("[bold]{task.description:<9}"),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bars = _ProgressBars(progress)
        run = c.sync.run(connection_id, trigger=trigger, full=full, progress=bars)
        bars.finish()
    return run


def _print_run(run: SyncRun) -> None:
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
            console.print(
                f"  at {run.error['endpoint']} page {run.error.get('page')}, "
                f"HTTP {run.error.get('httpStatus')}, code {run.error.get('code')}"
            )
        console.print(f"  hint: {run.error.get('hint')}")


@app.command("sync")
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
        with _container() as c:
            if not c.settings.is_postgresql:
                err_console.print("[red]error:[/red] --queue needs PostgreSQL and arsync worker; drop it on SQLite")
                raise typer.Exit(2)
            run, started = c.sync.start(connection_id, trigger="cli", full=full, enqueue=True)
        if as_json:
            _print_json(run_as_dict(run))
        else:
            console.print(f"{'queued' if started else 'already running'}: {run.id}")
        return
    with _container() as c:
        run = _run_sync(c, connection_id, full, "cli", show_progress=not as_json)
    if as_json:
        _print_json(run_as_dict(run))
    elif run.status != "RUNNING":
        _print_run(run)
    if run.status == "RUNNING":
        # Not this command's run: another process has it. Its outcome is not known here.
        err_console.print(
            f"[yellow]not run:[/yellow] sync {run.id} is already running for {connection_id} "
            f"(started {run.started_at:%Y-%m-%d %H:%M:%S} UTC); GET /api/v1/sync-runs/{run.id} shows it"
        )
        raise typer.Exit(3)
    raise typer.Exit(0 if run.status == "SUCCEEDED" else 1)


# export ------------------------------------------------------------------------------


@app.command("export")
def export(tenant: TenantOpt, environment: EnvOpt, as_json: JsonFlag = False) -> None:
    """Export the ledger: customers, invoices and payments with their ERP ids."""
    with _container() as c, c.session_factory() as session:
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


# contract ----------------------------------------------------------------------------


@contract_app.command("schema")
def contract_schema(
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of the Nudge REST contract v1."""
    text = json.dumps(contract.json_schema(), indent=2) + "\n"
    if output:
        output.write_text(text)
    else:
        sys.stdout.write(text)


# mocks -------------------------------------------------------------------------------


VERDICT_STYLE = {"PASS": "green", "FAIL": "red", "WARN": "yellow", "SKIP": "dim"}


@sandbox_app.command("check")
def sandbox_check(
    base_url: Annotated[str, typer.Option("--base-url", help="The middleware's base URL.")],
    token_env: Annotated[
        str, typer.Option("--token-env", help="Environment variable holding the middleware token (never printed).")
    ],
    allow_writes: Annotated[
        bool, typer.Option("--allow-writes", help="Also run the push checks; they create SBX-<run id> records.")
    ] = False,
    only: Annotated[str | None, typer.Option("--only", help="Comma-separated check names or prefixes.")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")] = None,
    junit_file: Annotated[Path | None, typer.Option("--junit", help="Write a JUnit XML report here.")] = None,
    badge_file: Annotated[
        Path | None, typer.Option("--badge", help="Write an SVG conformance badge here (for a README).")
    ] = None,
    page_size: Annotated[int, typer.Option(min=1, max=10_000, help="limit for list walks (the platform's)")] = 1000,
    max_pages: Annotated[int, typer.Option(min=1, help="Page cap per list walk.")] = 1000,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per request.")] = 30.0,
    strict: Annotated[
        bool, typer.Option("--strict", help="Also exit 1 when a SHOULD check warns (works, but costs the user).")
    ] = False,
) -> None:
    """Check a middleware against the contract.

    Exit 0 when every MUST check passes (and, with --strict, no SHOULD check warns), 1 when one
    fails, 2 when the suite could not run.
    """
    try:
        base_url = outbound.validate_base_url(base_url)
    except InvalidInput as exc:
        err_console.print(f"[red]cannot run:[/red] {exc.message}")
        raise typer.Exit(2) from None
    token = _secret_from_env(token_env, "the middleware token")

    def show(result: CheckResult, index: int, total: int) -> None:
        style = VERDICT_STYLE[result.verdict]
        tier = "" if result.tier == "MUST" else f"({result.tier}) "
        console.print(f"[{style}]{result.verdict:4}[/{style}] {result.name:32} {tier}{result.reason}", soft_wrap=True)
        if result.verdict == "FAIL" or (result.verdict == "WARN" and result.curl):
            if result.path:
                console.print(f"       path:     {result.path}", soft_wrap=True)
            console.print(f"       expected: {result.expected!r}", soft_wrap=True)
            console.print(f"       actual:   {result.actual!r}", soft_wrap=True)
            if result.curl:
                console.print(f"       reproduce: {result.curl}", soft_wrap=True, markup=False, highlight=False)

    try:
        names = only.split(",") if only else None
        report = run_checks(base_url, token, token_env=token_env, allow_writes=allow_writes, only=names,
                            page_size=page_size, max_pages=max_pages, timeout=timeout,
                            progress=show, on_start=lambda warnings: _print_warnings(warnings))  # fmt: skip
    except (SuiteCannotRun, ValueError) as exc:
        err_console.print(f"[red]cannot run:[/red] {exc}")
        raise typer.Exit(2) from None
    counts = report.counts()
    if json_file:
        json_file.write_bytes(sandbox_report.to_json(report))
    if junit_file:
        junit_file.write_bytes(sandbox_report.to_junit(report))
    if badge_file:
        badge_file.write_text(sandbox_report.badge_svg(sandbox_report.conformance_of(report)))
    console.print(
        f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['WARN']} warnings, {counts['SKIP']} skipped "
        f"(run {report.run_id}{'; writes prefixed SBX-' + report.run_id if allow_writes else ''})"
    )
    raise typer.Exit(1 if report.failed or (strict and report.should_warnings) else 0)


def _print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        console.print(f"[yellow bold]WARNING[/yellow bold] {warning}", soft_wrap=True)


@app.command("mock-erp")
def mock_erp(
    host: Annotated[str, typer.Option(help="Interface to bind; keep it on loopback.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 8700,
    debtors: Annotated[int, typer.Option(min=0)] = 50,
    invoices: Annotated[int, typer.Option(min=0)] = 200,
    payments: Annotated[int, typer.Option(min=0)] = 150,
    seed: int = 1,
    token: Annotated[str | None, typer.Option(help="Accept only this Bearer token (default: any ask_… key).")] = None,
    breakage: Annotated[
        list[str] | None,
        typer.Option("--break", help=f"Break the mock on purpose (repeatable): {', '.join(BREAKAGES)}."),
    ] = None,
) -> None:
    """Run the reference middleware (mock ERP) until interrupted."""
    unknown = set(breakage or []) - BREAKAGES.keys()
    if unknown:
        err_console.print(f"error: unknown --break {sorted(unknown)}; choose from: " +
                          "; ".join(f"{k} ({v})" for k, v in BREAKAGES.items()))  # fmt: skip
        raise typer.Exit(2)
    state = MockErpState(MockErpData(debtors, invoices, payments, seed), token=token,
                         breakages=frozenset(breakage or []))  # fmt: skip
    # Bound here, so that the address printed is the real one even with --port 0.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    err_console.print(
        f"mock ERP: {debtors:,} debtors, {invoices:,} invoices, {payments:,} payments (seed {seed}) "
        f"on http://{host}:{sock.getsockname()[1]}"
    )
    config = uvicorn.Config(create_mock_erp_app(state), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


@app.command("mock-xero")
def mock_xero(
    host: Annotated[str, typer.Option(help="Interface to bind; keep it on loopback.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8720,
    organisation: Annotated[
        list[str] | None, typer.Option("--organisation", help="Organisation name (repeatable).")
    ] = None,
    contacts: Annotated[int, typer.Option(min=0)] = 20,
    invoices: Annotated[int, typer.Option(min=0)] = 60,
    payments: Annotated[int, typer.Option(min=0)] = 30,
) -> None:
    """Run a mock of Xero's identity service and Accounting API until interrupted."""
    state = MockXeroState()
    for seed, name in enumerate(organisation or ["Demo Company (NZ)"], start=1):
        state.add_organisation(name, contacts, invoices, payments, seed=seed)
    base = f"http://{host}:{port}"
    err_console.print(f"mock Xero on {base}; point arsync at it with:")
    for name, value in mock_xero_settings(base, state.config).items():
        err_console.print(f"  export {name}={value}", soft_wrap=True)
    uvicorn.run(create_mock_xero_app(state), host=host, port=port, log_level="warning", access_log=False)


@app.command("mock-nomod")
def mock_nomod(
    host: Annotated[str, typer.Option(help="Interface to bind; keep it on loopback.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8710,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Accept only this X-API-KEY (default: any sk_test_… key).")
    ] = None,
) -> None:
    """Run the mock Nomod API until interrupted (POST /_mock/pay pays an invoice or link)."""
    state = MockNomodState(api_key=api_key, base_url=f"http://{host}:{port}")
    err_console.print(f"mock Nomod on http://{host}:{port}")
    uvicorn.run(create_mock_nomod_app(state), host=host, port=port, log_level="warning", access_log=False)


# demo --------------------------------------------------------------------------------

DEMO_TENANT = "demo"
DEMO_ENVIRONMENT = "prod"
DEMO_DEBTORS, DEMO_INVOICES, DEMO_PAYMENTS = 300, 3000, 2500


DEMO_USER = "demo@example.com"


def _demo_user(c: Container, tenant_id: str) -> str:
    """The demo's UI user, with a new password each run (returned to be printed)."""
    password = secrets.token_urlsafe(12)
    with transaction(c.session_factory) as session:
        if session.scalar(select(User.id).where(User.email == DEMO_USER)) is None:
            accounts.create_user(session, tenant_id, DEMO_USER, password)
        else:
            accounts.set_password(session, DEMO_USER, password)
    return password


def _demo_scope(c: Container) -> tuple[str, str, str]:
    """The demo tenant and environment (created on first use) and a fresh API key."""
    with transaction(c.session_factory) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == DEMO_TENANT))
        if tenant is None:
            created = tenancy.create_tenant(session, DEMO_TENANT, DEMO_ENVIRONMENT)
            return created.tenant_id, created.environment_id, created.api_key
        env = tenancy.ensure_environment(session, tenant.id, DEMO_ENVIRONMENT)
        tenancy.revoke_api_keys(session, tenant.id, env.id)
        _, key = tenancy.issue_api_key(session, tenant.id, env.id)
        return tenant.id, env.id, key


@app.command("demo")
def demo(
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Stop after the summary.")] = False,
) -> None:
    """Offline demo: mock ERP and mock Nomod on loopback, a demo tenant, a sync, a Nomod round trip, a summary."""
    with _container() as c:
        tenant_id, env_id, api_key = _demo_scope(c)
        ui_password = _demo_user(c, tenant_id)
        with c.session_factory() as session:
            previous_runs = (
                session.scalar(select(func.count()).select_from(SyncRun).where(SyncRun.tenant_id == tenant_id)) or 0
            )
        data = MockErpData(DEMO_DEBTORS, DEMO_INVOICES, DEMO_PAYMENTS, seed=7, push_id_tag=f"{previous_runs + 1}-")
        state = MockErpState(data)
        # The demo's own mocks are on loopback: the outbound rule admits exactly their origins.
        with serve_in_thread(create_mock_erp_app(state)) as mock, outbound.trusted(mock.url):
            # Each demo run changes a few ERP records, so a repeat run has something to pick up.
            for _ in range(previous_runs + 1):
                state.data.mutate({"debtors": 3, "invoices": 12, "payments": 5})
            connection, middleware_key = c.connections.save_rest(tenant_id, env_id, mock.url, "090")
            connection = c.connections.check_health(connection.id)
            console.rule("[bold]arsync demo")
            console.print(f"data directory: {c.settings.data_dir.resolve()}")
            console.print(f"mock ERP: {mock.url}  connection {connection.id}: {connection.status}")
            run = _run_sync(c, connection.id, full=False, trigger="manual", show_progress=True)
            _print_run(run)
            with c.session_factory() as session:
                keys = session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.tenant_id == tenant_id))
            console.rule("[bold]summary")
            console.print(f"tenant: {DEMO_TENANT} ({tenant_id}), environment: {DEMO_ENVIRONMENT} ({env_id})")
            console.print(
                f"platform API key: [bold]{api_key}[/bold]  [dim](new each demo run; {keys} issued so far)[/dim]"
            )
            console.print(
                f"web UI user: [bold]{DEMO_USER}[/bold]  password: [bold]{ui_password}[/bold]  "
                "[dim](new each demo run)[/dim]"
            )
            if middleware_key:
                console.print(f"middleware key: {connection.secret_hint}")
            console.print(
                f"export the ledger: arsync export --tenant {DEMO_TENANT} --environment {DEMO_ENVIRONMENT} --json"
            )
            console.print("run the demo again for an incremental sync")
            with _demo_nomod(c) as nomod, outbound.trusted(nomod.url), _serve_api(c) as api:
                webhook_secret = signing.new_secret()
                c.nomod.save_connection(Scope(tenant_id, env_id), api_key=DEMO_NOMOD_KEY, invoice_sync_outbound=True,
                                        base_url=nomod.url, webhook_secret=webhook_secret)  # fmt: skip
                nomod.state.webhook_url = f"{api.url}/api/v1/webhooks/nomod/{tenant_id}/{env_id}"
                nomod.state.webhook_secret = webhook_secret
                console.rule("[bold]Nomod: finalize, pay, push")
                walkthrough = Walkthrough(api.url, api_key, tenant_id, env_id, nomod.url, console)
                try:
                    walkthrough.run(invoice_number=f"DEMO-{previous_runs + 1:04d}")
                    nomod_ok = True
                except WalkthroughFailed as exc:
                    err_console.print(f"[red]Nomod walkthrough failed:[/red] {exc}")
                    nomod_ok = False
                if no_serve:
                    raise typer.Exit(0 if run.status == "SUCCEEDED" and nomod_ok else 1)
                console.rule("[bold]serving")
                console.print(f"web UI: [bold]{api.url}/[/bold]  (sign in as {DEMO_USER} with the password above)")
                console.print(f"API: {api.url}/api/v1  (interactive docs: {api.url}/docs)")
                console.print(f"mock ERP: {mock.url}   mock Nomod: {nomod.url}")
                console.print("try:")
                console.print(
                    f"  curl -s {api.url}/api/v1/sync-runs -H 'Authorization: Bearer {api_key}' "
                    f"-H 'X-Tenant-ID: {tenant_id}' -H 'X-Environment-ID: {env_id}'",
                    soft_wrap=True,
                )
                console.print(f"  .venv/bin/arsync sync {connection.id}")
                console.print("Press Ctrl-C to stop.")
                _wait_for_interrupt()


DEMO_NOMOD_KEY = "sk_test_arsync_demo"
DEMO_NOMOD_PORT = 8710


@dataclass
class DemoNomod:
    url: str
    state: MockNomodState


@contextmanager
def _demo_nomod(c: Container) -> Iterator[DemoNomod]:
    """The mock Nomod on 127.0.0.1:8710 (or a free port), keeping its objects in the data directory."""
    stored = c.settings.data_dir / "mock-nomod.json"
    state = MockNomodState(api_key=DEMO_NOMOD_KEY)
    if stored.exists():
        state.load(stored.read_bytes())
    app_ = create_mock_nomod_app(state)
    try:
        server = serve_in_thread(app_, port=DEMO_NOMOD_PORT)
    except OSError:
        server = serve_in_thread(app_)
    state.base_url = server.url
    try:
        with server:
            yield DemoNomod(server.url, state)
    finally:
        stored.write_bytes(state.dump())


DEMO_API_PORT = 8000


def _serve_api(c: Container) -> RunningServer:
    """The API on 127.0.0.1:8000, or on a free port when 8000 is taken."""
    app_ = create_app(c, background_jobs=True)
    try:
        return serve_in_thread(app_, port=DEMO_API_PORT, lifespan="on")
    except OSError:
        return serve_in_thread(app_, lifespan="on")


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM, whatever signal disposition the process inherited."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    console.print("stopping")


if __name__ == "__main__":
    app()
