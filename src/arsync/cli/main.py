"""The root ``arsync`` command: every subcommand, with the module that holds it."""

from __future__ import annotations

import typer

from arsync.cli.lazy import LazyCommand, LazyGroup

COMMANDS = {
    "db": LazyCommand("arsync.cli.database:db_app", "Database schema.", group=True),
    "serve": LazyCommand(
        "arsync.cli.server:serve_app",
        "Run the HTTP API (with migrations applied), plus a job worker and the schedule.",
    ),
    "worker": LazyCommand(
        "arsync.cli.server:worker_app",
        "Run a job worker: pushes, syncs and the schedule. PostgreSQL only; run as many as you like.",
    ),
    "tenant": LazyCommand("arsync.cli.tenants:tenant_app", "Tenants, environments and API keys.", group=True),
    "environment": LazyCommand(
        "arsync.cli.tenants:environment_app", "A tenant's environments (prod, test, …).", group=True
    ),
    "user": LazyCommand("arsync.cli.users:user_app", "People who sign in to the web UI.", group=True),
    "connection": LazyCommand("arsync.cli.connections:connection_app", "ERP and Nomod connections.", group=True),
    "sync": LazyCommand(
        "arsync.cli.syncing:sync_app",
        "Run one sync in the foreground with progress (or queue it); prints the sync-run record.",
    ),
    "reconcile": LazyCommand(
        "arsync.cli.syncing:reconcile_app",
        "Compare the ledger with everything the ERP lists now; mark what the ERP no longer has.",
    ),
    "export": LazyCommand(
        "arsync.cli.syncing:export_app", "Export the ledger: customers, invoices and payments with their ERP ids."
    ),
    "contract": LazyCommand("arsync.cli.contract:contract_app", "The Nudge REST contract.", group=True),
    "sandbox": LazyCommand(
        "arsync.cli.sandbox:sandbox_app", "The Developer Sandbox: check a middleware against the contract.", group=True
    ),
    "mock-erp": LazyCommand(
        "arsync.cli.mocks:mock_erp_app", "Run the reference middleware (mock ERP) until interrupted."
    ),
    "mock-xero": LazyCommand(
        "arsync.cli.mocks:mock_xero_app", "Run a mock of Xero's identity service and Accounting API until interrupted."
    ),
    "mock-nomod": LazyCommand(
        "arsync.cli.mocks:mock_nomod_app",
        "Run the mock Nomod API until interrupted (POST /_mock/pay pays an invoice or link).",
    ),
    "demo": LazyCommand(
        "arsync.cli.demo:demo_app",
        "Offline demo: mock ERP and mock Nomod on loopback, a demo tenant, a sync, a Nomod round trip, a summary.",
    ),
}


class ArsyncGroup(LazyGroup):
    lazy_commands = COMMANDS


app = typer.Typer(
    cls=ArsyncGroup,
    help="arsync: keeps an AR ledger in sync with ERPs and payment providers.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main() -> None:
    """arsync: keeps an AR ledger in sync with ERPs and payment providers."""
