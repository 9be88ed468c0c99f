"""``arsync demo``: the offline demo, from an empty directory to a served UI."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import func, select

from arsync.cli.common import console, container, err_console
from arsync.cli.syncing import print_run, run_sync
from arsync.demo import (
    DEMO_DEBTORS,
    DEMO_ENVIRONMENT,
    DEMO_INVOICES,
    DEMO_NOMOD_KEY,
    DEMO_PAYMENTS,
    DEMO_TENANT,
    DEMO_USER,
    Walkthrough,
    WalkthroughFailed,
    demo_nomod,
    demo_scope,
    demo_user,
    serve_api,
    wait_for_interrupt,
)
from arsync.erp.models import SyncRun
from arsync.mocks.erp import MockErpState, create_mock_erp_app
from arsync.mocks.erp_data import MockErpData
from arsync.mocks.serving import serve_in_thread
from arsync.nomod import signing
from arsync.tenancy.models import ApiKey
from arsync.tenancy.scope import Scope

demo_app = typer.Typer(add_completion=False)


@demo_app.command("demo")
def demo(
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Stop after the summary.")] = False,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Serve the UI and API here (default 8000, or a free port)."),
    ] = None,
) -> None:
    """Offline demo: mock ERP and mock Nomod on loopback, a demo tenant, a sync, a Nomod round trip, a summary."""
    with container() as c:
        tenant_id, env_id, api_key = demo_scope(c)
        ui_password = demo_user(c, tenant_id)
        with c.session_factory() as session:
            previous_runs = (
                session.scalar(select(func.count()).select_from(SyncRun).where(SyncRun.tenant_id == tenant_id)) or 0
            )
        data = MockErpData(DEMO_DEBTORS, DEMO_INVOICES, DEMO_PAYMENTS, seed=7, push_id_tag=f"{previous_runs + 1}-")
        state = MockErpState(data)
        # The demo's own mocks are on loopback: the outbound rule admits exactly their origins.
        with serve_in_thread(create_mock_erp_app(state)) as mock, c.outbound.trusted(mock.url):
            # Each demo run changes a few ERP records, so a repeat run has something to pick up.
            for _ in range(previous_runs + 1):
                state.data.mutate({"debtors": 3, "invoices": 12, "payments": 5})
            connection, middleware_key = c.connections.save_rest(tenant_id, env_id, mock.url, "090")
            connection = c.connections.check_health(connection.id, scope=None)
            console.rule("[bold]arsync demo")
            console.print(f"data directory: {c.settings.data_dir.resolve()}")
            console.print(f"mock ERP: {mock.url}  connection {connection.id}: {connection.status}")
            run = run_sync(c, connection.id, full=False, trigger="manual", show_progress=True)
            print_run(run)
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
            with demo_nomod(c) as nomod, c.outbound.trusted(nomod.url), serve_api(c, port) as api:
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
                wait_for_interrupt()
                console.print("stopping")
