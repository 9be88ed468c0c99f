"""``arsync connection``: ERP and Nomod connections."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlalchemy import select

from arsync.cli.common import (
    EnvOpt,
    JsonFlag,
    TenantOpt,
    console,
    container,
    print_json,
    print_table,
    secret_from_env,
)
from arsync.erp.models import Connection
from arsync.nomod.schemas import nomod_connection_read
from arsync.tenancy import service as tenancy
from arsync.tenancy.scope import Scope

connection_app = typer.Typer(add_completion=False, help="ERP and Nomod connections.", no_args_is_help=True)


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
    """Save a REST-middleware connection, generate its key (shown once) and run the health check.

    Exits 1 when the health check fails; the connection is kept (fix the middleware, then run
    ``arsync connection health``)."""
    with container() as c:
        with c.session_factory() as session:
            tenant_row, env = tenancy.resolve_scope(session, tenant, environment)
        connection, key = c.connections.save_rest(tenant_row.id, env.id, base_url, bank_account_code)
        connection = c.connections.check_health(connection.id, scope=None)
    payload = {"connectionId": connection.id, "apiKey": key, "status": connection.status}
    if as_json:
        print_json(payload | {"statusReason": connection.status_reason})
    else:
        console.print(f"connection: [bold]{connection.id}[/bold]")
        if key:
            console.print(
                f"middleware key: [bold]{key}[/bold]  [dim](shown once; configure it in your middleware)[/dim]"
            )
        else:
            console.print(f"middleware key unchanged ({connection.secret_hint})")
        _print_status(connection)
    raise typer.Exit(0 if connection.status == "ACTIVE" else 1)


def _print_status(connection: Connection) -> None:
    colour = {"ACTIVE": "green", "FAILED": "red"}.get(connection.status, "yellow")
    console.print(f"status: [{colour}]{connection.status}[/{colour}]")
    if connection.status_reason:
        console.print(f"reason: {connection.status_reason}")


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
    api_key = secret_from_env(api_key_env, "the Nomod API key")
    webhook_secret = secret_from_env(webhook_secret_env, "the webhook secret") if webhook_secret_env else None
    with container() as c:
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
        print_json(read.model_dump(mode="json", by_alias=True))
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
    with container() as c:
        with c.session_factory() as session:
            tenant_row, env = tenancy.resolve_scope(session, tenant, environment)
        url = c.xero.begin(Scope(tenant_row.id, env.id), bank_account_code, sales_account_code)
    console.print(url, soft_wrap=True)


@connection_app.command("list")
def connection_list(tenant: TenantOpt, environment: EnvOpt, as_json: JsonFlag = False) -> None:
    """List the ERP connections of an environment."""
    with container() as c, c.session_factory() as session:
        tenant_row, env = tenancy.resolve_scope(session, tenant, environment)
        rows = session.scalars(
            select(Connection).where(Connection.tenant_id == tenant_row.id, Connection.environment_id == env.id)
        ).all()
    items = [_connection_json(row) for row in rows]
    if as_json:
        print_json({"connections": items})
        return
    print_table(
        ("id", "transport", "base URL", "status", "key"),
        [(i["connectionId"], i["transport"], i["baseUrl"], i["status"], i["keyHint"]) for i in items],
    )


@connection_app.command("health")
def connection_health(connection_id: str, as_json: JsonFlag = False) -> None:
    """Run the health check (POST /health) and update the connection status."""
    with container() as c:
        connection = c.connections.check_health(connection_id, scope=None)
    if as_json:
        print_json(_connection_json(connection))
    else:
        _print_status(connection)
    raise typer.Exit(0 if connection.status == "ACTIVE" else 1)


@connection_app.command("rotate-key")
def connection_rotate_key(connection_id: str, as_json: JsonFlag = False) -> None:
    """Generate a new middleware key; the old one stops being sent at once."""
    with container() as c:
        connection, key = c.connections.rotate_key(connection_id, scope=None)
    if as_json:
        print_json({"connectionId": connection.id, "apiKey": key, "status": connection.status})
        return
    console.print(f"new middleware key: [bold]{key}[/bold]  [dim](shown once)[/dim]")
